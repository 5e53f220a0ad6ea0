r"""First passage of an SDE through a level: when does ``cond(t, y)`` first cross zero?

``first_passage(drift, diffusion, y0, t0, t1, Event(cond, direction), dt=...)`` simulates
``dy = f dt + g dW`` with fixed steps and returns, per sample, the first time
:math:`\tau = \inf\{t : g(t, y_t) \text{ crosses } 0\}` before ``t1`` and the state there, as a
:class:`FirstPassage` (an :class:`~sciflow.solvers.ode.event.EventResult`: ``nan`` and
``occurred = False`` for samples that do not cross; plus each path's conditional crossing
probability) — exceedance probabilities :math:`P(\tau \le T)`, times to failure, exit times.

Discrete monitoring — checking the sign only at the step ends — misses every excursion that goes
out and back within a step, so :math:`P(\tau \le T)` is underestimated by :math:`O(\sqrt{h})`
(Gobet 2000, "Weak approximation of killed diffusion using Euler schemes"; Broadie, Glasserman &
Kou 1997). ``bridge=True`` (the default) corrects this with the Brownian-bridge crossing
probability: between two step ends on the same side, with the coefficients frozen at the step's
start and the level locally flat, the path crosses with probability

.. math:: p = \exp\Big(-\frac{2\, g_0\, g_1}{h\, \lVert G^\top \nabla_y g \rVert^2}\Big)

(the reflection principle for a Brownian bridge; Baldi 1995, Gobet 2000), and a uniform draw
decides. This restores weak order 1 for the exit probability (Gobet 2000) and is
exact for arithmetic Brownian motion with a linear condition (tested against the inverse Gaussian
law). Crossings seen at a step end get :math:`\tau` by linear interpolation of ``g`` inside the
step; crossings found by the bridge get the step's midpoint and the bridge mean there
(:math:`P(\tau \le t_k)` at the grid times is unaffected by where in the step :math:`\tau` is put).
``direction`` counts crossings as for ODE events (:class:`~sciflow.solvers.ode.event.Event`); the
bridge only adds crossings whose first crossing has that direction (a rising one starts below 0).

Several barriers — an exit from a corridor, the drift–diffusion model of decisions (which bound,
and when), a double-barrier option: ``event=[Event(lower), Event(upper)]``. The first crossing of
any of them ends the path; ``which`` says whose (its index, ``-1`` for none). With the bridge, the
step's crossing probability is :math:`1 - \prod_e (1 - p_e)` over the barriers' own bridge
probabilities (exact for one barrier; for two, the product neglects the probability that the
bridge crosses both inside one step, which is :math:`O(e^{-c/h})` for barriers a distance apart),
and the crossed barrier is drawn with probability :math:`\propto p_e` (from the same uniform
draw, so one draw per step and sample whatever the number of barriers). A crossing seen at a step
end counts first (the barrier whose interpolated crossing comes first), before any bridge
crossing inside that step. ``probabilities (*batch, E)`` splits ``probability`` by barrier in the
same Rao–Blackwell way (tested against the closed-form exit probabilities of drifted Brownian
motion from a corridor, the gambler's ruin of Feller 1968, §XIV.3).

The diffusion's action on the condition, :math:`G^\top \nabla_y g`, is computed by automatic
differentiation for every noise type (diagonal, scalar, general, additive): ``cond`` must be
differentiable in ``y``. No gradients flow out (a stopping time is not a differentiable function
of the parameters here); the simulation runs without autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sciflow.solvers._checks import check_term_kind
from sciflow.solvers.ode.event import Event, EventResult, as_events, condition
from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import BrownianPath, grid_increments
from sciflow.solvers.sde.euler_maruyama import EulerMaruyama
from sciflow.solvers.sde.noise import NoiseType
from sciflow.solvers.sde.sdeint import _check_y0, step_grid
from sciflow.solvers.sde.term import SDETerm, VectorField

__all__ = ["first_passage", "FirstPassage"]


@dataclass
class FirstPassage(EventResult):
    r""":class:`~sciflow.solvers.ode.event.EventResult` (``t``, ``y``, ``occurred``: the sampled
    first passage) plus ``probability (*batch,)``: the probability, given the simulated step ends,
    that the path crossed by ``t1`` — 1 once a step end has crossed, else ``1 − Π_k (1 − p_k)``
    over the bridge probabilities of the steps so far (0 or 1 without the bridge). Its mean
    estimates :math:`P(\tau \le t_1)` with less variance than the mean of ``occurred`` (the bridge
    draws integrated out: Rao–Blackwell; measured on drifted Brownian motion with four steps:
    standard error 0.0023 vs 0.0025 — most of the variance is the paths'). ``which (*batch,)``: the
    index of the crossed event (``0`` for a single event), ``-1`` where none was crossed;
    ``probabilities (*batch, E)``: ``probability`` split by event (the exit probability through
    each barrier), ``E = 1`` for a single event."""

    probability: Tensor
    which: Tensor | None = None
    probabilities: Tensor | None = None


def first_passage(drift: VectorField, diffusion: VectorField, y0: Tensor, t0: float, t1: float,
                  event: Event | list[Event] | tuple[Event, ...], *,
                  dt: float, noise: NoiseType | None = None, solver: SDESolver | None = None,
                  brownian: BrownianPath | None = None, generator: torch.Generator | None = None,
                  bridge: bool = True) -> FirstPassage:
    """First time each sample's ``event.cond(t, y)`` crosses zero in ``[t0, t1]`` (module docstring).

    ``drift``, ``diffusion``, ``noise``, ``solver``, ``brownian``, ``generator``: as for
    :func:`~sciflow.solvers.sde.sdeint.sdeint` (fixed steps of at most ``dt``; the fields get a
    0-d ``t``). ``event``: a terminal :class:`~sciflow.solvers.ode.event.Event` with one crossing,
    or a list of them (several barriers: the first crossing of any); ``cond(t, y)`` returns one
    value per sample, shape ``(*batch,)`` for ``y0: (*batch, *state)``.
    ``bridge``: add the Brownian-bridge crossings between step ends (uniform draws from
    ``generator``, after the default Brownian increments). Returns a :class:`FirstPassage`
    (``t``, ``y``, ``occurred``, the conditional crossing ``probability``, ``which`` event and
    the ``probabilities`` per event).
    """
    events, names = as_events(event)
    if not all(ev.terminal and ev.max_events == 1 for ev in events):
        raise ValueError("first_passage finds the first crossing only: pass Event(cond, direction) with "
                         "terminal=True and max_events=1")
    if dt is None:
        raise ValueError("dt must be a positive finite number (first_passage takes fixed steps), got None")
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        raise ValueError(f"first_passage needs finite t0 < t1, got t0 = {t0}, t1 = {t1}")
    solver = EulerMaruyama() if solver is None else solver
    term = SDETerm(drift, diffusion, noise)
    check_term_kind(term, solver)
    if not isinstance(solver, SDESolver):
        raise TypeError(f"first_passage needs an SDESolver (EulerMaruyama, Milstein, ...), got {solver!r}")
    solver.check_noise(term.noise)
    _check_y0(y0)
    grid, _ = step_grid([t0, t1], dt)
    dws, i10s = grid_increments(brownian, grid, term.noise, y0, levy_area=solver.needs_levy_area,
                                generator=generator)
    with torch.no_grad():
        return _simulate(term, solver, y0, grid, dws.to(y0.dtype),
                         None if i10s is None else i10s.to(y0.dtype), events, names, bridge, generator)


def _variance_rate(term: SDETerm, event: Event, t: Tensor, y: Tensor, batch: tuple[int, ...],
                   inc_shape: torch.Size) -> Tensor:
    """``‖Gᵀ ∇_y g‖²`` per sample at ``(t, y)``: the rate at which ``g`` accumulates variance."""
    with torch.enable_grad():
        yy = y.detach().requires_grad_(True)
        grad_y, = torch.autograd.grad(event.cond(t, yy).sum(), yy, allow_unused=True)
        if grad_y is None:
            return torch.zeros(batch, dtype=y.dtype, device=y.device)
        dw = torch.zeros(inc_shape, dtype=y.dtype, device=y.device, requires_grad=True)
        G = term.g(t, y).detach()
        proj, = torch.autograd.grad((grad_y.detach() * term.g_prod(G, dw)).sum(), dw, allow_unused=True)
    if proj is None:
        return torch.zeros(batch, dtype=y.dtype, device=y.device)
    return proj.reshape(tuple(batch) + (-1,)).square().sum(-1)


def _simulate(term: SDETerm, solver: SDESolver, y0: Tensor, grid: list[float], dws: Tensor, i10s: Tensor | None,
              events: tuple[Event, ...], names: list[str], bridge: bool,
              generator: torch.Generator | None) -> FirstPassage:
    ts = torch.tensor(grid, dtype=y0.dtype, device=y0.device)
    g0 = condition(events[0], ts[0], y0, None, name=names[0])
    batch = tuple(g0.shape)
    if tuple(y0.shape[:len(batch)]) != batch:
        raise ValueError(f"shape mismatch: {names[0]} returned shape {batch}, which is not the leading (batch) "
                         f"shape of y0 {tuple(y0.shape)}")
    what = "the batch shape of y0"

    def conds(t: Tensor, y: Tensor) -> Tensor:          # (*batch, E)
        return torch.stack([condition(ev, t, y, batch, what, name) for ev, name in zip(events, names)], -1)

    g_prev = torch.stack([g0] + [condition(ev, ts[0], y0, batch, what, name)
                                 for ev, name in zip(events[1:], names[1:])], -1)
    if not bool(torch.isfinite(g_prev).all()):
        e = int(torch.nonzero(~torch.isfinite(g_prev))[0, -1])
        raise FloatingPointError(f"{names[e]} returned a non-finite value (nan/inf) at the initial state")
    term.noise.check(term.g(ts[0], y0), y0)
    inc_shape = term.noise.increment_shape(y0.shape)
    state_dims = (1,) * (y0.ndim - len(batch))
    E, dev, dt_ = len(events), y0.device, y0.dtype
    dirs = [ev.direction for ev in events]

    def by_direction(up: Tensor, down: Tensor) -> Tensor:
        """Per event (column): ``up`` for rising events, ``down`` for falling ones, either for 0."""
        if len(set(dirs)) == 1:
            return _by_direction(dirs[0], up, down)
        return torch.stack([_by_direction(d, up[..., e], down[..., e]) for e, d in enumerate(dirs)], -1)

    alive = torch.ones(batch, dtype=torch.bool, device=dev)
    unseen = alive.clone()               # no crossing at a step end yet (whatever the bridge drew)
    survival = torch.ones(batch, dtype=dt_, device=dev)
    each = torch.zeros(batch + (E,), dtype=dt_, device=dev) if E > 1 else None   # P(through e so far | path)
    tau = torch.full(batch, math.nan, dtype=dt_, device=dev)
    which = torch.full(batch, -1, dtype=torch.long, device=dev)
    y_tau = torch.full_like(y0, math.nan)
    y, state = y0, solver.init(term, ts[0], y0)
    for i in range(len(grid) - 1):
        t, h = ts[i], grid[i + 1] - grid[i]
        y_next, state = solver.step(term, t, h, y, dws[i], None if i10s is None else i10s[i], state)
        g_next = conds(ts[i + 1], y_next)
        crossing = by_direction((g_prev < 0) & (g_next >= 0), (g_prev > 0) & (g_next <= 0))
        # the first barrier crossed at the step end (linear interpolation of each g inside the step)
        frac_e = g_prev / torch.where(crossing, g_prev - g_next, torch.ones_like(g_prev))
        if E == 1:      # (the common case without the reductions)
            frac, first, crossed = frac_e[..., 0], None, crossing[..., 0]
        else:
            frac, first = torch.where(crossing, frac_e, math.inf).min(-1)
            crossed = crossing.any(-1)
        seen = alive & crossed
        hit = seen
        if bridge:
            side = by_direction(g_prev < 0, g_prev > 0)
            quiet = side & ~crossing & (g_prev * g_next > 0)      # both ends on the starting side
            rate = torch.stack([_variance_rate(term, ev, t, y, batch, inc_shape) for ev in events], -1)
            p_e = torch.where(quiet & (rate > 0), torch.exp(-2 * g_prev * g_next / (h * rate.clamp_min(1e-300))),
                              torch.zeros_like(rate))
            p = p_e[..., 0] if E == 1 else 1 - (1 - p_e).prod(-1)
            u = torch.rand(batch, generator=generator, dtype=dt_, device=dev)
            drawn = alive & ~crossed & (u < p)
            hit = seen | drawn
        if E > 1:
            # which barrier, and P(through e in this step): the one crossed at the step end (1), else
            # p share_e with the bridge — its barrier drawn by u / p, uniform on [0, 1) given a crossing
            q = torch.nn.functional.one_hot(first, E).to(dt_)
            pick = first
            if bridge:
                share = p_e / p_e.sum(-1, keepdim=True).clamp_min(1e-300)
                v = (u / p.clamp_min(1e-300)).unsqueeze(-1)
                pick = torch.where(drawn, (share.cumsum(-1) <= v).sum(-1).clamp(max=E - 1), first)
                q = torch.where(crossed.unsqueeze(-1), q, p.unsqueeze(-1) * share)
            else:
                q = q * crossed.unsqueeze(-1)
            each = torch.where(unseen.unsqueeze(-1), each + survival.unsqueeze(-1) * q, each)
            which = torch.where(hit, pick, which)
        if bridge:
            survival = torch.where(unseen, survival * (1 - p), survival)
        survival = torch.where(unseen & crossed, torch.zeros_like(survival), survival)
        unseen = unseen & ~crossed
        frac = torch.where(seen, frac, torch.full_like(frac, 0.5))
        tau = torch.where(hit, t + frac * h, tau)
        y_tau = torch.where(hit.reshape(batch + state_dims), y + frac.reshape(batch + state_dims) * (y_next - y), y_tau)
        alive = alive & ~hit
        y, g_prev = y_next, g_next
    if not bool(torch.isfinite(y[alive]).all()):
        raise FloatingPointError("the SDE state became non-finite (NaN/inf) before the first passage; reduce dt or "
                                 "check the drift/diffusion")
    probability = 1 - survival
    if E == 1:
        which = torch.where(torch.isnan(tau), -1, 0)
    return FirstPassage(t=tau, y=y_tau, occurred=~torch.isnan(tau), probability=probability, which=which,
                        probabilities=probability.unsqueeze(-1) if E == 1 else each)


def _by_direction(d: int, up: Tensor, down: Tensor) -> Tensor:
    return up if d > 0 else down if d < 0 else up | down
