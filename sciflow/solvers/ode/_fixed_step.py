"""The fixed-step loop behind :func:`sciflow.solvers.ode.solve` with :class:`ConstantStepSize`:
explicit Runge–Kutta steps along the save grid in the flat layout of :mod:`._flat_field`, each
interval cut into equal sub-steps of at most ``controller.dt`` (the same count for every
trajectory, found with one host sync at set-up), the FSAL stage reused across steps. With an
event (:mod:`.event`) the steps stay shared: crossings are checked after each step (one host
sync) and located in batches, those after a trajectory's terminal crossing ignored, and the loop
ends at the first save time after every trajectory has stopped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._flat_field import FlatField
from .controller import ConstantStepSize
from .event import EventTracker
from .solver import ODESolver

__all__ = ["integrate_fixed"]


def integrate_fixed(f: FlatField, solver: ODESolver, y0: Tensor, ts: Tensor,
                    controller: ConstantStepSize, event: EventTracker | None = None) -> Tensor:
    """Fixed steps along the grid ``ts (B, T)``; returns ``(T, B, S)``."""
    T = ts.shape[1]
    dts = ts[:, 1:] - ts[:, :-1]
    if controller.dt is None:
        n_sub = [1] * (T - 1)
    else:  # one host sync at set-up: the number of sub-steps of each interval
        n_sub = torch.ceil(dts.amax(0) / controller.dt - 1e-9).clamp(min=1).long().tolist()
    ys = [y0]
    y = y0
    k1 = None
    g = None if event is None else event.start(ts[:, 0], y0)
    stopped = torch.zeros(ts.shape[0], dtype=torch.bool, device=ts.device)
    steps = 0
    for i in range(T - 1):
        h = dts[:, i] / n_sub[i]
        for j in range(n_sub[i]):
            t = ts[:, i] + j * h if j else ts[:, i]
            if k1 is None:
                k1 = f(t, y)
            y_prev = y
            y, ks, _ = solver.step(f, t, y, h, k1)
            k1 = ks[-1] if solver.fsal else None
            steps += 1
            if event is not None:
                g1 = event.cond(t + h, y)
                cross = event.crossed(g, g1)
                any_cross, bad_g = torch.stack([cross.any(), ~torch.isfinite(g1).all()]).tolist()
                if bad_g:
                    i = int(torch.nonzero(~torch.isfinite(g1).all(-1))[0])
                    raise event.nonfinite(g1, f"at t = {f.direction * (t + h)[i].item():.6g}")
                if any_cross:
                    stopped = stopped | event.on_crossing(solver, cross, t, h, y_prev, y, ks, g, g1)
                g = g1
        ys.append(y)
        if event is not None and bool(stopped.all()):   # every trajectory stopped: the rest is nan
            ys.extend([torch.full_like(y, math.nan)] * (T - 2 - i))
            break
    f.stats.n_steps += steps
    f.stats.count_jacobians(solver, steps)
    if event is not None:
        event.finish(solver, ts[:, -1])
    return torch.stack(ys)
