"""Adaptive step-size control for SDEs on a virtual Brownian tree.

An accepted or rejected step ``[t, t + h]`` queries the increment ``W(t + h) - W(t)`` (and
``I_(1,0)`` where the solver needs it) from a :class:`VirtualBrownianTree`: ``W`` is a fixed
function of ``(seed, t)``, so a rejected step retries *the same Brownian path* on a shorter
interval. This is what keeps rejection unbiased (Gaines & Lyons 1997, "Variable step size control
in the numerical solution of stochastic differential equations", SIAM J. Appl. Math. 57(5));
re-drawing the noise after a rejection would select against large increments.

Error estimate: an embedded pair — the solver's step ``y'`` minus a lower-order (Euler) solution
``ŷ = y + f(t, y) h + g(t, y) ΔW`` built from the same evaluations where the method allows it
(Ilie, Jackson & Enright 2015, "Adaptive time-stepping for the strong numerical solution of
SDEs", Numer. Algorithms 68, §3; diffrax's Heun/Euler pair):

* :class:`StratonovichHeun`: ``e = y' - ỹ`` with ``ỹ`` Heun's own Euler predictor (no extra work);
* :class:`Milstein`: ``e = (g(ȳ) - g(y)) (ΔW² - h) / (2√h)``, the Milstein correction itself
  (Milstein minus Euler–Maruyama; no extra work). With additive noise it vanishes identically, so
  that combination is refused;
* any other one-step :class:`SDESolver` (``SRI``, ``SRA1``): ``e = y' - ŷ`` with one extra drift
  and diffusion evaluation at ``(t, y)``.

``EulerMaruyama`` has no embedded estimate and is refused, as are solvers that carry state
between steps (``ReversibleHeun``: a rejected step would need to roll that state back).

The step-size update is the ODE side's :class:`~sciflow.solvers.ode.controller.PIController`
(same fields, same formula) with ``r = ‖e / (atol + rtol max(|y|, |y'|))‖_RMS`` and exponent
``k = 1``: the lower (Euler) solution has strong order 1/2 and local mean-square error
``O(h^{1/2 + 1/2}) = O(h)``.

Two error-control modes:

* **batch norm** (``brownian`` a :class:`VirtualBrownianTree`): the RMS runs over the whole batch
  and all trajectories share one clock (the tree's queries are scalar time intervals). Each
  attempted step does one host sync (the accept/reject decision, which sets the next Brownian
  query's Python-float times).
* **per trajectory** (``brownian`` a :class:`~sciflow.solvers.sde.per_sample.PerSampleBrownianTree`
  with ``batch_ndim`` leading sample axes): each sample has its own clock ``t_b``, step ``h_b``,
  RMS error norm over its own state and PI-controller memory, and queries its own Brownian path
  at its own times (one batched tree query per attempt for all samples). Masked batched stepping,
  as for ODEs: every attempt steps all unfinished samples, accepts/rejects per sample with
  ``torch.where``; one host sync per attempt (the "all done / underflow" flags). Sample ``b``'s
  step of size ``h_b`` is taken as one unit step of the time-changed SDE with ``c_b = h_b``
  (:mod:`.per_sample`: ``f c``, ``g √c``, ``ΔW/√c``, ``I_(1,0)/c^{3/2}``), which is exactly the
  solver's step of size ``h_b`` on that sample, for every solver, with ``h`` a Python float.
  Each sample thus takes exactly the steps it would take solved alone on its own path. Finished
  samples take a zero step (``c = 0``, ``y1 = y``). Under autograd, an attempt whose rejected
  samples overflowed (a non-finite error estimate) is re-run with those samples idle too: the
  ``torch.where`` that drops them passes a zero gradient, and zero times the infinite derivatives
  of an overflowed stage is ``nan`` in every parameter's gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.solvers.ode.controller import PIController
from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import BrownianPath, VirtualBrownianTree
from sciflow.solvers.sde.euler_maruyama import EulerMaruyama
from sciflow.solvers.sde.heun import StratonovichHeun
from sciflow.solvers.sde.milstein import Milstein
from sciflow.solvers.sde.per_sample import PerSampleBrownianTree, _TimeChangedTerm
from sciflow.solvers.sde.term import SDETerm

__all__ = ["check_adaptive", "embedded_step", "integrate_adaptive_sde", "integrate_adaptive_sde_per_sample"]

#: exponent of the local error estimate in ``h`` (Euler lower solution, see the module docstring)
_ERROR_EXPONENT = 1.0


def check_adaptive(solver: SDESolver, term: SDETerm, brownian: BrownianPath | None) -> None:
    """Refuse combinations that cannot be stepped adaptively, naming the offending objects."""
    if brownian is not None and not isinstance(brownian, (VirtualBrownianTree, PerSampleBrownianTree)):
        raise ValueError(
            f"adaptive SDE stepping (controller=PIController(...)) needs a VirtualBrownianTree (one clock, "
            f"batch error norm) or a PerSampleBrownianTree (per-trajectory error control), got "
            f"{type(brownian).__name__}: pre-sampled BrownianIncrements only know their fixed grid, and a "
            "rejected step must re-query the same path on a shorter interval")
    if isinstance(solver, EulerMaruyama):
        raise ValueError(
            "EulerMaruyama has no embedded error estimate for adaptive stepping; use Milstein() (Itô) "
            "or StratonovichHeun() with controller=PIController(...)")
    if isinstance(solver, Milstein) and term.noise.additive:
        raise ValueError(
            "Milstein's embedded error estimate (its correction term) vanishes for additive noise; "
            "use StratonovichHeun() or SRA1() for adaptive stepping with Additive noise")
    if type(solver).init is not SDESolver.init:
        raise ValueError(
            f"{type(solver).__name__} carries state between steps and cannot be stepped adaptively "
            "(a rejected step would have to roll it back); use StratonovichHeun(), Milstein() or SRI()")


def embedded_step(solver: SDESolver, term: SDETerm, t: Tensor, h: float, y: Tensor, dw: Tensor,
                  i10: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step ``y -> y'`` and the embedded error estimate ``e`` (same shape as ``y``)."""
    if isinstance(solver, StratonovichHeun):
        f0 = term.f(t, y)
        g0dw = term.g_prod(term.g(t, y), dw)
        y_pred = y + f0 * h + g0dw
        t1 = t + h
        f1 = term.f(t1, y_pred)
        g1dw = term.g_prod(term.g(t1, y_pred), dw)
        y1 = y + (0.5 * h) * (f0 + f1) + 0.5 * (g0dw + g1dw)
        return y1, y1 - y_pred
    if isinstance(solver, Milstein):
        f = term.f(t, y)
        g = term.g(t, y)
        y_em = y + f * h + g * dw
        sqrt_h = math.sqrt(h)
        g_bar = term.g(t, y + f * h + g * sqrt_h)
        corr = (g_bar - g) * ((dw * dw - h) * (0.5 / sqrt_h))
        return y_em + corr, corr
    y1, _ = solver.step(term, t, h, y, dw, i10, None)
    y_low = y + term.f(t, y) * h + term.g_prod(term.g(t, y), dw)
    return y1, y1 - y_low


def integrate_adaptive_sde(term: SDETerm, solver: SDESolver, y0: Tensor, save: list[float],
                           ctrl: PIController, brownian: VirtualBrownianTree, dt0: float,
                           stats: dict | None = None) -> Tensor:
    """Adaptive steps from ``save[0]`` to ``save[-1]``, hitting every save time exactly.

    Returns ``(len(save), *y0.shape)``. ``stats`` (if given) receives ``n_accepted``,
    ``n_rejected`` and ``step_sizes`` (accepted ``h``, Python floats). A
    :class:`PerSampleBrownianTree` selects per-trajectory error control
    (:func:`integrate_adaptive_sde_per_sample`).
    """
    if isinstance(brownian, PerSampleBrownianTree):
        return integrate_adaptive_sde_per_sample(term, solver, y0, save, ctrl, brownian, dt0, stats)
    k = _ERROR_EXPONENT
    beta1 = (ctrl.pcoeff + ctrl.icoeff) / k
    beta2 = ctrl.pcoeff / k
    span = save[-1] - save[0]
    snap = 1e-10 * max(1.0, abs(save[0]), abs(save[-1]))  # avoid sliver steps just before a save time
    needs_i10 = solver.needs_levy_area
    t = save[0]
    y = y0
    h = min(float(dt0), span, math.inf if ctrl.dtmax is None else ctrl.dtmax)
    r_prev = 1.0
    out = [y0]
    nxt = 1
    n_acc = n_rej = 0
    hs: list[float] = []
    while nxt < len(save):
        if n_acc + n_rej >= ctrl.max_steps:
            raise RuntimeError(
                f"max_steps = {ctrl.max_steps} reached at t = {t:.6g} before t1 = {save[-1]:.6g}; raise "
                "PIController.max_steps or loosen rtol/atol")
        if h <= ctrl.dtmin * max(1.0, abs(t)):
            raise RuntimeError(
                f"SDE step size underflow: h = {h:.3g} at t = {t:.6g}; the diffusion may be very large "
                "or the state non-finite there (raise atol/rtol or lower PIController.dtmin)")
        t_save = save[nxt]
        clipped = t + h >= t_save - snap
        t_new = t_save if clipped else t + h
        hh = t_new - t
        if needs_i10:
            dw, i10 = brownian.increment(t, t_new, levy_area=True)
            i10 = i10.to(y0.dtype)
        else:
            dw, i10 = brownian.increment(t, t_new), None
        dw = dw.to(y0.dtype)
        t_tensor = torch.tensor(t, dtype=y0.dtype, device=y0.device)
        y1, err = embedded_step(solver, term, t_tensor, hh, y, dw, i10)
        with torch.no_grad():  # the step-size sequence is control flow: no gradient through it
            scale = ctrl.atol + ctrl.rtol * torch.maximum(y.abs(), y1.abs())
            r = float((err / scale).square().mean().sqrt())  # one host sync per attempted step
        if math.isnan(r):
            factor = ctrl.factor_min
        elif r == 0.0:
            factor = ctrl.factor_max
        else:
            factor = ctrl.safety * r ** (-beta1) * (r_prev ** beta2 if beta2 else 1.0)
            factor = min(ctrl.factor_max, max(ctrl.factor_min, factor))
        accept = r <= 1.0  # False for NaN
        if accept:
            t, y = t_new, y1
            n_acc += 1
            hs.append(hh)
            if beta2:
                r_prev = max(r, 1e-10)
            if clipped:
                out.append(y)
                nxt += 1
            # a step shortened to land on a save time, accepted with room to spare, says nothing
            # against the longer step proposed before the clip: keep that one
            h = max(hh * factor, h) if clipped and factor >= 1.0 else hh * factor
        else:
            n_rej += 1
            h = hh * min(factor, 1.0)
        if ctrl.dtmax is not None:
            h = min(h, ctrl.dtmax)
    if stats is not None:
        stats.update(n_accepted=n_acc, n_rejected=n_rej, step_sizes=hs)
    return torch.stack(out)


def _rms_per_sample(x: Tensor, nb: int) -> Tensor:
    return x.reshape(x.shape[:nb] + (-1,)).square().mean(-1).sqrt()


def integrate_adaptive_sde_per_sample(term: SDETerm, solver: SDESolver, y0: Tensor, save: list[float],
                                      ctrl: PIController, brownian: PerSampleBrownianTree, dt0: float,
                                      stats: dict | None = None) -> Tensor:
    """Per-trajectory adaptive steps: sample ``b`` of the ``brownian.batch_ndim`` leading axes of
    ``y0`` has its own clock, step size and error norm, and hits every save time exactly.

    Returns ``(len(save), *y0.shape)``. The fields get ``t`` of shape ``(*batch, 1, ..., 1)``
    (each sample its own time). ``stats`` (if given) receives ``n_steps`` (attempts: loop
    iterations), per-sample ``n_accepted``/``n_rejected`` ``(*batch,)`` tensors and
    ``step_sizes``: one list of accepted step sizes (Python floats) per sample, samples in
    row-major order of ``*batch``.
    """
    nb = brownian.batch_ndim
    batch_shape = tuple(brownian.batch_shape)
    if tuple(y0.shape[:nb]) != batch_shape:
        raise ValueError(f"PerSampleBrownianTree with batch shape {batch_shape} (batch_ndim = {nb}) needs y0 "
                         f"with those leading axes, got y0 of shape {tuple(y0.shape)}")
    if brownian.t0 > save[0] or brownian.t1 < save[-1]:
        raise ValueError(f"PerSampleBrownianTree covers [{brownian.t0}, {brownian.t1}], the solve needs "
                         f"[{save[0]}, {save[-1]}]")
    dev, dt_ = y0.device, y0.dtype
    f64 = torch.float64
    k = _ERROR_EXPONENT
    beta1 = (ctrl.pcoeff + ctrl.icoeff) / k
    beta2 = ctrl.pcoeff / k
    T = len(save)
    span = save[-1] - save[0]
    snap = 1e-10 * max(1.0, abs(save[0]), abs(save[-1]))
    needs_i10 = solver.needs_levy_area
    y_b = batch_shape + (1,) * (y0.ndim - nb)                  # per-sample scalars against y
    w_b = batch_shape + (1,) * (len(brownian.shape) - nb)      # ... against the increments
    save_t = torch.tensor(save, dtype=f64, device=dev)
    t_end = save[-1]
    t = torch.full(batch_shape, save[0], dtype=f64, device=dev)    # float64 clocks
    h = torch.full(batch_shape, min(float(dt0), span, math.inf if ctrl.dtmax is None else ctrl.dtmax),
                   dtype=f64, device=dev)
    r_prev = torch.ones(batch_shape, dtype=f64, device=dev)
    idx = torch.ones(batch_shape, dtype=torch.long, device=dev)   # next save index per sample
    done = torch.zeros(batch_shape, dtype=torch.bool, device=dev)
    n_acc = torch.zeros(batch_shape, dtype=torch.long, device=dev)
    n_att = torch.zeros(batch_shape, dtype=torch.long, device=dev)
    w_t, k_t = brownian.evaluate_at(t, levy_area=needs_i10)
    w_t = w_t.to(dt_)
    k_t = k_t.to(dt_) if needs_i10 else None
    tc = _TimeChangedTerm(term, batch_shape, y0.ndim)
    s0 = torch.zeros((), dtype=dt_, device=dev)
    y = y0
    out = torch.cat([y0.unsqueeze(0), y0.new_zeros((T,) + tuple(y0.shape))])   # (T + 1, *y0.shape)
    record = [] if stats is not None else None
    steps = 0
    track_graph = torch.is_grad_enabled()

    def attempt(idle: Tensor):
        """One step of every sample but the ``idle`` ones, which take a zero step (``y1 = y``)."""
        t_save = save_t[idx.clamp(max=T - 1)]
        clipped = t + h >= t_save - snap
        t_new = torch.where(idle, t, torch.where(clipped, t_save, t + h))
        hh = t_new - t
        w_new, k_new = brownian.evaluate_at(t_new, levy_area=needs_i10, check=False)  # in range: no sync
        c = hh.to(dt_)
        c_w = torch.where(idle, torch.ones_like(c), c).reshape(w_b)       # no 0/0 below
        sqrt_c, idle_w = c_w.sqrt(), idle.reshape(w_b)
        dw = torch.where(idle_w, 0.0, (w_new.to(dt_) - w_t) / sqrt_c)
        i10 = None
        if needs_i10:
            i10 = torch.where(idle_w, 0.0, (k_new.to(dt_) - k_t - w_t * c.reshape(w_b)) / (sqrt_c * c_w))
        tc.enter(0, t.to(dt_), c)
        y1, err = embedded_step(solver, tc, s0, 1.0, y, dw, i10)
        return y1, err, t_new, hh, clipped, w_new, k_new

    while True:
        if steps >= ctrl.max_steps:
            i = int(torch.nonzero(~done.reshape(-1))[0])
            raise RuntimeError(
                f"max_steps = {ctrl.max_steps} reached at t = {t.reshape(-1)[i].item():.6g} (sample {i}) before "
                f"t1 = {t_end:.6g}; raise PIController.max_steps or loosen rtol/atol")
        y1, err, t_new, hh, clipped, w_new, k_new = attempt(done)
        with torch.no_grad():  # the step-size sequence is control flow: no gradient through it
            scale = ctrl.atol + ctrl.rtol * torch.maximum(y.abs(), y1.abs())
            r = _rms_per_sample(err / scale, nb).to(f64)
        accept = (r <= 1.0) & ~done                               # False for NaN
        factor = ctrl.safety * r.pow(-beta1)
        if beta2:
            factor = factor * r_prev.pow(beta2)
            r_prev = torch.where(accept, r.clamp(min=1e-10), r_prev)
        factor = torch.nan_to_num(factor, nan=ctrl.factor_min, posinf=ctrl.factor_max)
        factor = factor.clamp(ctrl.factor_min, ctrl.factor_max)
        saving = accept & clipped
        # accepted: the PI step; a step clipped to a save time and accepted with room to spare keeps
        # the longer step proposed before the clip; rejected: never grow; finished: unchanged
        h_acc = torch.where(saving & (factor >= 1.0), torch.maximum(hh * factor, h), hh * factor)
        h_next = torch.where(done, h, torch.where(accept, h_acc, hh * factor.clamp(max=1.0)))
        if ctrl.dtmax is not None:
            h_next = h_next.clamp(max=ctrl.dtmax)
        t_next = torch.where(accept, t_new, t)
        done_next = (idx + saving) >= T
        underflow = ~done_next & (h_next <= ctrl.dtmin * t_next.abs().clamp(min=1.0))
        watched = [(~done & ~torch.isfinite(r)).any()] if track_graph else []    # an overflowed rejection
        all_done, any_underflow, *blowup = torch.stack([done_next.all(), underflow.any(),
                                                        *watched]).tolist()   # the one sync
        if any(blowup):
            # a rejected step overflowed: torch.where drops it, but 0 * inf = nan in the fields'
            # backward would reach every parameter; re-run with the rejected samples idle (y1 = y)
            y1 = attempt(done | ~accept)[0]
        h, t = h_next, t_next
        n_att = n_att + ~done
        acc_y = accept.reshape(y_b)
        y = torch.where(acc_y, y1, y)
        acc_w = accept.reshape(w_b)
        w_t = torch.where(acc_w, w_new.to(dt_), w_t)
        if needs_i10:
            k_t = torch.where(acc_w, k_new.to(dt_), k_t)
        # dense output: the save time each accepted, clipped step lands on (row T: discarded)
        where_to = torch.where(saving, idx, T).reshape((1,) + y_b).expand((1,) + tuple(y.shape))
        out = out.scatter(0, where_to, y.unsqueeze(0))
        if record is not None:
            record.append((accept, hh))
        idx = idx + saving
        n_acc = n_acc + accept
        done = done_next
        steps += 1
        if all_done:
            break
        if any_underflow:
            i = int(torch.nonzero(underflow.reshape(-1))[0])
            raise RuntimeError(
                f"SDE step size underflow: h = {h.reshape(-1)[i].item():.3g} at t = {t.reshape(-1)[i].item():.6g} "
                f"(sample {i}); the diffusion may be very large or the state non-finite there (raise "
                "atol/rtol or lower PIController.dtmin)")
    ys = out[:T]
    if stats is not None:
        acc_m = torch.stack([a for a, _ in record]).reshape(len(record), -1).cpu()
        hs = torch.stack([hv for _, hv in record]).reshape(len(record), -1).cpu()
        stats.update(n_steps=steps, n_accepted=n_acc, n_rejected=n_att - n_acc,
                     step_sizes=[hs[acc_m[:, b], b].tolist() for b in range(acc_m.shape[1])])
    return ys
