"""sciflow.solvers: numerics only (imports nothing else of sciflow).

ODE: terms, explicit Runge–Kutta solvers, a Rosenbrock solver for stiff problems (Rodas4),
step-size controllers, dense output, adjoints, terminal events, ``solve``/``odeint``, a torchdiffeq backend;
interpolation of irregular data (control paths).
"""

from .backends import Torchdiffeq
from .interpolation import HermiteCubic, LinearInterpolation, NaturalCubicSpline
from .ode import (
    RK4, BacksolveAdjoint, Bosh3, ButcherTableau, CheckpointAdjoint, ConstantStepSize, DirectAdjoint,
    Dopri5, Euler, Event, EventResult, ExplicitRungeKutta, Heun, Midpoint, ODESolver, ODETerm, PIController,
    Rodas4, Rosenbrock, RosenbrockTableau, SaveAt, Solution, Tsit5, odeint, solve,
)

__all__ = [
    "ODETerm", "ButcherTableau", "ExplicitRungeKutta", "Euler", "Midpoint", "Heun", "RK4", "Bosh3",
    "Dopri5", "Tsit5", "ConstantStepSize", "PIController", "SaveAt", "Solution", "solve", "odeint",
    "DirectAdjoint", "BacksolveAdjoint", "CheckpointAdjoint", "Torchdiffeq",
    "ODESolver", "Rosenbrock", "RosenbrockTableau", "Rodas4", "Event", "EventResult",
    "LinearInterpolation", "HermiteCubic", "NaturalCubicSpline",
]

# --- SDE / Langevin / generative (owned by the SDE engineer) ---
from . import generative  # noqa: E402  (the samplers' namespace: sciflow.solvers.generative)
from .generative import (  # noqa: E402
    DDIM, DDPM, VE, CosineVP, DiffusionReplacement, DiffusionSampler, DPMSolverPP2M, FlowAdaptive, FlowEuler,
    FlowHeun, FlowMidpoint, FlowReplacement, FlowSampler, LinearVP, NFEBudgetExceeded, NoiseSchedule,
    ProbabilityFlow, SigmoidVP, sample_diffusion, sample_flow,
)
from .langevin import (  # noqa: E402
    BAOAB, OBABO, LangevinFlowEuler, LangevinScheme, LangevinState, UnderdampedLangevin, simulate_langevin,
)
from .sde import (  # noqa: E402
    SRA1, SRI, Additive, BrownianIncrements, BrownianPath, Diagonal, EulerMaruyama, FirstPassage, General, Milstein,
    NoiseType, PerSampleBrownianTree, ReversibleAdjoint, ReversibleHeun, Scalar, SDESolver, SDETerm, StratonovichHeun,
    TorchSDE, VirtualBrownianTree, first_passage, sdeint,
)

__all__ += [
    "SDETerm", "SDESolver", "NoiseType", "Diagonal", "Scalar", "General", "Additive", "BrownianPath",
    "BrownianIncrements", "VirtualBrownianTree", "PerSampleBrownianTree", "EulerMaruyama", "Milstein",
    "StratonovichHeun", "SRA1", "SRI", "ReversibleHeun", "ReversibleAdjoint", "TorchSDE", "sdeint", "first_passage",
    "FirstPassage",
    "UnderdampedLangevin", "LangevinScheme", "LangevinState", "BAOAB", "OBABO", "LangevinFlowEuler",
    "simulate_langevin",
    "NoiseSchedule", "LinearVP", "CosineVP", "SigmoidVP", "VE", "DiffusionSampler", "DDPM", "DDIM",
    "DPMSolverPP2M", "ProbabilityFlow", "sample_diffusion", "FlowSampler", "FlowEuler", "FlowMidpoint",
    "FlowHeun", "FlowAdaptive", "sample_flow", "DiffusionReplacement", "FlowReplacement", "NFEBudgetExceeded",
    "generative",
]
# --- end SDE / Langevin / generative section ---
