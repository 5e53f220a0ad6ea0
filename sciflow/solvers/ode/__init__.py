"""ODE solvers: terms, the solver interface, Butcher tableaux, explicit Runge–Kutta methods, a
Rosenbrock method for stiff problems (Rodas4), step-size controllers, dense output, adjoints, and
terminal events, and the ``solve`` / ``odeint`` entry points."""

from .adjoint import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint
from .controller import ConstantStepSize, PIController
from .event import Event, EventResult
from .rosenbrock import Rodas4, Rosenbrock, RosenbrockTableau
from .runge_kutta import RK4, Bosh3, Dopri5, Euler, ExplicitRungeKutta, Heun, Midpoint, Tsit5
from .solve import SaveAt, Solution, odeint, solve
from .solver import ODESolver
from .tableau import ButcherTableau
from .term import ODETerm

__all__ = [
    "ODETerm", "ButcherTableau", "ExplicitRungeKutta", "Euler", "Midpoint", "Heun", "RK4", "Bosh3",
    "Dopri5", "Tsit5", "ConstantStepSize", "PIController", "SaveAt", "Solution", "solve", "odeint",
    "DirectAdjoint", "BacksolveAdjoint", "CheckpointAdjoint", "ODESolver", "Rosenbrock", "RosenbrockTableau",
    "Rodas4", "Event", "EventResult",
]
