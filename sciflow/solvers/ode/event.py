"""Events: locate where a condition function crosses zero; stop there or record the crossings.

``solve(..., event=Event(cond))`` integrates every trajectory until ``cond(t, y)`` changes sign
(or until ``t1``) and reports the event time and state in ``Solution.event`` — the time a ball
hits the ground, a concentration reaches a threshold, a neuron fires (Chen, Amos & Nickel, ICLR
2021, "Learning neural event functions for ordinary differential equations";
Shampine & Thompson 2000 for event location in ODE codes; scipy's ``solve_ivp(events=...)``,
torchdiffeq's ``odeint_event`` and diffrax's ``Event`` offer the same).
``Event(cond, terminal=False, max_events=K)`` records the first ``K`` crossings of each trajectory
and integrates on (a Poincaré section, the Lorenz return map); ``terminal=True`` with ``K > 1``
stops at the ``K``-th.

Detection. After each accepted step ``[t, t + h]`` the condition is evaluated at the step's end
(one batched call per step); a *crossing* is ``g(t) < 0 ≤ g(t + h)`` (rising, ``direction = +1``)
or ``g(t) > 0 ≥ g(t + h)`` (falling, ``-1``), either for ``direction = 0``, in the order of
integration. A start exactly on ``g = 0`` is therefore not an event (restart-safe). A pair of
crossings inside one step is not seen — as in every code that locates events from sign changes
at step ends; cap the step (``PIController(dtmax=...)``) if ``g`` oscillates faster than the
solution needs steps. Crossings are per trajectory with per-trajectory clocks (for the whole batch
with one shared clock, whose ``cond`` returns a scalar); a crossing step is kept and the kept steps
are located together, once at the end or when a trajectory crosses again before its last crossing
was located.

Several events. ``solve(..., event=[Event(a), Event(b), ...])`` tracks them together (a ball in
a box: the floor and a wall; a neuron's spike beside a recorded threshold), each with its own
direction, ``terminal`` and ``max_events``, and ``Solution.event`` is a tuple of results in the
same order. A trajectory stops at the first terminal stop among them; crossings after that time
do not happen, also inside the step where it stopped (all crossings of a step are located before
that is decided). A terminal event that stopped a trajectory is the one whose last crossing
``occurred`` (on an exact tie, both did).

Location. Inside the step the event time is the root of ``θ ↦ g(t + θh, ŷ(θ))`` on the solver's
dense output ``ŷ`` (order 4 for Dopri5/Tsit5, 3 for Rodas4, cubic Hermite otherwise), found by the
Illinois variant of regula falsi (Dowell & Jarratt 1971) with a bisection every third iteration
(the bracket at least halves every three evaluations), batched over trajectories, to a bracket of
``4 ε`` in ``θ`` or an exact zero. The returned time is the end of the final bracket on the
*uncrossed* side (``g`` has not yet changed sign there, up to the rounding of the dense output) —
or an exact zero of ``g``; restarting from the event state with a changed velocity and the same
``direction`` does not re-trigger the event just found.

Gradients (:class:`~sciflow.solvers.ode.adjoint.DirectAdjoint`). The event time ``t*`` is
defined implicitly by ``g(t*, y(t*; θ); θ) = 0``; by the implicit function theorem (the
gradient Chen, Amos & Nickel 2021 derive for event times)

.. math::
    \\frac{dt^*}{dθ} = -\\frac{\\partial_θ g + \\partial_y g \\cdot \\partial_θ y(t^*)}
                          {\\partial_t g + \\partial_y g \\cdot f(t^*, y(t^*))},

applied here as one Newton step with the root held fixed: ``t* = t̂ - (g(t̂, ŷ(t̂)) - sg[g]) / sg[ġ]``
(``sg``: stop-gradient), whose value is ``t̂`` and whose gradient is the formula above with
``f(t*, y(t*))`` replaced by the dense output's slope ``ŷ'(t*)`` — the exact gradient of the
computed event time (they differ by the interpolation error); the event state is the dense output
at that differentiable ``t*``, so ``dy*/dθ`` includes ``ŷ'(t*) dt*/dθ``. Both are checked against
finite differences and closed forms in ``tests/solvers/test_events.py``. A tangential crossing
(``ġ = 0``) contributes no time gradient. With :class:`~sciflow.solvers.ode.adjoint.CheckpointAdjoint`
(or, with one shared clock, :class:`~sciflow.solvers.ode.adjoint.BacksolveAdjoint`) the events are
located without a graph and the solve is replayed with that adjoint through the event times, then
the same Newton step is taken with ``f`` itself for ``ġ`` (:mod:`sciflow.solvers.ode._event_replay`;
memory flat in the number of steps).

Saved values. For a terminal event, save times after a trajectory's stop hold ``nan`` (that
trajectory no longer exists there) and ``SaveAt(t1=True)`` (the default) saves the state where it
stopped, at that time, instead of ``t1`` (diffrax's convention), so ``Solution.ts`` may differ per
trajectory. Crossings that did not happen are ``nan`` in ``Solution.event`` (``occurred`` says
which did).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._flat_field import FlatField

__all__ = ["Event", "EventResult"]


@dataclass(frozen=True)
class Event:
    """Where ``cond(t, y)`` crosses zero: stop each trajectory there, or record the crossings.

    ``cond(t, y)`` gets the user's time (``(*batch,)`` with per-trajectory clocks, a 0-d tensor
    with one shared clock) and state ``(*batch, *state)`` and returns ``(*batch,)`` (or a 0-d
    tensor with a shared clock); it must be differentiable for event-time gradients.
    ``direction``: ``+1`` rising crossings only, ``-1`` falling only, ``0`` both (in the order
    of integration). ``max_events``: crossings located per trajectory; ``terminal``: stop the
    trajectory at the last of them (``False``: record them and integrate on to ``t1``, e.g. a
    Poincaré section). ``max_iter``: root-finding iterations at most (usually under 15). See the
    module docstring for detection, location and gradients.
    """

    cond: Callable[[Tensor, Tensor], Tensor]
    direction: int = 0
    terminal: bool = True
    max_events: int = 1
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not callable(self.cond):
            raise TypeError(f"Event.cond must be callable as cond(t, y), got {type(self.cond).__name__}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"Event.direction must be -1 (falling), 0 (either) or +1 (rising), "
                             f"got {self.direction!r}")
        if not isinstance(self.max_events, int) or self.max_events < 1:
            raise ValueError(f"Event.max_events must be an integer >= 1, got {self.max_events!r}")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"Event.max_iter must be an integer >= 1, got {self.max_iter!r}")


@dataclass
class EventResult:
    """The located crossings: ``t`` their times, ``y`` the states there, ``occurred`` which exist
    (``t``, ``y`` are ``nan`` where not). Shapes ``(*batch,)``, ``(*batch, *state)``,
    ``(*batch,)`` for ``max_events = 1``, else with an events axis: ``(*batch, K)``,
    ``(*batch, K, *state)``, ``(*batch, K)`` in order of occurrence. With one shared clock the
    batch shape is ``()``."""

    t: Tensor
    y: Tensor
    occurred: Tensor


def condition(event: Event, t: Tensor, y: Tensor, want: tuple[int, ...] | None, what: str = "",
              name: str = "Event.cond") -> Tensor:
    """``event.cond(t, y)``, checked: a floating tensor of shape ``want`` (not checked when
    ``None``; ``what`` says what that shape is), copied — ``cond`` often returns a view of ``y``
    (``y[..., 0]``), and the stepping loops reuse their state buffers. ``name``: how errors name
    the condition. Used by the ODE event tracker and
    :func:`~sciflow.solvers.sde.first_passage.first_passage`."""
    g = event.cond(t, y)
    if not isinstance(g, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(g).__name__}")
    if want is not None and tuple(g.shape) != tuple(want):
        raise ValueError(f"shape mismatch: {name} returned shape {tuple(g.shape)}; it must return one value "
                         f"per trajectory, shape {tuple(want)} ({what})")
    if not g.is_floating_point():
        raise TypeError(f"{name} must return a floating tensor — a continuous function of (t, y) whose "
                        f"zero is located inside the step — got dtype {g.dtype}; write a threshold as "
                        f"y[..., 0] - c, not y[..., 0] > c")
    return g.clone()


def newton_root(t_hat: Tensor, g: Tensor, gdot: Tensor) -> Tensor:
    """One Newton step with the root held fixed, ``t̂ - (g - sg[g]) / ġ``: the value ``t̂`` and
    the implicit-function-theorem gradient of the root (module docstring); ``g`` carries the graph,
    ``ġ`` none. A tangential crossing (``ġ = 0``) gets no time gradient."""
    nz = gdot != 0
    inv = torch.where(nz, 1.0 / torch.where(nz, gdot, torch.ones_like(gdot)), torch.zeros_like(gdot))
    return t_hat - (g - g.detach()) * inv


def as_events(event) -> tuple[tuple[Event, ...], list[str]]:
    """``solve``'s (and ``first_passage``'s) ``event`` argument — one :class:`Event` or a
    non-empty list of them — as a tuple, with the names errors give their conditions
    (``Event.cond``, or ``event[i].cond`` in a list)."""
    events = (event,) if isinstance(event, Event) else tuple(event) if isinstance(event, (list, tuple)) else None
    if not events or not all(isinstance(e, Event) for e in events):
        raise TypeError(f"event must be an Event(cond, direction) or a non-empty list of them, got {event!r}")
    names = ["Event.cond"] if isinstance(event, Event) else [f"event[{e}].cond" for e in range(len(events))]
    return events, names


class EventTracker:
    """Event detection and location on the flat layout of the stepping loops (internal), for one
    :class:`Event` or several (conditions ``g (B, E)``, one column per event).

    The loops call :meth:`start` once, :meth:`cond` at each accepted step's end,
    :meth:`crossed` to compare with the previous value and, when a row crosses,
    :meth:`on_crossing` (notes the step, returns the rows to stop), then :meth:`finish`, which
    locates what is pending; the result is in :attr:`result` (user shapes: an
    :class:`EventResult`, or a tuple of them for a list of events), the flat stopping times in
    :attr:`t_stop`.
    """

    def __init__(self, event: Event | list[Event] | tuple[Event, ...]) -> None:
        self.events, self.names = as_events(event)
        self.single = isinstance(event, Event)
        self.field: FlatField | None = None
        self.count: Tensor | None = None        # (B, E) crossings noted per event
        self.pending: Tensor | None = None      # (B, E) crossings noted but not yet located
        self.result: EventResult | tuple[EventResult, ...] | None = None
        self.t_stop: Tensor | None = None
        self.n_cond = 0

    def bind(self, field: FlatField) -> None:
        """Attach the solve's flat field (its shapes, clock and direction)."""
        self.field = field

    def cond_one(self, e: int, t: Tensor, y: Tensor) -> Tensor:
        """Event ``e``'s ``g (B,)`` at flat ``(t (B,), y (B, S))`` (the integration frame)."""
        f = self.field
        tt = t.reshape(()) if f.shared_clock else t.reshape(f.batch_shape)
        want, what = ((), "one shared clock: a 0-d tensor") if f.shared_clock else (f.batch_shape, "the batch shape")
        g = condition(self.events[e], -tt if f.direction < 0 else tt, y.reshape(f.y_shape), want, what,
                      self.names[e])
        self.n_cond += 1
        return g.reshape(t.shape[0])

    def cond(self, t: Tensor, y: Tensor) -> Tensor:
        """``g (B, E)`` at flat ``(t (B,), y (B, S))``: every event's condition."""
        return torch.stack([self.cond_one(e, t, y) for e in range(len(self.events))], -1)

    def nonfinite(self, g: Tensor, at: str) -> FloatingPointError:
        """The error for a non-finite ``g (B, E)``; ``at``: where (the time, or the initial state)."""
        i, e = (int(v) for v in torch.nonzero(~torch.isfinite(g))[0])
        return FloatingPointError(f"{self.names[e]} returned a non-finite value (nan/inf) {at} (trajectory {i}); "
                                  f"it must be finite along the solution")

    def start(self, t: Tensor, y: Tensor) -> Tensor:
        """``g`` at the initial state, checked finite (one host sync); empty event buffers."""
        g = self.cond(t, y)
        if not bool(torch.isfinite(g).all()):
            raise self.nonfinite(g, "at the initial state")
        B, dev = t.shape[0], t.device
        evs = self.events
        self.K = torch.tensor([ev.max_events for ev in evs], device=dev)
        self.terminal = torch.tensor([ev.terminal for ev in evs], device=dev)
        d = torch.tensor([ev.direction for ev in evs], device=dev)
        self.rising, self.falling = d >= 0, d <= 0
        self.count = torch.zeros(B, len(evs), dtype=torch.long, device=dev)
        self.times = [torch.full((B, ev.max_events), math.nan, dtype=y.dtype, device=dev) for ev in evs]
        self.states = [torch.full((B, ev.max_events, y.shape[1]), math.nan, dtype=y.dtype, device=dev) for ev in evs]
        return g

    def crossed(self, g0: Tensor, g1: Tensor) -> Tensor:
        """Which rows cross zero between ``g0`` and ``g1`` in each event's direction ``(B, E)``."""
        up = (g0 < 0) & (g1 >= 0)
        down = (g0 > 0) & (g1 <= 0)
        return (up & self.rising) | (down & self.falling)

    def on_crossing(self, solver, cross: Tensor, t: Tensor, h: Tensor, y0: Tensor, y1: Tensor,
                    ks: list[Tensor], g0: Tensor, g1: Tensor) -> Tensor:
        """Note the crossings ``cross (B, E)`` in the step ``[t, t + h]`` of the events that still
        record and return the rows ``(B,)`` that stop here (a terminal event's last crossing).

        Location is deferred: the step is kept per row and the kept steps are located together,
        in one batched root search per event, when a row crosses again before its last crossings
        were located, and at :meth:`finish` — a batch whose trajectories stop at different
        attempts is searched once, not once per attempt."""
        # a stopped row records nothing more (the fixed-step loop steps on with the others)
        stopped = (self.terminal & (self.count >= self.K)).any(-1, keepdim=True)
        new = cross & (self.count < self.K) & ~stopped
        row = new.any(-1)
        if self.pending is not None and bool((row & self.pending.any(-1)).any()):
            self._flush(solver)
        parts = (t, h, g0, g1, y0, y1, *ks)
        if self.pending is None:
            # every row starts from this (real) step, not zeros: the rows not searched in a flush still
            # run through f and the interpolant, and a field singular at y = 0 (k / y) would give
            # inf there, which times the zero gradient of the masked rows is nan in the backward pass.
            # Copies: the host loop's stage buffers are overwritten by the next step
            self.pending, self.slot = torch.zeros_like(new), torch.zeros_like(self.count)
            self.kept = tuple(p.clone() for p in parts)
        else:
            self.kept = tuple(torch.where(row if p.ndim == 1 else row.unsqueeze(-1), p, old)
                              for p, old in zip(parts, self.kept))
        self.slot = torch.where(new, self.count, self.slot)
        self.pending = self.pending | new
        self.count = self.count + new
        return (new & self.terminal & (self.count >= self.K)).any(-1)

    def _flush(self, solver) -> None:
        """Locate the kept crossings of the pending rows and store them in their slots. A row that
        a terminal event stops keeps only the crossings up to the first such stop in its step."""
        t, h, g0, g1, y0, y1, *ks = self.kept
        rows = self.pending
        located = {e: self._locate(solver, e, rows[:, e], t, h, y0, y1, ks, g0[:, e], g1[:, e])
                   for e in range(len(self.events)) if bool(rows[:, e].any())}
        stops = rows & self.terminal & (self.count >= self.K)
        if bool(stops.any()):
            inf = torch.full_like(t, math.inf)
            t_cols = torch.stack([located[e][0].detach() if e in located else inf
                                  for e in range(len(self.events))], -1)
            t_halt = torch.where(stops, t_cols, math.inf).amin(-1, keepdim=True)
            late = rows & (t_cols > t_halt)      # after the stop: these crossings do not happen
            rows = rows & ~late
            self.count = self.count - late.long()
        for e, (t_ev, y_ev) in located.items():
            at = (torch.arange(self.events[e].max_events, device=t.device) == self.slot[:, e:e + 1]) & rows[:, e:e + 1]
            self.times[e] = torch.where(at, t_ev.unsqueeze(1).to(y0.dtype), self.times[e])
            self.states[e] = torch.where(at.unsqueeze(-1), y_ev.unsqueeze(1), self.states[e])
        self.pending = torch.zeros_like(self.pending)

    def finish(self, solver, t_end: Tensor) -> None:
        """Locate what is pending; set :attr:`result` (user shapes) and :attr:`t_stop`, the flat
        stopping times ``(B,)``: the first time a terminal event reached its ``max_events``, else
        ``t_end``; :attr:`stop_event` ``(B,)``: which event that was (the first on a tie, ``-1`` for
        none)."""
        if self.pending is not None and bool(self.pending.any()):
            self._flush(solver)
        f = self.field
        t_end = t_end.to(self.times[0].dtype)
        batch = tuple(f.batch_shape)                # () with one shared clock
        state = tuple(f.y_shape[len(batch):])
        results, stops, t_last = [], [], []
        for e, ev in enumerate(self.events):
            K = ev.max_events
            occurred = torch.arange(K, device=t_end.device) < self.count[:, e:e + 1]      # (B, K)
            stops.append(occurred[:, -1] & ev.terminal)
            t_last.append(self.times[e][:, -1])
            times = self.times[e] if f.direction > 0 else -self.times[e]
            if K == 1:
                results.append(EventResult(t=times[:, 0].reshape(batch),
                                           y=self.states[e][:, 0].reshape(batch + state),
                                           occurred=occurred[:, 0].reshape(batch)))
            else:
                results.append(EventResult(t=times.reshape(batch + (K,)),
                                           y=self.states[e].reshape(batch + (K,) + state),
                                           occurred=occurred.reshape(batch + (K,))))
        self.result = results[0] if self.single else tuple(results)
        stops_, t_last_ = torch.stack(stops, -1), torch.stack(t_last, -1)       # (B, E)
        self.stopped = stops_.any(-1)
        t_first = torch.where(stops_, t_last_, math.inf).amin(-1)
        self.t_stop = torch.where(self.stopped, t_first, t_end)
        # the stopping event (the first on ties; -1: none) and its state
        first = stops_ & (t_last_ == t_first.unsqueeze(-1))
        self.stop_event = torch.where(self.stopped, first.long().argmax(-1), -1)
        y_stop = torch.full_like(self.states[0][:, -1], math.nan)
        for e in range(len(self.events)):
            y_stop = torch.where((self.stop_event == e).unsqueeze(-1), self.states[e][:, -1], y_stop)
        self.y_stop = y_stop

    def stop_point(self) -> tuple[Tensor, Tensor, Tensor]:
        """Where each trajectory stopped, in user shapes: time (its terminal event's, else ``t1``),
        whether a terminal event stopped it, and the event state (``nan`` where not)."""
        f = self.field
        batch = tuple(f.batch_shape)
        return ((self.t_stop if f.direction > 0 else -self.t_stop).reshape(batch), self.stopped.reshape(batch),
                self.y_stop.reshape(tuple(f.y_shape)))

    def _locate(self, solver, e: int, rows: Tensor, t0: Tensor, h: Tensor, y0: Tensor, y1: Tensor,
                ks: list[Tensor], g0: Tensor, g1: Tensor) -> tuple[Tensor, Tensor]:
        """Event ``e``'s times ``(B,)`` and states ``(B, S)`` of the crossings in the steps of
        ``rows`` (other rows: meaningless values, masked by the caller)."""
        f = self.field
        coef = solver.interp_coefficients(y0.dtype, y0.device)
        f1 = f.raw(t0 + h, y1)     # the Hermite fallback's end slope (differentiable)

        def dense(theta: Tensor, h=h, y0=y0, y1=y1, ks=ks, f1=f1) -> Tensor:
            return solver.interpolate(theta.unsqueeze(1), h, y0, y1, ks, f1, coef=coef)[:, 0]

        with torch.no_grad():
            theta = self._illinois(lambda th: self.cond_one(e, t0 + th * h, dense(th)), g0, g1, rows,
                                   self.events[e].max_iter, e)
            t_hat = t0 + theta * h
        if not torch.is_grad_enabled():
            return t_hat, dense(theta)
        # implicit-function-theorem gradient: one Newton step with the root held fixed
        y_hat = dense(theta)
        g_hat = self.cond_one(e, t_hat, y_hat)
        if not g_hat.requires_grad:          # nothing to differentiate the event time by
            return t_hat, y_hat
        # ġ: d/dt of g along the dense output (not f: the exact derivative of the computed root)
        step = [x.detach() for x in (t0, h, y0, y1, f1, *ks)]
        with torch.enable_grad():
            tt = t_hat.detach().requires_grad_(True)
            th = (tt - step[0]) / torch.where(step[1] != 0, step[1], torch.ones_like(step[1]))
            yy = dense(th, h=step[1], y0=step[2], y1=step[3], f1=step[4], ks=step[5:])
            gdot, = torch.autograd.grad(self.cond_one(e, tt, yy).sum(), tt, allow_unused=True)
        t_star = newton_root(t_hat, g_hat, torch.zeros_like(t_hat) if gdot is None else gdot)
        return t_star, dense((t_star - t0) / torch.where(h != 0, h, torch.ones_like(h)))

    def _illinois(self, g: Callable[[Tensor], Tensor], g0: Tensor, g1: Tensor, rows: Tensor, max_iter: int,
                  e: int) -> Tensor:
        """Root ``θ ∈ [0, 1]`` of ``g`` per row (Illinois regula falsi with a bisection every
        third iteration), on the uncrossed side; rows not in ``rows`` return 1."""
        one = torch.ones_like(g0)
        # orient so that the crossed side is g >= 0: s g(0) < 0 <= s g(1)
        s = torch.where(g1 >= g0, one, -one)
        a, b = torch.zeros_like(g0), one.clone()
        ga, gb = s * g0, s * g1
        exact = rows & (gb == 0)
        active = rows & ~exact
        side = torch.zeros_like(g0)              # -1: a moved last, +1: b moved last
        tol = 4 * torch.finfo(g0.dtype).eps
        for it in range(max_iter):
            if not bool(active.any()):
                break
            if it % 3 == 2:
                c = 0.5 * (a + b)
            else:
                c = (a * gb - b * ga) / (gb - ga)
                bad = ~torch.isfinite(c) | (c <= a) | (c >= b)
                c = torch.where(bad, 0.5 * (a + b), c)
            gc = s * g(c)
            if not bool(torch.isfinite(gc[active]).all()):
                raise FloatingPointError(f"{self.names[e]} returned a non-finite value (nan/inf) while locating "
                                         f"an event inside a step; it must be finite along the solution")
            hit = active & (gc == 0)
            exact = exact | hit
            b = torch.where(hit, c, b)
            left = active & ~hit & (gc < 0)       # root in [c, b]: a moves
            right = active & ~hit & (gc > 0)      # root in [a, c]: b moves
            # Illinois: halve the value at the end point that stayed twice in a row
            gb = torch.where(left & (side < 0), 0.5 * gb, gb)
            ga = torch.where(right & (side > 0), 0.5 * ga, ga)
            a, ga = torch.where(left, c, a), torch.where(left, gc, ga)
            b, gb = torch.where(right, c, b), torch.where(right, gc, gb)
            side = torch.where(left, -one, torch.where(right, one, side))
            active = active & ~hit & ((b - a) > tol)
        return torch.where(exact, b, torch.where(rows, a, one))
