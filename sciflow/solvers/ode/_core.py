"""Shared core of ``solve``/``odeint`` and the adjoints: integrate along a save grid.

``solve_grid`` validates the inputs once, maps ``(*batch, *state)`` states onto the flat ``(B, S)``
layout of :mod:`._integrate`, maps decreasing time grids onto increasing ones, dispatches on the
controller (adaptive with one shared clock and no compilation: :mod:`._shared_clock`; per-trajectory
clocks or ``compile=True``: the masked loop of :mod:`._integrate`) and checks the result
for non-finite values (one host sync, after the loop).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_finite_trajectory, check_state, check_term_kind, check_times
from ._fixed_step import integrate_fixed
from ._flat_field import FlatField, Stats
from ._integrate import integrate_adaptive
from ._shared_clock import integrate_shared_clock
from .controller import ConstantStepSize, PIController
from .event import EventTracker
from .solver import ODESolver

__all__ = ["solve_grid", "default_controller", "check_solver_controller"]


def check_solver_controller(solver: ODESolver, controller: object) -> None:
    if not isinstance(solver, ODESolver):
        raise TypeError(f"solver must be an ODE solver object such as Dopri5() or Rodas4(), got {solver!r}")
    if isinstance(controller, PIController):
        if not solver.adaptive:
            raise ValueError(f"{type(solver).__name__} has no embedded error estimate and cannot be "
                             f"used with PIController; pass ConstantStepSize(dt) (or dt=...) or an "
                             f"adaptive solver (Heun, Bosh3, Dopri5, Tsit5, Rodas4)")
    elif not isinstance(controller, ConstantStepSize):
        raise TypeError(f"controller must be PIController or ConstantStepSize, got {controller!r}")


def default_controller(solver: ODESolver, *, rtol: float, atol: float, dt: float | None,
                       max_steps: int) -> PIController | ConstantStepSize:
    """Adaptive solvers default to ``PIController(rtol, atol)``; a given ``dt`` or a solver
    without an embedded pair gives ``ConstantStepSize(dt)``."""
    if dt is not None or not solver.adaptive:
        return ConstantStepSize(dt)
    return PIController(rtol=rtol, atol=atol, max_steps=max_steps)


def check_inputs_of_solve(term, solver: ODESolver, controller: object, y0: Tensor, ts: Tensor) -> int:
    """The checks of a solve's inputs (term and solver kinds, controller, a finite state, a finite
    strictly monotonic time grid); returns the grid's direction (``+1``/``-1``)."""
    check_term_kind(term, solver)
    check_solver_controller(solver, controller)
    check_state(y0)
    return check_times(ts, "t", min_len=1)


def solve_grid(term, solver: ODESolver, y0: Tensor, ts: Tensor,
               controller: PIController | ConstantStepSize, *, batch_ndim: int = 0,
               window: int | None = None, h0: Tensor | None = None, check_inputs: bool = True,
               compile: bool = False, event: EventTracker | None = None, norm_entries: int | None = None
               ) -> tuple[Tensor, Stats, Tensor | None]:
    """Integrate ``term`` from ``ts[..., 0]`` through every time of ``ts``.

    ``y0: (*batch, *state)``; ``ts: (time,)`` or ``(*batch, time)`` (per-sample grids, which imply
    ``batch_ndim = ts.ndim - 1``). ``batch_ndim`` leading axes of ``y0`` are independently
    stepped trajectories (per-trajectory error control); ``0`` shares one clock for the batch.
    Returns ``ys: (time, *batch, *state)``, the work counters and the last adaptive step (per
    trajectory, in the increasing-time frame) or ``None``. ``compile``: ``torch.compile`` each
    adaptive attempt (opt-in; see :func:`._integrate.integrate_adaptive`). ``window``: save times
    looked at per adaptive step (``None``: the solver's ``default_window``; ``1`` makes every save
    time a step end point). ``event``: locate zero crossings (:mod:`.event`; eager solves only);
    saves after a terminal event's stop hold ``nan``, and the events are in ``event.result``.
    ``norm_entries``: adaptive error control over the first entries of each trajectory's
    flattened state only (a seminorm; the backsolve adjoint's).
    """
    if check_inputs:
        direction = check_inputs_of_solve(term, solver, controller, y0, ts)
    else:
        direction = 1 if ts.shape[-1] < 2 or bool(ts[..., 1].reshape(-1)[0] > ts[..., 0].reshape(-1)[0]) else -1
    if window is None:
        window = solver.default_window
    if event is not None and compile:
        raise ValueError("solve(..., event=...) locates events eagerly; compile=True is not supported with "
                         "an event")
    if event is not None and ts.shape[-1] < 2:
        raise ValueError("solve(..., event=...) needs an interval to search: t1 must differ from t0")
    if compile and not solver.compilable:
        raise ValueError(f"{type(solver).__name__} does not support compile=True (its steps are not "
                         f"compiled); solve with compile=False")
    if ts.ndim > 1:
        per_sample = ts.ndim - 1
        if batch_ndim not in (0, per_sample):
            raise ValueError(f"per-sample time grid t of shape {tuple(ts.shape)} implies batch_ndim = "
                             f"{per_sample}, but batch_ndim = {batch_ndim} was given")
        if tuple(ts.shape[:-1]) != tuple(y0.shape[:per_sample]):
            raise ValueError(f"shape mismatch: per-sample time grid t {tuple(ts.shape)} needs y0 with "
                             f"leading batch shape {tuple(ts.shape[:-1])}, got y0 {tuple(y0.shape)}")
        batch_ndim = per_sample
    if not 0 <= batch_ndim <= y0.ndim:
        raise ValueError(f"batch_ndim = {batch_ndim} is out of range for y0 of shape {tuple(y0.shape)}")
    batch_shape = tuple(y0.shape[:batch_ndim])
    B = math.prod(batch_shape) if batch_ndim else 1
    S = y0.numel() // max(B, 1)
    T = ts.shape[-1]
    if ts.dtype != y0.dtype and y0.is_floating_point():
        ts = ts.to(y0.dtype)
    ts_flat = ts.reshape(B, T) if ts.ndim > 1 else ts.unsqueeze(0).expand(B, T)
    if direction < 0:
        ts_flat = -ts_flat
    field = FlatField(term.vector_field, tuple(y0.shape), batch_shape, shared_clock=batch_ndim == 0,
                      direction=direction, finite_start=not isinstance(controller, ConstantStepSize))
    y0f = y0.reshape(B, S)
    h_last = None
    if event is not None:
        event.bind(field)
    if T == 1:
        ys = y0f.unsqueeze(0)
    elif isinstance(controller, ConstantStepSize):
        ys = integrate_fixed(field, solver, y0f, ts_flat, controller, event=event)
    elif batch_ndim == 0 and not compile:  # one clock: scalar control on the host
        ys, h_last = integrate_shared_clock(field, solver, y0f, ts_flat, controller, window=window, h0=h0,
                                            norm_entries=norm_entries, event=event)
    else:
        ys, h_last = integrate_adaptive(field, solver, y0f, ts_flat, controller, window=window, h0=h0,
                                         compile=compile, event=event, norm_entries=norm_entries)
    if event is not None:  # saves after a trajectory's event: nan (checked for finiteness before)
        after = (ts_flat > event.t_stop.unsqueeze(1)).t().unsqueeze(-1)     # (T, B, 1)
        check_finite_trajectory(torch.where(after, 0.0, ys.detach()).reshape((T,) + tuple(y0.shape)), ts)
        ys = torch.where(after, torch.full_like(ys, math.nan), ys)
    ys = ys.reshape((T,) + tuple(y0.shape))
    if event is None:
        check_finite_trajectory(ys.detach(), ts)
    return ys, field.stats, h_last
