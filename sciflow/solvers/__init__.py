"""sciflow.solvers: numerics only (imports nothing else of sciflow).

ODE: terms, explicit Runge–Kutta solvers, step-size controllers, dense output, adjoints,
``solve``/``odeint``, a torchdiffeq backend; interpolation of irregular data (control paths).
"""

from .backends import Torchdiffeq
from .interpolation import HermiteCubic, LinearInterpolation, NaturalCubicSpline
from .ode import (
    RK4, BacksolveAdjoint, Bosh3, ButcherTableau, CheckpointAdjoint, ConstantStepSize, DirectAdjoint,
    Dopri5, Euler, ExplicitRungeKutta, Heun, Midpoint, ODETerm, PIController, SaveAt, Solution, Tsit5,
    odeint, solve,
)

__all__ = [
    "ODETerm", "ButcherTableau", "ExplicitRungeKutta", "Euler", "Midpoint", "Heun", "RK4", "Bosh3",
    "Dopri5", "Tsit5", "ConstantStepSize", "PIController", "SaveAt", "Solution", "solve", "odeint",
    "DirectAdjoint", "BacksolveAdjoint", "CheckpointAdjoint", "Torchdiffeq",
    "LinearInterpolation", "HermiteCubic", "NaturalCubicSpline",
]

# --- SDE / Langevin / generative (owned by the SDE engineer) ---
# from .sde import ...            (append names to __all__ here)
# --- end SDE / Langevin / generative section ---
