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
``O(h^{1/2 + 1/2}) = O(h)``. The RMS runs over the whole batch: all trajectories share one clock,
because they share one Brownian tree whose queries are scalar time intervals (per-trajectory
clocks would need one tree query per trajectory per step). Each attempted step does one host
sync (the accept/reject decision, which sets the next Brownian query's Python-float times).
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
from sciflow.solvers.sde.term import SDETerm

__all__ = ["check_adaptive", "embedded_step", "integrate_adaptive_sde"]

#: exponent of the local error estimate in ``h`` (Euler lower solution, see the module docstring)
_ERROR_EXPONENT = 1.0


def check_adaptive(solver: SDESolver, term: SDETerm, brownian: BrownianPath | None) -> None:
    """Refuse combinations that cannot be stepped adaptively, naming the offending objects."""
    if brownian is not None and not isinstance(brownian, VirtualBrownianTree):
        raise ValueError(
            f"adaptive SDE stepping (controller=PIController(...)) needs a VirtualBrownianTree, got "
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
    ``n_rejected`` and ``step_sizes`` (accepted ``h``, Python floats).
    """
    k = _ERROR_EXPONENT
    beta1 = (ctrl.pcoeff + ctrl.icoeff) / k
    beta2 = ctrl.pcoeff / k
    span = save[-1] - save[0]
    snap = 1e-10 * max(1.0, abs(save[0]), abs(save[-1]))  # avoid sliver steps just before a save time
    needs_i10 = solver.needs_levy_area
    t = save[0]
    y = y0
    h = min(float(dt0), span)
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
    if stats is not None:
        stats.update(n_accepted=n_acc, n_rejected=n_rej, step_sizes=hs)
    return torch.stack(out)
