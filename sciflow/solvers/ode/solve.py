"""``solve`` (the general form) and ``odeint`` (torchdiffeq-shaped convenience)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .._checks import check_term_kind, check_times
from .._precision import AutocastField, autocast_dtype, working_state
from ._core import default_controller, solve_grid
from ._event_replay import replay_events
from .adjoint import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint
from .controller import ConstantStepSize, PIController
from .event import Event, EventResult, EventTracker
from .runge_kutta import Dopri5
from .solver import ODESolver
from .term import ODETerm

__all__ = ["SaveAt", "Solution", "solve", "odeint"]

Adjoint = DirectAdjoint | BacksolveAdjoint | CheckpointAdjoint


@dataclass(frozen=True)
class SaveAt:
    """Where to save: ``ts`` (``(time,)`` or ``(*batch, time)``, inside ``[t0, t1]``), and/or the
    end points. Save times between steps come from the solver's dense output."""

    ts: Tensor | None = None
    t0: bool = False
    t1: bool = True


@dataclass
class Solution:
    """``ts: (time,)`` or ``(*batch, time)``; ``ys: (time, *batch, *state)``; ``stats``: ``nfe``
    (batched vector-field calls), ``n_steps`` (attempted steps; loop iterations for batched
    adaptive stepping), ``n_accepted``/``n_rejected`` per trajectory for adaptive solves;
    ``event``: the located crossings, for solves with an :class:`~.event.Event` — a tuple of
    them, in order, for a list of events (then ``stats["n_event_evals"]`` counts the batched
    calls of the conditions)."""

    ts: Tensor
    ys: Tensor
    stats: dict[str, Any] = field(default_factory=dict)
    event: EventResult | tuple[EventResult, ...] | None = None


def _as_time(x, like: Tensor) -> Tensor:
    t = torch.as_tensor(x, dtype=like.dtype if like.is_floating_point() else torch.get_default_dtype(),
                        device=like.device)
    return t


def solve(term: ODETerm, solver: ODESolver, t0, t1, y0: Tensor, *,
          saveat: SaveAt = SaveAt(), controller: PIController | ConstantStepSize | None = None,
          adjoint: Adjoint | None = None, batch_ndim: int = 0, window: int | None = None,
          compile: bool = False, event: Event | Sequence[Event] | None = None) -> Solution:
    """Solve ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (either direction).

    ``t0, t1``: scalars or ``(*batch,)`` tensors (per-trajectory intervals);
    ``y0: (*batch, *state)``; ``controller``: :class:`PIController` (default for adaptive
    solvers, rtol 1e-6, atol 1e-8) or :class:`ConstantStepSize`; ``adjoint``: how gradients are
    computed (default :class:`DirectAdjoint`); ``batch_ndim``: leading axes of ``y0`` that are
    independent trajectories with their own step sizes; ``window``: save times looked at per step
    (a step is shortened only if it would contain more; ``None``: the solver's ``default_window``,
    4 for explicit Runge–Kutta methods, 1 — every save time a step end point — for Rosenbrock
    methods); ``compile``: opt-in ``torch.compile`` of
    each adaptive attempt (stages + error norm + controller + dense output fused; the vector field
    must be traceable; compiled once per field object, solver, controller and shape);
    ``event``: an :class:`~.event.Event` — the zero crossings of its condition, located per
    trajectory (``Solution.event``: times, states, which occurred); a terminal event stops each
    trajectory at its last crossing (saves after it are ``nan``; with ``SaveAt(t1=True)``, the
    default, the save at ``t1`` becomes where it stopped, so ``Solution.ts`` is per trajectory
    then). A list of events is tracked together (``Solution.event`` is then a tuple, one result
    per event); a trajectory stops at the first terminal stop among them, and crossings after it
    do not happen. Gradients through the implicit function theorem for the event times (see
    :mod:`sciflow.solvers.ode.event`) with :class:`DirectAdjoint`, or with :class:`CheckpointAdjoint`
    or (one shared clock) :class:`BacksolveAdjoint`: the events located without a graph, then the
    solve replayed through them with that adjoint (one more solve; ``stats`` count both).
    """
    if not isinstance(term, ODETerm) and getattr(type(term), "kind", None) != "ode":
        raise TypeError(f"solve needs an ODETerm, got {type(term).__name__}")
    if getattr(type(solver), "backend", False):
        raise TypeError(f"{solver!r} is a backend: call odeint(..., solver={solver!r}) instead of solve")
    check_term_kind(term, solver)
    if controller is None:
        controller = default_controller(solver, rtol=1e-6, atol=1e-8, dt=None, max_steps=100_000)
    adjoint = adjoint or DirectAdjoint()
    y0 = working_state(y0)  # a half-precision state under autocast is integrated in float32
    if isinstance(term, ODETerm) and isinstance(y0, Tensor) and (dtype := autocast_dtype(y0.device.type)) is not None:
        # the solver's arithmetic outside autocast, the field inside it (sciflow.solvers._precision)
        with torch.autocast(y0.device.type, enabled=False):
            return solve(ODETerm(AutocastField(term.vector_field, y0.device.type, dtype)), solver, t0, t1, y0,
                         saveat=saveat, controller=controller, adjoint=adjoint, batch_ndim=batch_ndim,
                         window=window, compile=compile, event=event)
    t0 = _as_time(t0, y0)
    t1 = _as_time(t1, y0)
    pieces, keep = [], []
    if saveat.ts is not None:
        ts = saveat.ts.to(t0)
        per_sample_shape = ts.shape[:-1]
        t0b = t0.expand(per_sample_shape).unsqueeze(-1)
        t1b = t1.expand(per_sample_shape).unsqueeze(-1)
        outside = (ts < torch.minimum(t0b, t1b)) | (ts > torch.maximum(t0b, t1b))
        if bool(outside.any()):
            i = tuple(torch.nonzero(outside)[0].tolist())
            raise ValueError(f"SaveAt.ts must lie inside [t0, t1]: ts[{i}] = {ts[i].item():.6g} is outside "
                             f"[{t0b[i[:-1]].item():.6g}, {t1b[i[:-1]].item():.6g}]")
        first_is_t0 = bool((ts[..., :1] == t0b).all())
        last_is_t1 = bool((ts[..., -1:] == t1b).all())
        pieces = ([] if first_is_t0 else [t0b]) + [ts] + ([] if last_is_t1 else [t1b])
        grid = torch.cat(pieces, -1)
        start = 0 if first_is_t0 else 1
        keep = list(range(start, start + ts.shape[-1]))
        if saveat.t0 and start == 1:
            keep = [0] + keep
        if saveat.t1 and not last_is_t1:
            keep = keep + [grid.shape[-1] - 1]
    else:
        shape = torch.broadcast_shapes(t0.shape, t1.shape)
        grid = torch.stack([t0.expand(shape), t1.expand(shape)], -1)
        keep = ([0] if saveat.t0 else []) + ([1] if saveat.t1 else [])
        if not keep:
            raise ValueError("SaveAt saves nothing: give ts or set t0/t1 = True")
    if event is None:
        ys, stats = adjoint.run(term, solver, y0, grid, controller, batch_ndim=batch_ndim, window=window,
                                compile=compile)
        keep_t = torch.tensor(keep, device=grid.device)
        return Solution(ts=grid.index_select(-1, keep_t), ys=ys.index_select(0, keep_t), stats=stats.as_dict())
    return _solve_event(term, solver, y0, grid, keep, controller, adjoint, batch_ndim, window, compile, event,
                        stop_slot=saveat.t1)


def _solve_event(term, solver, y0, grid, keep, controller, adjoint, batch_ndim, window, compile, event, *,
                 stop_slot: bool) -> Solution:
    """``solve`` with an :class:`Event`; ``stop_slot``: for a terminal event the save at ``t1``
    becomes where each trajectory stopped. Under another adjoint than :class:`DirectAdjoint`, with
    autograd on, the events are located without a graph and the solve is replayed with it
    (:mod:`._event_replay`)."""
    tracker = EventTracker(event)
    if isinstance(adjoint, BacksolveAdjoint) and (batch_ndim > 0 or grid.ndim > 1):
        raise ValueError("solve(..., event=..., adjoint=BacksolveAdjoint(...)) needs one clock shared by the batch "
                         "(batch_ndim=0 and a time grid of shape (time,)): the replay through the event times "
                         "would give each trajectory its own grid; use CheckpointAdjoint() for per-trajectory clocks")
    replay = not isinstance(adjoint, DirectAdjoint) and torch.is_grad_enabled()
    adjoint.check_solver(solver)          # before the locating solve, not after it
    with torch.no_grad() if replay else contextlib.nullcontext():
        ys, stats, _ = solve_grid(term, solver, y0, grid, controller, batch_ndim=batch_ndim, window=window,
                                  compile=compile, event=tracker)
    stats = stats.as_dict()
    stats["n_event_evals"] = tracker.n_cond
    keep_t = torch.tensor(keep, device=grid.device)
    t_stop, stopped, y_stop = tracker.stop_point()
    result = tracker.result
    if replay:
        ys, result, stats, t_stop, y_stop = replay_events(term, solver, y0, grid, controller, adjoint, window,
                                                          tracker, ys, stats)
    if stop_slot and any(e.terminal for e in tracker.events):
        grid, ys = _stop_slot(grid, ys, t_stop, stopped, y_stop)
    return Solution(ts=grid.index_select(-1, keep_t), ys=ys.index_select(0, keep_t), stats=stats, event=result)


def _stop_slot(grid: Tensor, ys: Tensor, t_stop: Tensor, stopped: Tensor, y_stop: Tensor) -> tuple[Tensor, Tensor]:
    """The save at ``t1`` becomes where each trajectory stopped (user shapes: ``t_stop``,
    ``stopped`` the batch shape or 0-d, ``y_stop`` the state's; both used where ``stopped`` only)."""
    last = grid.shape[-1] - 1
    if grid.ndim == 1 and t_stop.ndim:
        grid = grid.expand(t_stop.shape + grid.shape)
    t_last = torch.where(stopped, t_stop.to(grid.dtype), grid[..., last])
    grid = torch.cat([grid[..., :last], t_last.unsqueeze(-1)], -1)
    mask = stopped.reshape(stopped.shape + (1,) * (ys.ndim - 1 - stopped.ndim))
    return grid, torch.cat([ys[:last], torch.where(mask, y_stop, ys[last]).unsqueeze(0)], 0)


def odeint(f: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t: Tensor, *,
           solver: ODESolver | Any | None = None, rtol: float = 1e-6, atol: float = 1e-8,
           dt: float | None = None, adjoint: Adjoint | None = None, max_steps: int = 100_000,
           controller: PIController | ConstantStepSize | None = None, batch_ndim: int = 0,
           return_stats: bool = False, compile: bool = False):
    """Solve ``dy/dt = f(t, y)`` and return ``y`` at every time of ``t``: ``(time, *batch, *state)``.

    Like ``torchdiffeq.odeint`` with objects instead of strings: ``solver=Dopri5()`` (default),
    ``Tsit5()``, ``RK4()``, ... or a backend such as ``Torchdiffeq("dopri5")``. ``t`` is ``(time,)``
    — or ``(*batch, time)``, one grid per trajectory (then each trajectory steps on its own clock).
    ``dt`` selects fixed steps of at most ``dt`` between save times (required semantics for
    non-adaptive solvers; ``None`` = one step per save interval). ``batch_ndim > 0`` gives each of
    the leading ``batch_ndim`` axes its own step size and error norm (per-trajectory error
    control) instead of one RMS norm over the whole batch. ``return_stats``: also return the
    work counters. ``compile``: opt-in ``torch.compile`` of each adaptive attempt (see ``solve``).
    """
    solver = Dopri5() if solver is None else solver
    y0 = working_state(y0)  # a half-precision state under autocast is integrated in float32
    if isinstance(y0, Tensor) and (dtype := autocast_dtype(y0.device.type)) is not None:
        # the solver's arithmetic outside autocast, the field inside it (sciflow.solvers._precision)
        with torch.autocast(y0.device.type, enabled=False):
            return odeint(AutocastField(f, y0.device.type, dtype), y0, t, solver=solver, rtol=rtol, atol=atol,
                          dt=dt, adjoint=adjoint, max_steps=max_steps, controller=controller,
                          batch_ndim=batch_ndim, return_stats=return_stats, compile=compile)
    if getattr(type(solver), "backend", False):
        if adjoint is not None and not isinstance(adjoint, (DirectAdjoint, BacksolveAdjoint)):
            raise ValueError(f"{solver!r} supports DirectAdjoint or BacksolveAdjoint, got {adjoint!r}")
        ys, stats = solver.odeint(f, y0, t, rtol=rtol, atol=atol, dt=dt, adjoint=adjoint)
        return (ys, stats) if return_stats else ys
    term = ODETerm(f)
    check_term_kind(term, solver)
    if controller is None:
        controller = default_controller(solver, rtol=rtol, atol=atol, dt=dt, max_steps=max_steps)
    adjoint = adjoint or DirectAdjoint()
    check_times(t, "t", min_len=1)
    ys, stats = adjoint.run(term, solver, y0, t, controller, batch_ndim=batch_ndim, compile=compile)
    return (ys, stats.as_dict()) if return_stats else ys
