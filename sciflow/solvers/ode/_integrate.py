"""The batched adaptive stepping loop behind :func:`sciflow.solvers.ode.solve`.

Adaptive loop (masked batched stepping): every iteration attempts one step on every unfinished
trajectory, accepts or rejects it per trajectory with ``torch.where`` (no data-dependent Python
control flow), writes dense output for the save times that fall inside accepted steps, and does
a single host sync — the "all done / step underflow?" flags (compiled: once per chunk of
attempts, see :func:`._chunk.make_chunk`). Dense output looks at a window of the next ``window`` save
times per trajectory; a step is shortened only if it would contain more than ``window`` of them,
so saving never costs evaluations in the usual case.

This loop serves per-trajectory clocks and every ``compile=True`` solve; an eager solve with one
shared clock uses the host-controlled loop of :mod:`._shared_clock` (same steps).

The flat layout (``y: (B, S)``, clocks ``t: (B,)``, save times ``ts: (B, T)``) and
:class:`FlatField` are in :mod:`._flat_field`; the fixed-step loop is in :mod:`._fixed_step`.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from ._chunk import CHUNK, compiled_attempt, dense_writes, make_chunk
from ._flat_field import FlatField
from .controller import STRETCH, PIController
from .event import EventTracker
from .solver import ODESolver, scalar

__all__ = ["initial_step", "integrate_adaptive"]


def sync_is_free(device: torch.device) -> bool:
    """Whether reading a value back to the host costs no pipeline stall (CPU tensors)."""
    return device.type == "cpu"


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(-1).sqrt()


def initial_step(f: FlatField, solver: ODESolver, t0: Tensor, y0: Tensor, f0: Tensor,
                 ctrl: PIController, span: Tensor, norm_entries: int | None = None) -> Tensor:
    """Hairer, Nørsett & Wanner (1993), *Solving ODEs I*, §II.4 "Starting step size" — batched."""
    y0, f0 = y0.detach(), f0.detach()
    m = norm_entries   # the norms over the first entries only (a seminorm; None: all)
    scale = ctrl.atol + ctrl.rtol * y0.abs()
    d0, d1 = _rms((y0 / scale)[:, :m]), _rms((f0 / scale)[:, :m])
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = torch.minimum(h0, span)
    with torch.no_grad():
        f1 = f(t0 + h0, torch.addcmul(y0, h0.unsqueeze(-1), f0))
    d2 = _rms(((f1 - f0) / scale)[:, :m]) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / dmax) ** (1.0 / (solver.error_order + 1)))
    h = torch.minimum(torch.minimum(100 * h0, h1), span)
    return h if ctrl.dtmax is None else h.clamp(max=ctrl.dtmax)


def _make_attempt(f: Callable, solver: ODESolver, ctrl: PIController, T: int, Kw: int,
                  coef: Tensor | None, elementwise: bool = False, defer_dense: bool = False,
                  event: EventTracker | None = None, norm_entries: int | None = None, watch: bool = False):
    """One masked adaptive step for every trajectory, as a pure tensor function (compile-able).

    State in/out: ``t, y, h, k1, r_prev, idx, done`` plus the dense-output writes
    ``(where_to (B, Kw), vals (B, Kw, S))`` and ``flags = [all done, any step underflow]``.
    With an ``event`` (eager only) the attempt also takes and returns the condition's value ``g``
    at each trajectory's current time, ``flags`` gains ``[any crossing, any non-finite g]`` and
    the step's data ``(cross, t, h, y, y1, ks, g, g1)`` is returned last for
    :meth:`EventTracker.on_crossing` (the caller stops the rows it returns).
    ``defer_dense``: ``vals`` is instead what the interpolant needs, ``(theta (B, Kw), h (B,),
    y (B, S), y1 (B, S), f1 (B, S), k_1 … k_s)``, for the caller to evaluate only for the attempts
    (or rows) that write a save time (see :func:`._chunk.dense_writes`). ``watch`` (under
    autograd): ``flags`` ends with ``any non-finite error estimate`` (see :func:`_regraph`).
    """
    k = solver.error_order + 1
    beta1 = (ctrl.pcoeff + ctrl.icoeff) / k
    beta2 = ctrl.pcoeff / k
    clip_to_window = (T - 1) > Kw

    def attempt(t, y, h, k1, r_prev, idx, done, ts, t_end, g=None):
        t_lim = t_end
        if clip_to_window:
            t_lim = torch.minimum(t_end, ts.gather(1, (idx + (Kw - 1)).clamp(max=T - 1).unsqueeze(1)).squeeze(1))
        t_try = t + h
        # no sliver step before the limit; keep the pre-clip proposal (see controller.STRETCH)
        clipped = torch.add(t, h, alpha=STRETCH) >= t_lim
        t_next = torch.where(clipped, t_lim, t_try)
        hh = t_next - t
        y1, ks, err = solver.step(f, t, y, hh, k1)
        scale = torch.maximum(y.abs(), y1.abs()) * scalar(ctrl.rtol, y) + scalar(ctrl.atol, y)
        # the step-size sequence is control flow, not part of the model: no gradient through it
        r = _rms((err / scale)[:, :norm_entries]).detach()
        accept = (r <= 1.0) & ~done
        # a rejected step whose stages overflowed (see _regraph)
        watched = [(~done & ~torch.isfinite(r)).any()] if watch else []
        # PI step-size update (r = 0 -> factor_max; r = nan -> factor_min; a rejected step never
        # grows, an accepted one never shrinks: torchdiffeq's and diffrax's rule)
        factor = r.pow(-beta1) * scalar(ctrl.safety, r)
        if beta2:
            factor = factor * r_prev.pow(beta2)
            r_prev = torch.where(accept, r, r_prev)
        factor = torch.nan_to_num(factor, nan=ctrl.factor_min).clamp(ctrl.factor_min, ctrl.factor_max)
        factor = torch.where(accept, factor.clamp(min=1.0), factor.clamp(max=1.0))
        h = torch.where(done, h, torch.where(accept & clipped, torch.maximum(hh * factor, h), hh * factor))
        if ctrl.dtmax is not None:
            h = h.clamp(max=ctrl.dtmax)
        f1 = ks[-1] if solver.fsal else f(t_next, y1)
        # dense output for the save times inside accepted steps (at most Kw per step)
        cand = idx.unsqueeze(1) + torch.arange(Kw, device=idx.device)
        cand_c = cand.clamp(max=T - 1)
        s = ts.gather(1, cand_c)
        inside = (cand < T) & accept.unsqueeze(1) & (s <= t_next.unsqueeze(1))
        theta = (s - t.unsqueeze(1)) / torch.where(hh > 0, hh, torch.ones_like(hh)).unsqueeze(1)
        if defer_dense:
            vals = (theta, hh, y, y1, f1, *ks)
        else:
            vals = solver.interpolate(theta, hh, y, y1, ks, f1, coef=coef, elementwise=elementwise)
        where_to = torch.where(inside, cand_c, T)
        idx = idx + inside.sum(1)
        if event is not None:
            g1 = event.cond(t_next, y1)
            cross = accept.unsqueeze(-1) & event.crossed(g, g1)          # (B, E)
            step = (cross, t, hh, y, y1, ks, g, g1)
            nonfinite_g = accept & ~torch.isfinite(g1).all(-1)
            g = torch.where(accept.unsqueeze(-1), g1, g)
        # commit accepted steps
        acc_c = accept.unsqueeze(1)
        t = torch.where(accept, t_next, t)
        y = torch.where(acc_c, y1, y)
        k1 = torch.where(acc_c, f1, k1)
        done = t >= t_end
        # ~(h > ...) is also True for a NaN step (the error ratio was NaN before any step shrank it)
        underflow = ~done & ~(h > torch.clamp(t.abs(), min=1.0) * scalar(ctrl.dtmin, t))
        if event is not None:
            flags = torch.stack([done.all(), underflow.any(), cross.any(), nonfinite_g.any(), *watched])
            return t, y, h, k1, r_prev, idx, done, accept, where_to, vals, flags, g, step
        flags = torch.stack([done.all(), underflow.any(), *watched])
        return t, y, h, k1, r_prev, idx, done, accept, where_to, vals, flags

    return attempt


def _regraph(attempt: Callable, args: tuple, accept: Tensor) -> tuple:
    """Re-run an attempt with ``h = 0`` on its rejected rows, for the graph only (eager, under
    autograd, after an attempt whose rejected rows had a non-finite error estimate).

    A rejected step is dropped with ``torch.where``, whose backward hands its rows a zero
    gradient — but a step that overflowed has infinite stage values and derivatives, and
    ``0 · inf = nan`` in the vector field's backward reaches every parameter (reproduced with
    ``y' = -k y³`` from ``y = 10`` and a first step of 1: ``dy/dk`` was ``nan``). With ``h = 0`` the
    rejected rows' stages are evaluated at ``y`` itself and their committed ``t, y, k1`` keep
    the same values; the caller takes ``t, y, k1``, the dense output (and the event data) from
    this run and the step-size control (``h``, ``r_prev``, ``accept``, flags) from the first.
    """
    t, y, h, k1, r_prev, idx, done, *rest = args
    return attempt(t, y, torch.where(accept | done, h, torch.zeros_like(h)), k1, r_prev, idx, done, *rest)


def integrate_adaptive(f: FlatField, solver: ODESolver, y0: Tensor, ts: Tensor,
                       ctrl: PIController, window: int = 4, h0: Tensor | None = None,
                       compile: bool = False, event: EventTracker | None = None,
                       norm_entries: int | None = None) -> tuple[Tensor, Tensor]:
    """Adaptive steps with per-row error control; returns ``(ys (T, B, S), last step h (B,))``.

    ``compile=True`` compiles a chunk of ``CHUNK`` whole attempts (all stages, error norm,
    controller, dense output; :func:`._chunk.make_chunk`) as one ``torch.compile`` graph, with the host
    check "all done / underflow / max_steps" once per chunk — same accepted steps, counters and
    errors as the eager loop. The vector field must be traceable; compiled once per field object,
    solver, controller and shape. Dynamo's guards run on the first two calls of a solve and are
    skipped for the rest (``torch.compiler.set_stance(skip_guard_eval_unsafe=True)``): within one
    solve the chunk sees the same field, solver, controller and its own output tensors, so the
    field must not change its Python-level state (globals, attributes read while tracing) during
    the solve. Should a new specialisation be needed anyway, the guards are switched back on.

    ``event`` (eager only): hand the steps in which the event's condition crosses zero to the
    tracker (:mod:`.event`, which locates them in batches); a terminal event's last crossing makes
    its trajectory done (save times after it are left unwritten). ``norm_entries``: the error norm
    (and the initial step's) runs over the first ``norm_entries`` entries of each trajectory's
    state only, a seminorm (Kidger, Chen & Lyons 2021; :class:`~.adjoint.BacksolveAdjoint`).
    """
    B, T = ts.shape
    dev, dt_ = y0.device, y0.dtype
    t = ts[:, 0].clone(memory_format=torch.contiguous_format)  # not ts's stride: the compiled chunk
    # specialises on strides, and its own outputs are contiguous (else a second compilation)
    t_end = ts[:, -1].contiguous()
    if compile and B > 1 and y0.shape[1] > 1:
        # column-major (B, S) rows: the compiled kernels' innermost (vectorised) axis is then the
        # batch, not the (often length-3) state; the loop's tensors keep that layout
        y0 = y0.t().contiguous().t()
    y = y0
    k1 = f(t, y)
    if h0 is not None:
        h = h0.to(dt_).expand(B).clone()
    elif ctrl.dt0 is None:
        h = initial_step(f, solver, t, y, k1, ctrl, t_end - t, norm_entries)
    else:
        h = torch.full_like(t, ctrl.dt0 if ctrl.dtmax is None else min(ctrl.dt0, ctrl.dtmax))
    raw = f.raw
    r_prev = torch.ones_like(t)
    n_acc = torch.zeros(B, dtype=torch.long, device=dev)
    idx = torch.ones(B, dtype=torch.long, device=dev)      # next save index per trajectory
    Kw = max(1, min(window, T - 1))
    coef = solver.interp_coefficients(dt_, dev)
    n_chunk = CHUNK if compile else 1
    # compiled with one clock: evaluate the interpolant outside the graph, only for the attempts
    # that save (about one in 40 on Lorenz-63 with 11 saves); in the graph it was ~15 % of each
    # attempt's work. Not with per-trajectory clocks: their saves spread over most attempts
    defer_dense = compile and B == 1
    # eager on CPU (where a host sync costs nothing): evaluate the interpolant for the rows that
    # write a save time only (about 1 in 50 on Lorenz-63, 512 trajectories, 11 saves)
    row_dense = not compile and B > 1 and sync_is_free(dev)
    # under autograd, record (index, value) pairs and scatter once at the end (cheap backward);
    # otherwise write dense output in place
    track_graph = torch.is_grad_enabled()
    if compile:
        key = (f.f, f.y_shape, f.shared_clock, f.direction, type(solver), ctrl, Kw, B, T, dt_, dev, n_chunk,
               track_graph, y0.stride(), norm_entries)
        chunk = compiled_attempt(key, lambda: make_chunk(
            _make_attempt(raw, solver, ctrl, T, Kw, coef, elementwise=True, defer_dense=defer_dense,
                          norm_entries=norm_entries, watch=track_graph), n_chunk, T), dev)
        budget = torch.zeros((), dtype=torch.long, device=dev)
        guards = contextlib.ExitStack()
        calls = 0
    else:
        attempt = _make_attempt(raw, solver, ctrl, T, Kw, coef, event=event, norm_entries=norm_entries,
                                watch=track_graph, defer_dense=row_dense)
        if event is not None:
            g = event.start(t, y)
    nfe_per_attempt = solver.stages - 1 + (0 if solver.fsal else 1)
    S = y0.shape[1]
    if track_graph:
        rec_idx: list[Tensor] = []      # flat (row, save) indices into a (B (T + 1), S) buffer
        rec_val: list[Tensor] = []
    else:
        out = torch.zeros(B, T + 1, S, dtype=dt_, device=dev)
    every_row = torch.arange(B, device=dev)
    done = t >= t_end
    ts = ts.contiguous()
    steps = reruns = 0
    with guards if compile else contextlib.nullcontext():
        while True:
            if compile:
                budget.fill_(ctrl.max_steps - steps)
                args = (t, y, h, k1, r_prev, idx, done, ts, t_end, budget)
                try:
                    t, y, h, k1, r_prev, idx, done, accept, where_to, vals, info = chunk(*args)
                except RuntimeError as err:
                    if "skip_guard_eval_unsafe" not in str(err):
                        raise
                    # a new specialisation was needed after all: raised before running (nothing was
                    # written); check guards again for the rest of this solve
                    guards.close()
                    t, y, h, k1, r_prev, idx, done, accept, where_to, vals, info = chunk(*args)
                calls += 1
                if calls == 2:
                    # the first two calls of this solve ran Dynamo's guards (and compiled if needed;
                    # the first call's inputs come from eager code, the later ones are the graph's
                    # own outputs); the later calls pass the same field, solver, controller and
                    # the loop's own tensors, so re-checking the guards each time only costs time
                    guards.enter_context(torch.compiler.set_stance("default", skip_guard_eval_unsafe=True))
                all_done, any_underflow, made, n_writes, blowup = info.tolist()
                if blowup:
                    # a rejected step overflowed in this chunk: its graph would give nan gradients
                    # (see _regraph), and a compiled chunk cannot re-run one attempt. Discard the
                    # chunk and go on eagerly, where such an attempt is re-run for the graph
                    t, y, h, k1, r_prev, idx, done = args[:7]
                    compile, defer_dense = False, False
                    reruns += made
                    attempt = _make_attempt(raw, solver, ctrl, T, Kw, coef, norm_entries=norm_entries, watch=True)
                    continue
            elif event is None:
                args = (t, y, h, k1, r_prev, idx, done, ts, t_end)
                t, y, h, k1, r_prev, idx, done, accept, where_to, vals, flags = attempt(*args)
                all_done, any_underflow, *blowup = flags.tolist()
                made, n_writes = 1, 1
                if any(blowup):
                    redo = _regraph(attempt, args, accept)
                    t, y, k1, vals = redo[0], redo[1], redo[3], redo[9]
                    reruns += 1
            else:
                args = (t, y, h, k1, r_prev, idx, done, ts, t_end, g)
                t, y, h, k1, r_prev, idx, done, accept, where_to, vals, flags, g, step = attempt(*args)
                all_done, any_underflow, any_cross, bad_g, *blowup = flags.tolist()
                made, n_writes = 1, 1
                if any(blowup):
                    redo = _regraph(attempt, args, accept)
                    t, y, k1, vals, g, step = redo[0], redo[1], redo[3], redo[9], redo[11], redo[12]
                    reruns += 1
                if bad_g:
                    i = int(torch.nonzero(~torch.isfinite(g).all(-1))[0])
                    raise event.nonfinite(g, f"at t = {f.direction * t[i].item():.6g}")
                if any_cross:
                    halt = event.on_crossing(solver, *step)
                    t_end = torch.where(halt, t, t_end)     # a stopped trajectory stays done
                    done = done | halt
                    all_done = bool(done.all())
            # the writes: rows `sel`, their save indices where_to (T = no write) and values
            sel = every_row
            if row_dense:
                sel = (where_to < T).any(1).nonzero().squeeze(1)
                if sel.numel():
                    theta, hh, y_, y1, f1, *ks = vals
                    vals = solver.interpolate(theta[sel], hh[sel], y_[sel], y1[sel], [k[sel] for k in ks], f1[sel],
                                              coef=coef)
                    where_to = where_to[sel]
                else:
                    where_to = None
            elif defer_dense:
                if n_writes:
                    where_to, vals = dense_writes(solver, coef, where_to, vals, n_chunk, Kw, T)
                else:
                    where_to = None
            if where_to is None:
                pass
            elif track_graph:
                rec_idx.append(sel.unsqueeze(1) * (T + 1) + where_to)
                rec_val.append(vals)
            elif n_writes:  # index_put_ beats scatter_ here
                out.index_put_((sel.unsqueeze(1).expand_as(where_to), where_to), vals)
            n_acc = n_acc + accept
            steps += made
            if all_done:
                break
            if any_underflow:
                underflow = ~done & ~(h > ctrl.dtmin * torch.clamp(t.abs(), min=1.0))
                i = int(torch.nonzero(underflow)[0])
                raise RuntimeError(
                    f"step size underflow: h = {h[i].item():.3g} at t = {f.direction * t[i].item():.6g} "
                    f"(trajectory {i}); the problem may be stiff or the vector field non-finite there")
            if steps >= ctrl.max_steps:
                i = int(torch.nonzero(~done)[0])
                raise RuntimeError(
                    f"max_steps = {ctrl.max_steps} reached at t = {f.direction * t[i].item():.6g} "
                    f"(trajectory {i}) before t1 = {f.direction * t_end[i].item():.6g}; raise "
                    f"PIController.max_steps or loosen rtol/atol")
    if event is not None:
        event.finish(solver, ts[:, -1])
    f.stats.nfe += (steps + reruns) * nfe_per_attempt
    f.stats.n_steps += steps
    f.stats.count_jacobians(solver, steps)
    f.stats.n_accepted = n_acc
    if track_graph:
        index = torch.cat([i.reshape(-1) for i in rec_idx]) if rec_idx else torch.zeros(0, dtype=torch.long, device=dev)
        vals = torch.cat([v.reshape(-1, S) for v in rec_val]) if rec_val else torch.zeros(0, S, dtype=dt_, device=dev)
        buf = torch.zeros(B * (T + 1), S, dtype=dt_, device=dev).index_put((index,), vals).view(B, T + 1, S)
        ys = torch.cat([y0.unsqueeze(1), buf[:, 1:T]], 1)
    else:
        out[:, 0] = y0
        ys = out[:, :T]
    ys = ys.transpose(0, 1)
    return ys, h
