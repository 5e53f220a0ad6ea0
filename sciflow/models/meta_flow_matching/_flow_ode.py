"""Integration of a learned flow ``dx/dt = v(t, x)`` from t = 0 to 1 with the shared ODE solvers.

Strings are resolved to solver objects here, at the config edge. Fixed-step methods get an NFE
budget: ``nfe // stages`` equal steps (Euler 1, midpoint 2, RK4 4 evaluations per step).
Adaptive dopri5 uses one RMS error norm over the whole batch of populations (torchdiffeq's
convention, as the official MFM code with torchdyn).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from sciflow.solvers.ode import RK4, Dopri5, Euler, Midpoint, odeint

SOLVER_CLASSES = {"dopri5": Dopri5, "euler": Euler, "midpoint": Midpoint, "rk4": RK4}


def integrate_flow(f: Callable[[Tensor, Tensor], Tensor], x0: Tensor, *, solver: str, nfe: int,
                   rtol: float, atol: float, times: Tensor | None = None) -> tuple[Tensor, dict]:
    """``x(1)`` (or ``x(times)``, ``(time, *x0.shape)``) and the solver's work counters."""
    try:
        method = SOLVER_CLASSES[solver]()
    except KeyError:
        raise ValueError(f"unknown solver {solver!r}; allowed: {sorted(SOLVER_CLASSES)}") from None
    ts = times if times is not None else torch.tensor([0.0, 1.0])
    ts = ts.to(device=x0.device, dtype=x0.dtype)
    if method.adaptive:
        ys, stats = odeint(f, x0, ts, solver=method, rtol=rtol, atol=atol, return_stats=True)
    else:
        n_steps = max(nfe // method.stages, 1)
        dt = float(ts[-1] - ts[0]) / n_steps
        ys, stats = odeint(f, x0, ts, solver=method, dt=dt * (1 + 1e-9), return_stats=True)
    return (ys if times is not None else ys[-1]), stats
