r"""Events under a memory-saving adjoint: locate without a graph, replay with
:class:`~.adjoint.CheckpointAdjoint` (or, with one shared clock, :class:`~.adjoint.BacksolveAdjoint`),
differentiate the event times by the implicit function theorem.

A solve with an event keeps, under :class:`~.adjoint.DirectAdjoint`, the graph of every step
(memory linear in the number of steps). Here instead

1. the events are located by a solve without autograd (the same as the direct solve's forward);
2. the solve is replayed with the adjoint on the save grid merged with every located event time
   :math:`\hat t` — the replay's state at :math:`\hat t`, :math:`y(\hat t;\theta)`, is
   differentiable, and only the states at grid points are kept (checkpoints: one interval's graph
   at a time in the backward pass; backsolve: none, the adjoint system solved backwards);
3. each event time gets its gradient from one Newton step with the root held fixed, the
   implicit-function-theorem gradient of an event time (Chen, Amos & Nickel, ICLR 2021, "Learning
   neural event functions for ordinary differential equations"):

   .. math::
       t^* = \hat t - \frac{g(\hat t, y(\hat t)) - \mathrm{sg}[g]}{\mathrm{sg}[\dot g]},\quad
       \dot g = \partial_t g + \partial_y g \cdot f(\hat t, y(\hat t)),\quad
       y^* = y(\hat t) + \mathrm{sg}[f(\hat t, y(\hat t))]\,(t^* - \mathrm{sg}[t^*]),

   whose values are :math:`\hat t` and :math:`y(\hat t)` and whose gradients are
   :math:`dt^*/d\theta = -(\partial_\theta g + \partial_y g\,\partial_\theta y)/\dot g` and
   :math:`dy^*/d\theta = \partial_\theta y + f\,dt^*/d\theta`.

Unlike the direct solve's gradient (exact for the computed root on the dense output), this one
uses ``f`` itself for :math:`\dot g` and the replay's steps, which differ from the locating
solve's where the event times were added to the grid: values and gradients agree with
``DirectAdjoint``'s to the solver tolerance (checked in ``tests/solvers/test_events_replay.py``).
The replay costs one more solve.

The merged grid must be strictly monotone with the same length for every trajectory, while
trajectories have different numbers of needed points (crossings that did not happen, saves after
a terminal stop, an event exactly on a save time are not needed): the unneeded points are spread
evenly inside each trajectory's widest needed interval, where they only add save points.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .event import EventResult, EventTracker, newton_root

__all__ = ["replay_events"]


def _merged_grid(s: Tensor, needed: Tensor) -> tuple[Tensor, Tensor]:
    """``s (B, M)`` candidate times (increasing frame), ``needed (B, M)`` which are needed.
    Returns the strictly increasing grid ``(B, M)`` and each candidate's position in it ``(B, M)``
    (meaningless where not needed)."""
    B, M = s.shape
    key = torch.where(needed, s, math.inf)
    order = key.argsort(dim=-1, stable=True)
    srt = key.gather(-1, order)
    fin = torch.isfinite(srt)
    new = fin.clone()
    new[:, 1:] &= srt[:, 1:] != srt[:, :-1]                 # the first of equal needed times
    rank = new.long().cumsum(-1) - 1                        # unique rank of each sorted candidate
    N = new.sum(-1, keepdim=True)                           # needed points per row (>= 2)
    # unique needed times first; the rest write inf to the last slot (padding unless all M are new)
    u = torch.full_like(s, math.inf).scatter(-1, torch.where(new, rank, M - 1), srt.where(new, math.inf))
    idx = torch.arange(M, device=s.device).expand(B, M)
    gaps = torch.where(idx[:, :-1] < N - 1, u[:, 1:] - u[:, :-1], -math.inf)
    j = gaps.argmax(-1, keepdim=True)                       # the widest needed interval [u_j, u_j+1]
    D = M - N                                               # unneeded points, spread inside it
    lo, hi = u.gather(-1, j), u.gather(-1, j + 1)
    inside = lo + (hi - lo) * (idx - j).to(s.dtype) / (D + 1).to(s.dtype)
    shifted = u.gather(-1, (idx - D).clamp_min(0))
    grid = torch.where(idx <= j, u, torch.where(idx <= j + D, inside, shifted))
    rank_c = torch.empty_like(rank).scatter(-1, order, rank)   # back to candidate order
    pos = torch.where(rank_c <= j, rank_c, rank_c + D)
    return grid, torch.where(needed, pos, 0)


def _newton_step(cond, vector_field, t: Tensor, t_f: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Step 3 of the module docstring at the located time ``t`` (user shapes: ``t`` as ``cond``
    takes it, ``t_f`` as the vector field does) and the replayed state ``y``: :math:`(t^*, y^*)`
    flat, ``(B,)`` and ``(B, S)``; :math:`\dot g` with ``f`` itself."""
    f = vector_field(t_f, y).detach()
    with torch.enable_grad():       # ġ = ∂_t g + ∂_y g · f, without a graph
        tt, yy = t.detach().requires_grad_(True), y.detach().requires_grad_(True)
        gt, gy = torch.autograd.grad(cond(tt, yy).sum(), (tt, yy), allow_unused=True)
    gdot = torch.zeros_like(t) if gt is None else gt
    if gy is not None:
        gdot = gdot + (gy * f).reshape(gdot.shape + (-1,)).sum(-1)
    t_star = newton_root(t, cond(t, y), gdot).reshape(-1)
    B = t_star.shape[0]
    return t_star, y.reshape(B, -1) + f.reshape(B, -1) * (t_star - t_star.detach()).unsqueeze(-1)


def replay_events(term, solver, y0: Tensor, grid: Tensor, controller, adjoint, window, tracker: EventTracker,
                  ys_first: Tensor, stats_first: dict
                  ) -> tuple[Tensor, EventResult | tuple[EventResult, ...], dict, Tensor, Tensor]:
    """Steps 2–3 of the module docstring after ``tracker`` located the events (step 1, whose saves
    are ``ys_first``, ``nan`` after a terminal stop). ``grid``: the solve's save grid, user frame,
    ``(T,)`` or ``(*batch, T)``. Returns the saves ``(T, *batch, *state)``, the events, the work
    of both passes, and each trajectory's differentiable stop time and state (user shapes;
    ``nan`` where no terminal event stopped it)."""
    fld = tracker.field
    shared = fld.shared_clock
    batch, y_shape = tuple(fld.batch_shape), tuple(fld.y_shape)
    B = 1 if shared else math.prod(batch)
    T = grid.shape[-1]
    d = fld.direction
    results = (tracker.result,) if tracker.single else tracker.result
    t_stop = (d * tracker.stop_point()[0]).reshape(B, 1).to(y0.dtype)
    # candidates: the save grid, then each event's crossings (increasing frame)
    s_grid = (d * grid.to(y0.dtype)).reshape(-1, T).expand(B, T)
    t_ev = [r.t.reshape(B, -1) for r in results]
    occ = [r.occurred.reshape(B, -1) for r in results]
    s = torch.cat([s_grid] + [d * t.nan_to_num(0.0) for t in t_ev], -1)
    needed = torch.cat([s_grid <= t_stop] + occ, -1)
    merged, pos = _merged_grid(s, needed)
    if not bool((merged[:, 1:] > merged[:, :-1]).all()):
        raise ValueError("solve(..., event=..., adjoint=CheckpointAdjoint()) could not merge the event times "
                         "into the save grid (an event within rounding of a save time): use DirectAdjoint()")
    M = merged.shape[-1]
    ts_replay = d * (merged[0] if shared else merged.reshape(batch + (M,)))
    ys_all, work = adjoint.run(term, solver, y0, ts_replay, controller, batch_ndim=0 if shared else len(batch),
                               window=window)
    flat = ys_all.reshape(M, B, -1)
    picked = flat.gather(0, pos.t().unsqueeze(-1).expand(M, B, flat.shape[-1]))     # candidates, (M, B, S)

    def user_t(t: Tensor, vf: bool = False) -> Tensor:
        if shared:
            return t.reshape(())
        return t.reshape(batch + (1,) * (len(y_shape) - len(batch))) if vf else t.reshape(batch)

    out, at = [], T
    stop_t = torch.full((B,), math.nan, dtype=y0.dtype, device=y0.device)
    stop_y = torch.full_like(flat[0], math.nan)
    t_start = grid.reshape(-1, T)[:, 0].expand(B).to(y0.dtype)
    for e, (ev, r) in enumerate(zip(tracker.events, results)):
        K = t_ev[e].shape[-1]
        ts_e, ys_e = [], []
        for k in range(K):
            ok = occ[e][:, k]
            t_hat = torch.where(ok, t_ev[e][:, k], t_start)      # crossings that did not happen: masked
            t_star, y_star = _newton_step(ev.cond, term.vector_field, user_t(t_hat), user_t(t_hat, vf=True),
                                          picked[at + k].reshape(y_shape))
            ts_e.append(torch.where(ok, t_star, math.nan))
            ys_e.append(torch.where(ok.unsqueeze(-1), y_star, math.nan))
        at += K
        t_e, y_e = torch.stack(ts_e, -1), torch.stack(ys_e, 1)           # (B, K), (B, K, S)
        pick = tracker.stop_event.reshape(B) == e                     # the event that stopped the row
        stop_t = torch.where(pick, t_e[:, -1], stop_t)
        stop_y = torch.where(pick.unsqueeze(-1), y_e[:, -1], stop_y)
        state = y_shape[len(batch):]
        if K == 1:
            out.append(EventResult(t=t_e[:, 0].reshape(batch), y=y_e[:, 0].reshape(batch + state),
                                   occurred=r.occurred))
        else:
            out.append(EventResult(t=t_e.reshape(batch + (K,)), y=y_e.reshape(batch + (K,) + state),
                                   occurred=r.occurred))
    saves = picked[:T]                                                   # (T, B, S)
    saves = torch.where(ys_first.reshape(T, B, -1).isnan(), math.nan, saves)  # after a terminal stop
    stats = dict(stats_first)
    stats["nfe"] += work.nfe
    stats["n_steps"] += work.n_steps
    if work.njev is not None:
        stats["njev"] = stats.get("njev", 0) + work.njev
    stats.pop("n_accepted", None), stats.pop("n_rejected", None)
    result = out[0] if tracker.single else tuple(out)
    return (saves.reshape((T,) + y_shape), result, stats, stop_t.reshape(batch), stop_y.reshape(y_shape))
