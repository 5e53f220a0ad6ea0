"""Causal physics-informed neural networks (Wang, Sankaran & Perdikaris 2022, arXiv:2203.07404).

Note: the causal training algorithm is the subject of a University of Pennsylvania patent
application (WO2023172408); check it before commercial use.
"""

from sciflow.models.causal_pinn.causal import AnnealedEpsilon, FixedEpsilon, causal_weights, chunk_losses
from sciflow.models.causal_pinn.config import Config
from sciflow.models.causal_pinn.derivatives import (ENGINES, Derivatives, ForwardJVP, NestedAutograd,
                                                    TaylorMode, VmapHessian)
from sciflow.models.causal_pinn.model import CausalPINN
from sciflow.models.causal_pinn.network import PINNNetwork
from sciflow.models.causal_pinn.problems import PROBLEMS, Problem
from sciflow.models.causal_pinn.marching import MarchedSolution, march
from sciflow.models.causal_pinn.train import History, train

__all__ = ["AnnealedEpsilon", "CausalPINN", "Config", "Derivatives", "ENGINES", "FixedEpsilon",
           "ForwardJVP", "History", "MarchedSolution", "NestedAutograd", "PINNNetwork", "PROBLEMS",
           "Problem", "TaylorMode", "VmapHessian", "causal_weights", "chunk_losses", "march", "train"]
