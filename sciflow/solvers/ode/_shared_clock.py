"""Adaptive stepping with one clock for the whole batch, controlled on the host.

When every trajectory shares one step sequence (``batch_ndim = 0``, torchdiffeq's semantics) the
controller state — ``t``, ``h``, the previous error ratio, the next save index — is a handful of
scalars. The masked loop of :mod:`._integrate` keeps them as tensors, which costs some 40 small
tensor operations per attempt for what are scalar decisions. Here they are Python floats: each
attempt does the stages and the error norm on the device and **one host sync** (the error ratio
``r``, the same single sync per attempt as the masked loop's flags), then the PI update, the
accept/reject decision and the save-time bookkeeping run on the host. The clock is float64 whatever
the state's dtype (no float32 overshoot of ``t + h``).

Without autograd the stages use a preallocated buffer ``Z = [y; k_1; …; k_s]`` of shape
``(s + 1, N)`` (``N`` = all state entries of the batch): each stage input is one matrix-vector
product ``y_i = Z[:i+1]^T (1, h a_i1, …, h a_i,i-1)`` and the error estimate another
(``e = Z[1:]^T h (b - \\hat b)``), with the step-dependent coefficient vectors formed by one
``add`` per attempt — a fixed handful of kernel launches per stage whatever the tableau. With
autograd enabled the solver's own differentiable :meth:`ExplicitRungeKutta.step` is used (no
in-place buffers), with the same host controller; so are solvers without an explicit tableau (the
Rosenbrock methods), with or without autograd.

Semantics equal :func:`._integrate.integrate_adaptive` (same PI formula, same acceptance rule,
same window rule for save times, so the same steps up to rounding in the clock) — see that module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._flat_field import FlatField
from ._integrate import initial_step
from .controller import STRETCH, PIController
from .event import EventTracker
from .runge_kutta import ExplicitRungeKutta
from .solver import ODESolver

__all__ = ["integrate_shared_clock"]


class _BufferedStages:
    """The stage loop of one explicit RK step on the buffer ``Z = [y; k_1 … k_s]`` (no autograd).

    ``fn(t, y)`` is the user's field on the user's state shape ``shape``; ``sign = -1`` solves the
    time-reversed problem ``dy/ds = -f(-s, y)``. ``Z[0]`` holds ``y``, ``Z[1]`` holds ``k_1``.
    """

    def __init__(self, solver: ExplicitRungeKutta, fn, shape: tuple[int, ...], sign: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        tab = solver.tableau
        s = tab.stages
        n = math.prod(shape)
        self.fn, self.shape, self.sign, self.s, self.fsal = fn, shape, sign, s, tab.fsal
        self.dtype, self.device = dtype, device
        self.Z = torch.zeros(s + 1, n, dtype=dtype, device=device)
        self.k_rows = [self.Z[1 + i].view(shape) for i in range(s)]
        self.y_row = self.Z[0]
        self.y_view = self.Z[0].view(shape)
        self.prefix_t = [self.Z[: i + 1].t() for i in range(s + 2)]   # rows y, k_1 … k_i
        self.k_t = self.Z[1:].t()
        # stage inputs, one buffer each (stage i reads y, k_1 … k_i); for FSAL the last is y_1
        self.y_in = [torch.empty(n, dtype=dtype, device=device) for _ in range(s)]
        self.y_in_view = [b.view(shape) for b in self.y_in]
        # coefficient vectors, flattened: stage rows [1, a_i1 … a_i,i-1], then (non-FSAL) the
        # solution row [1, b_1 … b_s], then the error row (b - b_hat); value = base + h * scale
        base, scale, sizes = [], [], []
        for i in range(1, s):
            row = tab.a[i, :i].tolist()
            base += [1.0] + [0.0] * i
            scale += [0.0] + row
            sizes.append(i + 1)
        if not self.fsal:
            base += [1.0] + [0.0] * s
            scale += [0.0] + tab.b.tolist()
            sizes.append(s + 1)
        base += [0.0] * s
        scale += tab.b_err.tolist()
        sizes.append(s)
        self.base = torch.tensor(base, dtype=dtype, device=device)
        self.scale = torch.tensor(scale, dtype=dtype, device=device)
        self.sizes = sizes
        self.c = tab.c.tolist()
        self.err = torch.empty(n, dtype=dtype, device=device)
        self.abs_y = torch.empty(n, dtype=dtype, device=device)
        self.work = torch.empty(n, dtype=dtype, device=device)
        self.f1 = torch.empty(n, dtype=dtype, device=device)

    def field(self, t: float, y: Tensor, out: Tensor) -> None:
        """``out <- f(t, y)`` (sign-adjusted), ``t`` on the solver's (increasing) clock."""
        tt = torch.tensor(self.sign * t, dtype=self.dtype, device=self.device)
        k = self.fn(tt, y)
        if self.sign < 0:
            torch.neg(k, out=out)
        else:
            out.copy_(k)

    def set_state(self, y: Tensor, k1: Tensor) -> None:
        self.y_row.copy_(y.reshape(-1))
        self.Z[1].copy_(k1.reshape(-1))
        torch.abs(self.y_row, out=self.abs_y)

    def step(self, t: float, h: float) -> tuple[Tensor, Tensor]:
        """Stages of a step of size ``h`` from ``(t, Z[0])``; returns ``(y1 (N,), err (N,))``."""
        rows = torch.add(self.base, self.scale, alpha=h).split(self.sizes)
        times = torch.tensor([self.sign * (t + ci * h) for ci in self.c[1:]], dtype=self.dtype,
                             device=self.device).unbind(0)
        for i in range(1, self.s):
            torch.mv(self.prefix_t[i], rows[i - 1], out=self.y_in[i])
            k = self.fn(times[i - 1], self.y_in_view[i])
            if self.sign < 0:
                torch.neg(k, out=self.k_rows[i])
            else:
                self.k_rows[i].copy_(k)
        if self.fsal:
            y1 = self.y_in[self.s - 1]
        else:
            y1 = torch.mv(self.prefix_t[self.s], rows[self.s - 1])
        torch.mv(self.k_t, rows[-1], out=self.err)
        return y1, self.err

    def error_ratio(self, y1: Tensor, err: Tensor, ctrl: PIController, m: int | None = None) -> Tensor:
        """``‖e / (atol + rtol max(|y|, |y1|))‖_2`` over the first ``m``
        entries (all: ``None``; a seminorm); 0-d, divide by ``√m`` for the RMS."""
        w = torch.abs(y1, out=self.work)
        torch.maximum(w, self.abs_y, out=w)
        w.mul_(ctrl.rtol).add_(ctrl.atol)
        return torch.linalg.vector_norm(err[:m] / w[:m])

    def next_first_stage(self, y1: Tensor, t1: float) -> Tensor:
        """``f(t1, y1)`` as a row ``(N,)``: ``k_s`` for FSAL methods, else one new evaluation."""
        if self.fsal:
            return self.Z[self.s]
        self.field(t1, y1.view(self.shape), self.f1.view(self.shape))
        return self.f1

    def accept(self, y1: Tensor, f1: Tensor) -> None:
        """Commit ``y1`` (and ``|y1|``) and the next step's first stage ``f1``."""
        self.y_row.copy_(y1)
        torch.abs(self.y_row, out=self.abs_y)
        self.Z[1].copy_(f1)


def integrate_shared_clock(f: FlatField, solver: ODESolver, y0: Tensor, ts: Tensor,
                           ctrl: PIController, window: int = 4, h0: Tensor | None = None,
                           norm_entries: int | None = None, event: EventTracker | None = None
                           ) -> tuple[Tensor, Tensor]:
    """Adaptive steps on one shared clock; returns ``(ys (T, 1, N), last step h (1,))``.

    ``y0: (1, N)``, ``ts: (1, T)`` increasing (the caller's flat layout with ``B = 1``).
    ``norm_entries``: the error norm runs over the first entries only (a seminorm). ``event``:
    the condition is checked after each accepted step (one more host sync) and a crossing step is
    handed to the tracker (:mod:`.event`); a terminal event ends the loop, and the save times
    after it are ``nan`` rows.
    """
    if not f.shared_clock or y0.shape[0] != 1:
        raise ValueError("integrate_shared_clock needs one shared clock (batch_ndim = 0)")
    dev, dt_ = y0.device, y0.dtype
    save = ts[0].tolist()                       # host copy of the save times (one sync at set-up)
    T = len(save)
    t, t_end = save[0], save[-1]
    t_dev = ts[:, 0]
    k1 = f(t_dev, y0)                           # counted, output shape checked
    if h0 is not None:
        h = float(h0.reshape(-1)[0])
    elif ctrl.dt0 is None:
        h = float(initial_step(f, solver, t_dev, y0, k1, ctrl, ts[:, -1] - t_dev, norm_entries))
    else:
        h = float(ctrl.dt0 if ctrl.dtmax is None else min(ctrl.dt0, ctrl.dtmax))
    kexp = solver.error_order + 1
    beta1 = (ctrl.pcoeff + ctrl.icoeff) / kexp
    beta2 = ctrl.pcoeff / kexp
    Kw = max(1, min(window, T - 1))
    clip_to_window = (T - 1) > Kw
    coef = solver.interp_coefficients(dt_, dev)
    m = norm_entries
    inv_sqrt_n = 1.0 / math.sqrt(y0.shape[1] if m is None else m)
    # the solver's own step() with autograd, or for solvers without an explicit tableau (Rosenbrock);
    # the preallocated stage buffer otherwise
    use_step = torch.is_grad_enabled() or not isinstance(solver, ExplicitRungeKutta)
    if use_step:
        y, k_first = y0, k1
        raw = f.raw
    else:
        buf = _BufferedStages(solver, f.f, f.y_shape, f.direction, dt_, dev)
        buf.set_state(y0, k1)
    outs: list[Tensor] = [y0]
    idx = 1
    r_prev = 1.0
    steps = n_acc = 0
    if event is not None:
        g = event.start(t_dev, y0)
    while t < t_end:
        if steps >= ctrl.max_steps:
            raise RuntimeError(
                f"max_steps = {ctrl.max_steps} reached at t = {f.direction * t:.6g} (trajectory 0) before "
                f"t1 = {f.direction * t_end:.6g}; raise PIController.max_steps or loosen rtol/atol")
        t_lim = min(t_end, save[min(idx + Kw - 1, T - 1)]) if clip_to_window else t_end
        t_try = t + h
        clipped = t + STRETCH * h >= t_lim          # no sliver step (see controller.STRETCH)
        t_next = t_lim if clipped else t_try
        hh = t_next - t
        if use_step:
            tt = torch.full((1,), t, dtype=dt_, device=dev)
            hc = torch.full((1,), hh, dtype=dt_, device=dev)
            y1, ks, err = solver.step(raw, tt, y, hc, k_first)
            with torch.no_grad():
                scale = ctrl.atol + ctrl.rtol * torch.maximum(y.abs(), y1.abs())
                r = float(torch.linalg.vector_norm((err / scale)[:, :m])) * inv_sqrt_n   # the one host sync
        else:
            y1, err = buf.step(t, hh)
            r = float(buf.error_ratio(y1, err, ctrl, m)) * inv_sqrt_n        # the one host sync
        steps += 1
        accept = r <= 1.0                                                   # False for NaN
        if r != r:
            factor = ctrl.factor_min
        elif r == 0.0:
            factor = ctrl.factor_max
        else:
            factor = ctrl.safety * r ** (-beta1)
            if beta2:
                factor *= r_prev ** beta2
            factor = min(ctrl.factor_max, max(ctrl.factor_min, factor))
        if accept:
            factor = max(factor, 1.0)   # an accepted step never shrinks the next one
            n_acc += 1
            if beta2:
                r_prev = r
            # f(t1, y1): the next step's first stage (the last stage itself for FSAL methods)
            if use_step:
                f1 = ks[-1] if solver.fsal else raw(tt + hc, y1)
            else:
                f1 = buf.next_first_stage(y1, t_next)
            # dense output for the save times inside the accepted step
            j = idx
            while j < T and save[j] <= t_next:
                j += 1
            if j > idx:
                theta = torch.tensor([[(s - t) / hh for s in save[idx:j]]], dtype=dt_, device=dev)
                hc1 = torch.full((1,), hh, dtype=dt_, device=dev)
                if use_step:
                    outs.append(solver.interpolate(theta, hc1, y, y1, ks, f1, coef=coef)[0])
                else:
                    ks_b = [buf.Z[1 + i].unsqueeze(0) for i in range(solver.stages)]
                    outs.append(solver.interpolate(theta, hc1, buf.y_row.unsqueeze(0), y1.unsqueeze(0),
                                                   ks_b, f1.unsqueeze(0), coef=coef)[0])
                idx = j
            if event is not None:
                # before the buffers are overwritten: the tracker copies what it keeps
                t_new = torch.full((1,), t_next, dtype=dt_, device=dev)
                y_new = y1 if use_step else y1.unsqueeze(0)
                g1 = event.cond(t_new, y_new)
                cross = event.crossed(g, g1)
                if not bool(torch.isfinite(g1).all()):
                    raise event.nonfinite(g1, f"at t = {f.direction * t_next:.6g}")
                if bool(cross.any()):
                    t_old = torch.full((1,), t, dtype=dt_, device=dev)
                    h_old = torch.full((1,), hh, dtype=dt_, device=dev)
                    if use_step:
                        step = (t_old, h_old, y, y1, ks)
                    else:
                        step = (t_old, h_old, buf.y_row.unsqueeze(0), y_new,
                                [buf.Z[1 + i].unsqueeze(0) for i in range(solver.stages)])
                    if bool(event.on_crossing(solver, cross, *step, g, g1).any()):
                        t_end = t_next                      # a terminal event: stop here
                g = g1
            t = t_next
            if use_step:
                y, k_first = y1, f1
            else:
                buf.accept(y1, f1)
        else:
            factor = min(factor, 1.0)
        h_new = max(hh * factor, h) if accept and clipped else hh * factor     # keep the pre-clip proposal
        h = h_new if ctrl.dtmax is None else min(h_new, ctrl.dtmax)
        if t < t_end and not h > ctrl.dtmin * max(abs(t), 1.0):   # also a NaN step
            raise RuntimeError(
                f"step size underflow: h = {h:.3g} at t = {f.direction * t:.6g} (trajectory 0); the "
                f"problem may be stiff or the vector field non-finite there")
    if event is not None:
        event.finish(solver, ts[:, -1])
        if idx < T:                                 # stopped early: the later saves do not exist
            outs.append(torch.full((T - idx, y0.shape[1]), math.nan, dtype=dt_, device=dev))
    f.stats.nfe += steps * (solver.stages - 1) + (0 if solver.fsal else n_acc)
    f.stats.n_steps += steps
    f.stats.count_jacobians(solver, steps)
    f.stats.n_accepted = torch.full((1,), n_acc, dtype=torch.long, device=dev)
    ys = torch.cat(outs, 0)                     # (T, N): one row per save time
    return ys.unsqueeze(1), torch.full((1,), h, dtype=dt_, device=dev)
