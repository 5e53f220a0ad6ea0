"""``SOLVERS``: name -> solver class, for configs and the CLI only (inside the library, objects)."""

from __future__ import annotations

from .ode.runge_kutta import RK4, Bosh3, Dopri5, Euler, Heun, Midpoint, Tsit5

SOLVERS: dict[str, type] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "bosh3": Bosh3,
    "dopri5": Dopri5,
    "tsit5": Tsit5,
}

# --- SDE / Langevin / generative (owned by the SDE engineer) ---
# Add entries below with SOLVERS.update({...}); keep names lower-case, unique across families.
# --- end SDE / Langevin / generative section ---

__all__ = ["SOLVERS"]
