"""Neural-operator surrogates of PDE trajectories (FNO, U-Net; one-shot and autoregressive) and
the ERA5 trajectory-forecast evaluation they share with the wavelet diffusion models."""

from sciflow.models.neural_operator.config import Config
from sciflow.models.neural_operator.model import NeuralOperator, relative_l2
from sciflow.models.neural_operator.networks import UNetOperator, build_backbone

__all__ = ["Config", "NeuralOperator", "UNetOperator", "build_backbone", "relative_l2"]
