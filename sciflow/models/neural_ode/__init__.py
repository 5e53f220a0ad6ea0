"""Neural ODEs (Chen et al. 2018) on the shared solvers: ``Config`` and ``NeuralODE``."""

from sciflow.models.neural_ode.config import Config
from sciflow.models.neural_ode.model import NeuralODE, VectorField

__all__ = ["Config", "NeuralODE", "VectorField"]
