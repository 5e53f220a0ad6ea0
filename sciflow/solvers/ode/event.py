"""Terminal events: stop each trajectory where a condition function crosses zero.

``solve(..., event=Event(cond))`` integrates every trajectory until ``cond(t, y)`` changes sign
(or until ``t1``) and reports the event time and state in ``Solution.event`` — the time a ball
hits the ground, a concentration reaches a threshold, a neuron fires (Chen, Amos & Nickel, ICLR
2021, "Learning neural event functions for ordinary differential equations";
Shampine & Thompson 2000 for event location in ODE codes; scipy's ``solve_ivp(events=...)``,
torchdiffeq's ``odeint_event`` and diffrax's ``Event`` offer the same).

Detection. After each accepted step ``[t, t + h]`` the condition is evaluated at the step's end
(one batched call per step); a *crossing* is ``g(t) < 0 ≤ g(t + h)`` (rising, ``direction = +1``)
or ``g(t) > 0 ≥ g(t + h)`` (falling, ``-1``), either for ``direction = 0``, in the order of
integration. A start exactly on ``g = 0`` is therefore not an event (restart-safe). A pair of
crossings inside one step is not seen — as in every code that locates events from sign changes
at step ends; cap the step (``PIController(dtmax=...)``) if ``g`` oscillates faster than the
solution needs steps. The trajectory stops at the first crossing (per trajectory, with
per-trajectory clocks; the whole batch with one shared clock, whose ``cond`` returns a scalar).

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
(``ġ = 0``) contributes no time gradient.

Saved values. Save times after a trajectory's event time hold ``nan`` (that trajectory no longer
exists there); ``SaveAt(t1=True)`` (the default) saves the event state at the event time instead
of ``t1`` (diffrax's convention), so ``Solution.ts`` may differ per trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._flat_field import FlatField

__all__ = ["Event", "EventResult"]


@dataclass(frozen=True)
class Event:
    """A terminal event: stop each trajectory where ``cond(t, y)`` crosses zero.

    ``cond(t, y)`` gets the user's time (``(*batch,)`` with per-trajectory clocks, a 0-d tensor
    with one shared clock) and state ``(*batch, *state)`` and returns ``(*batch,)`` (or a 0-d
    tensor with a shared clock); it must be differentiable for event-time gradients.
    ``direction``: ``+1`` rising crossings only, ``-1`` falling only, ``0`` both (in the order
    of integration). ``max_iter``: root-finding iterations at most (the usual count is under
    15). See the module docstring for detection, location and gradients.
    """

    cond: Callable[[Tensor, Tensor], Tensor]
    direction: int = 0
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not callable(self.cond):
            raise TypeError(f"Event.cond must be callable as cond(t, y), got {type(self.cond).__name__}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"Event.direction must be -1 (falling), 0 (either) or +1 (rising), "
                             f"got {self.direction!r}")
        if int(self.max_iter) < 1:
            raise ValueError(f"Event.max_iter must be >= 1, got {self.max_iter!r}")


@dataclass
class EventResult:
    """Where each trajectory stopped: ``t (*batch,)`` the event time, or the end time ``t1``
    where no event occurred; ``y (*batch, *state)`` the state there; ``occurred (*batch,)``
    bool. With one shared clock all three are 0-d / ``(*state)``-shaped for the whole batch."""

    t: Tensor
    y: Tensor
    occurred: Tensor


class EventTracker:
    """Event detection and location on the flat layout of the stepping loops (internal).

    The loops call :meth:`cond` at each step end, :meth:`crossed` to compare with the previous
    value, :meth:`record` for the steps where a trajectory first crosses, and
    :meth:`locate` once at the end; the result is then in :attr:`result` (user shapes).
    """

    def __init__(self, event: Event) -> None:
        self.event = event
        self.field: FlatField | None = None
        self.halted: Tensor | None = None
        self.step: tuple | None = None
        self.result: EventResult | None = None
        self.t_stop: Tensor | None = None
        self.n_cond = 0

    def bind(self, field: FlatField) -> None:
        """Attach the solve's flat field (its shapes, clock and direction)."""
        self.field = field

    def cond(self, t: Tensor, y: Tensor) -> Tensor:
        """``g (B,)`` at flat ``(t (B,), y (B, S))`` (the integration frame)."""
        f = self.field
        tt = t.reshape(()) if f.shared_clock else t.reshape(f.batch_shape)
        g = self.event.cond(-tt if f.direction < 0 else tt, y.reshape(f.y_shape))
        want = () if f.shared_clock else f.batch_shape
        if not isinstance(g, Tensor):
            raise TypeError(f"Event.cond must return a torch.Tensor, got {type(g).__name__}")
        if tuple(g.shape) != tuple(want):
            what = "one shared clock: a 0-d tensor" if f.shared_clock else "the batch shape"
            raise ValueError(f"shape mismatch: Event.cond returned shape {tuple(g.shape)}; it must return one value "
                             f"per trajectory, shape {tuple(want)} ({what})")
        self.n_cond += 1
        return g.reshape(t.shape[0])

    def start(self, t: Tensor, y: Tensor) -> Tensor:
        """``g`` at the initial state, checked finite (one host sync)."""
        g = self.cond(t, y)
        if not bool(torch.isfinite(g).all()):
            i = int(torch.nonzero(~torch.isfinite(g))[0])
            raise FloatingPointError(f"Event.cond returned a non-finite value (nan/inf) at the initial state "
                                     f"(trajectory {i}); it must be finite along the solution")
        self.halted = torch.zeros(t.shape[0], dtype=torch.bool, device=t.device)
        return g

    def crossed(self, g0: Tensor, g1: Tensor) -> Tensor:
        """Which rows cross zero between ``g0`` and ``g1`` in the event's direction."""
        up = (g0 < 0) & (g1 >= 0)
        down = (g0 > 0) & (g1 <= 0)
        d = self.event.direction
        return up if d > 0 else down if d < 0 else up | down

    def record(self, cross: Tensor, t: Tensor, h: Tensor, y0: Tensor, y1: Tensor, ks: list[Tensor],
               g0: Tensor, g1: Tensor) -> None:
        """Keep the step ``[t, t + h]`` of the rows that cross here for the first time."""
        new = cross & ~self.halted
        self.halted = self.halted | cross
        parts = (t, h, g0, g1, y0, y1, *ks)
        if self.step is None:
            self.step = tuple(torch.zeros_like(p) for p in parts)
        self.step = tuple(torch.where(new if p.ndim == 1 else new.unsqueeze(-1), p, old)
                          for p, old in zip(parts, self.step))

    def locate(self, solver, t_end: Tensor, y_end: Tensor) -> None:
        """Find the event times; set :attr:`result` (user shapes) and :attr:`t_stop`, the flat
        stopping times ``(B,)`` (the end time where no event occurred)."""
        f = self.field
        occurred = self.halted
        if self.step is None or not bool(occurred.any()):
            t_ev, y_ev = t_end, y_end
        else:
            t_ev, y_ev = self._locate(solver, occurred)
            t_ev = torch.where(occurred, t_ev, t_end)
            y_ev = torch.where(occurred.unsqueeze(-1), y_ev, y_end)
        user_t = t_ev if f.direction > 0 else -t_ev
        shape = () if f.shared_clock else f.batch_shape
        self.result = EventResult(t=user_t.reshape(shape), y=y_ev.reshape(f.y_shape),
                                  occurred=occurred.reshape(shape))
        self.t_stop = t_ev.detach()

    def _locate(self, solver, occurred: Tensor) -> tuple[Tensor, Tensor]:
        t0, h, g0, g1, y0, y1, *ks = self.step
        f = self.field
        coef = solver.interp_coefficients(y0.dtype, y0.device)
        f1 = f.raw(t0 + h, y1)     # the Hermite fallback's end slope (differentiable)

        def dense(theta: Tensor, h=h, y0=y0, y1=y1, ks=ks, f1=f1) -> Tensor:
            return solver.interpolate(theta.unsqueeze(1), h, y0, y1, ks, f1, coef=coef)[:, 0]

        with torch.no_grad():
            theta = self._illinois(lambda th: self.cond(t0 + th * h, dense(th)), g0, g1, occurred)
            t_hat = t0 + theta * h
        if not torch.is_grad_enabled():
            return t_hat, dense(theta)
        # implicit-function-theorem gradient: one Newton step with the root held fixed
        y_hat = dense(theta)
        g_hat = self.cond(t_hat, y_hat)
        # ġ: d/dt of g along the dense output (not f: the exact derivative of the computed root)
        step = [x.detach() for x in (t0, h, y0, y1, f1, *ks)]
        with torch.enable_grad():
            tt = t_hat.detach().requires_grad_(True)
            th = (tt - step[0]) / torch.where(step[1] != 0, step[1], torch.ones_like(step[1]))
            yy = dense(th, h=step[1], y0=step[2], y1=step[3], f1=step[4], ks=step[5:])
            gdot, = torch.autograd.grad(self.cond(tt, yy).sum(), tt, allow_unused=True)
        if gdot is None:
            gdot = torch.zeros_like(t_hat)
        inv = torch.where(gdot != 0, 1.0 / torch.where(gdot != 0, gdot, torch.ones_like(gdot)), torch.zeros_like(gdot))
        t_star = t_hat - (g_hat - g_hat.detach()) * inv
        return t_star, dense((t_star - t0) / torch.where(h != 0, h, torch.ones_like(h)))

    def _illinois(self, g: Callable[[Tensor], Tensor], g0: Tensor, g1: Tensor, rows: Tensor) -> Tensor:
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
        for it in range(self.event.max_iter):
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
                raise FloatingPointError("Event.cond returned a non-finite value (nan/inf) while locating an "
                                         "event inside a step; it must be finite along the solution")
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
