"""SDE solvers: noise types, Brownian motion objects, one-step methods, ``sdeint`` and
``first_passage``."""

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import BrownianIncrements, BrownianPath, VirtualBrownianTree
from sciflow.solvers.sde.euler_maruyama import EulerMaruyama
from sciflow.solvers.sde.first_passage import FirstPassage, first_passage
from sciflow.solvers.sde.heun import StratonovichHeun
from sciflow.solvers.sde.milstein import Milstein
from sciflow.solvers.sde.per_sample import PerSampleBrownianTree
from sciflow.solvers.sde.noise import Additive, Diagonal, General, NoiseType, Scalar
from sciflow.solvers.sde.reversible_adjoint import ReversibleAdjoint
from sciflow.solvers.sde.reversible_heun import ReversibleHeun
from sciflow.solvers.sde.sdeint import sdeint
from sciflow.solvers.sde.sra1 import SRA1
from sciflow.solvers.sde.sri import SRI
from sciflow.solvers.sde.term import SDETerm
from sciflow.solvers.sde.torchsde_backend import TorchSDE

__all__ = [
    "Additive", "BrownianIncrements", "BrownianPath", "Diagonal", "EulerMaruyama", "General", "Milstein",
    "NoiseType", "PerSampleBrownianTree", "ReversibleAdjoint", "ReversibleHeun", "SDESolver", "SDETerm", "SRA1",
    "SRI", "Scalar",
    "StratonovichHeun", "TorchSDE", "VirtualBrownianTree", "sdeint", "first_passage", "FirstPassage",
]
