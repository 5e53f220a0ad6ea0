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
from sciflow.solvers.ode.event import Event, EventResult, condition
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
    standard error 0.0023 vs 0.0025 — most of the variance is the paths')."""

    probability: Tensor


def first_passage(drift: VectorField, diffusion: VectorField, y0: Tensor, t0: float, t1: float, event: Event, *,
                  dt: float, noise: NoiseType | None = None, solver: SDESolver | None = None,
                  brownian: BrownianPath | None = None, generator: torch.Generator | None = None,
                  bridge: bool = True) -> FirstPassage:
    """First time each sample's ``event.cond(t, y)`` crosses zero in ``[t0, t1]`` (module docstring).

    ``drift``, ``diffusion``, ``noise``, ``solver``, ``brownian``, ``generator``: as for
    :func:`~sciflow.solvers.sde.sdeint.sdeint` (fixed steps of at most ``dt``; the fields get a
    0-d ``t``). ``event``: a terminal :class:`~sciflow.solvers.ode.event.Event` with one crossing;
    ``cond(t, y)`` returns one value per sample, shape ``(*batch,)`` for ``y0: (*batch, *state)``.
    ``bridge``: add the Brownian-bridge crossings between step ends (uniform draws from
    ``generator``, after the default Brownian increments). Returns a :class:`FirstPassage`
    (``t``, ``y``, ``occurred`` and the conditional crossing ``probability``).
    """
    if not isinstance(event, Event):
        raise TypeError(f"event must be an Event(cond, direction), got {type(event).__name__}")
    if not event.terminal or event.max_events != 1:
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
                         None if i10s is None else i10s.to(y0.dtype), event, bridge, generator)


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
              event: Event, bridge: bool, generator: torch.Generator | None) -> FirstPassage:
    ts = torch.tensor(grid, dtype=y0.dtype, device=y0.device)
    g_prev = condition(event, ts[0], y0, None)
    batch = tuple(g_prev.shape)
    if tuple(y0.shape[:len(batch)]) != batch:
        raise ValueError(f"shape mismatch: Event.cond returned shape {batch}, which is not the leading (batch) "
                         f"shape of y0 {tuple(y0.shape)}")
    if not bool(torch.isfinite(g_prev).all()):
        raise FloatingPointError("Event.cond returned a non-finite value (nan/inf) at the initial state")
    term.noise.check(term.g(ts[0], y0), y0)
    inc_shape = term.noise.increment_shape(y0.shape)
    state_dims = (1,) * (y0.ndim - len(batch))
    d = event.direction
    alive = torch.ones(batch, dtype=torch.bool, device=y0.device)
    unseen = alive.clone()               # no crossing at a step end yet (whatever the bridge drew)
    survival = torch.ones(batch, dtype=y0.dtype, device=y0.device)
    tau = torch.full(batch, math.nan, dtype=y0.dtype, device=y0.device)
    y_tau = torch.full_like(y0, math.nan)
    y, state = y0, solver.init(term, ts[0], y0)
    for i in range(len(grid) - 1):
        t, h = ts[i], grid[i + 1] - grid[i]
        y_next, state = solver.step(term, t, h, y, dws[i], None if i10s is None else i10s[i], state)
        g_next = condition(event, ts[i + 1], y_next, batch, "the batch shape of y0")
        up, down = (g_prev < 0) & (g_next >= 0), (g_prev > 0) & (g_next <= 0)
        crossing = up if d > 0 else down if d < 0 else up | down
        seen = alive & crossing
        hit = seen
        if bridge:
            side = (g_prev < 0) if d > 0 else (g_prev > 0) if d < 0 else (g_prev != 0)
            quiet = side & ~crossing & (g_prev * g_next > 0)      # both ends on the starting side
            rate = _variance_rate(term, event, t, y, batch, inc_shape)
            p = torch.where(quiet & (rate > 0), torch.exp(-2 * g_prev * g_next / (h * rate.clamp_min(1e-300))),
                            torch.zeros_like(rate))
            u = torch.rand(batch, generator=generator, dtype=y0.dtype, device=y0.device)
            hit = seen | (alive & quiet & (u < p))
            survival = torch.where(unseen, survival * (1 - p), survival)
        survival = torch.where(unseen & crossing, torch.zeros_like(survival), survival)
        unseen = unseen & ~crossing
        frac = torch.where(seen, g_prev / torch.where(seen, g_prev - g_next, torch.ones_like(g_prev)),
                           torch.full_like(g_prev, 0.5))
        tau = torch.where(hit, t + frac * h, tau)
        y_tau = torch.where(hit.reshape(batch + state_dims), y + frac.reshape(batch + state_dims) * (y_next - y), y_tau)
        alive = alive & ~hit
        y, g_prev = y_next, g_next
    if not bool(torch.isfinite(y[alive]).all()):
        raise FloatingPointError("the SDE state became non-finite (NaN/inf) before the first passage; reduce dt or "
                                 "check the drift/diffusion")
    return FirstPassage(t=tau, y=y_tau, occurred=~torch.isnan(tau), probability=1 - survival)
