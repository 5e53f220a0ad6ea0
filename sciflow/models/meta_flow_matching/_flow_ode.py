"""Integration of a learned flow ``dx/dt = v(t, x)`` from t = 0 to 1 (temporary local version
until ``sciflow.solvers.odeint`` lands)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


def _step(method: str, f, t: Tensor, x: Tensor, h: Tensor) -> Tensor:
    if method == "euler":
        return x + h * f(t, x)
    if method == "midpoint":
        return x + h * f(t + h / 2, x + h / 2 * f(t, x))
    k1 = f(t, x)
    k2 = f(t + h / 2, x + h / 2 * k1)
    k3 = f(t + h / 2, x + h / 2 * k2)
    k4 = f(t + h, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate_flow(f: Callable[[Tensor, Tensor], Tensor], x0: Tensor, *, solver: str, nfe: int,
                   rtol: float, atol: float, times: Tensor | None = None) -> tuple[Tensor, dict]:
    count = {"nfe": 0}

    def g(t, x):
        count["nfe"] += 1
        return f(t, x)

    ts = times if times is not None else torch.tensor([0.0, 1.0])
    ts = ts.to(device=x0.device, dtype=x0.dtype)
    if solver == "dopri5":
        import torchdiffeq
        ys = torchdiffeq.odeint(g, x0, ts, method="dopri5", rtol=rtol, atol=atol)
    else:
        n_steps = max(nfe // _STAGES[solver], 1)
        grid = torch.linspace(float(ts[0]), float(ts[-1]), n_steps + 1, device=x0.device, dtype=x0.dtype)
        x, out, j = x0, [x0], 1
        for i in range(n_steps):
            x = _step(solver, g, grid[i], x, grid[i + 1] - grid[i])
            out.append(x)
        ys = torch.stack(out)
        if times is not None:
            idx = torch.round((ts - ts[0]) / (ts[-1] - ts[0]) * n_steps).long()
            ys = ys[idx]
    return (ys if times is not None else ys[-1]), count
