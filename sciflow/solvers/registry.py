"""``SOLVERS``: name -> solver class, for configs and the CLI only (inside the library, objects)."""

from __future__ import annotations

from .ode.rosenbrock import Rodas4
from .ode.runge_kutta import RK4, Bosh3, Dopri5, Euler, Heun, Midpoint, Tsit5

SOLVERS: dict[str, type] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "bosh3": Bosh3,
    "dopri5": Dopri5,
    "tsit5": Tsit5,
    "rodas4": Rodas4,  # stiff problems (Rosenbrock, L-stable)
}

# --- SDE / Langevin / generative (owned by the SDE engineer) ---
# Add entries below with SOLVERS.update({...}); keep names lower-case, unique across families.
from .generative import (DDIM, DDPM, DPMSolverPP2M, FlowAdaptive, FlowEuler, FlowHeun,  # noqa: E402
                         FlowMidpoint, ProbabilityFlow)
from .langevin import BAOAB, OBABO, LangevinFlowEuler  # noqa: E402
from .sde import SRA1, SRI, EulerMaruyama, Milstein, ReversibleHeun, StratonovichHeun, TorchSDE  # noqa: E402

SOLVERS.update({
    # SDE (sdeint)
    "euler_maruyama": EulerMaruyama,
    "milstein": Milstein,
    "stratonovich_heun": StratonovichHeun,
    "sra1": SRA1,
    "sri": SRI,
    "reversible_heun": ReversibleHeun,
    "torchsde": TorchSDE,
    # underdamped Langevin (simulate_langevin)
    "baoab": BAOAB,
    "obabo": OBABO,
    "langevin_flow_euler": LangevinFlowEuler,
    # diffusion samplers (sample_diffusion)
    "ddpm": DDPM,
    "ddim": DDIM,
    "dpm_solver_pp_2m": DPMSolverPP2M,
    "probability_flow": ProbabilityFlow,
    # flow-matching samplers (sample_flow)
    "flow_euler": FlowEuler,
    "flow_midpoint": FlowMidpoint,
    "flow_heun": FlowHeun,
    "flow_adaptive": FlowAdaptive,
})
# --- end SDE / Langevin / generative section ---

__all__ = ["SOLVERS"]
