"""Fixed-step SDE solves where every sample has its own save times ``t: (*batch, time)``.

All samples take the same number of steps per save interval (a shared, normalised step count),
so the batch is stepped together with no masking. Sample ``b``'s interval ``[t_bk, t_b,k+1]`` is
mapped to the unit interval ``s ∈ [k, k + 1]`` of a common clock by the piecewise-linear time
change ``t = τ_b(s) = t_bk + c_bk (s - k)``, ``c_bk = t_b,k+1 - t_bk``. For a deterministic,
increasing time change (Øksendal 2003, *Stochastic Differential Equations*, §8.5)

.. math::
    dy = f(τ(s), y)\\, c\\, ds + g(τ(s), y)\\, \\sqrt{c}\\; d\\tilde W_s,
    \\qquad \\tilde W_s \\text{ a standard Brownian motion in } s,

in both the Itô and the Stratonovich sense (``c`` is constant on each step). Every scheme in
:mod:`sciflow.solvers.sde` only ever forms ``f h``, ``g √h``, ``g ΔW``, ``ΔW² - h`` and
``I_(1,0)/h`` per step, and each of these is invariant under the map ``h = c h_s``,
``ΔW = √c ΔW̃``, ``I_(1,0) = c^{3/2} Ĩ_(1,0)``: solving the time-changed SDE on the common
``s``-grid performs, sample by sample, *exactly* the steps of solving that sample alone on its
own grid (``n_k`` equal steps per interval) with the increments ``√c ΔW̃`` — up to rounding.

Brownian motion is therefore given on the normalised clock ``s ∈ [0, time - 1]``
(``BrownianIncrements`` on the ``s``-grid by default, or any :class:`BrownianPath` covering it).
Solvers that carry state between steps (``ReversibleHeun``) are refused: their carried
``f``, ``g`` values would be scaled by the previous interval's ``c``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import BrownianIncrements, BrownianPath, check_brownian
from sciflow.solvers.sde.term import SDETerm

__all__ = ["check_time_grid", "integrate_per_sample"]


def check_time_grid(t: Tensor, y0: Tensor) -> None:
    """``t: (*batch, time)`` with ``*batch`` leading ``y0``'s shape, finite, strictly increasing."""
    nb = t.ndim - 1
    if t.shape[-1] < 2:
        raise ValueError(f"per-sample time grid t needs at least two times, got shape {tuple(t.shape)}")
    if tuple(y0.shape[:nb]) != tuple(t.shape[:-1]):
        raise ValueError(
            f"per-sample time grid t of shape {tuple(t.shape)} needs y0 of shape (*{tuple(t.shape[:-1])}, *state); "
            f"got y0 of shape {tuple(y0.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"t must be floating point, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("per-sample time grid t contains NaN or inf")
    dt = t[..., 1:] - t[..., :-1]
    if not bool((dt > 0).all()):
        bad = (dt <= 0).nonzero()[0].tolist()
        raise ValueError(
            f"per-sample time grid t must be strictly increasing along its last axis; sample "
            f"{tuple(bad[:-1])} has t[{bad[-1]}] = {t[tuple(bad)].item()!r} followed by "
            f"{t[tuple(bad[:-1]) + (bad[-1] + 1,)].item()!r}")


class _TimeChangedTerm(SDETerm):
    """``f(τ(s), y) c`` and ``g(τ(s), y) √c`` on the current save interval (set by ``enter``)."""

    def __init__(self, term: SDETerm, batch_shape: tuple[int, ...], y_ndim: int) -> None:
        super().__init__(term.drift, term.diffusion, term.noise)
        self.batch_shape = batch_shape
        self.y_ndim = y_ndim

    def enter(self, k: int, t_start: Tensor, c: Tensor) -> None:
        nb = len(self.batch_shape)
        shape = self.batch_shape + (1,) * (self.y_ndim - nb)
        self.k = k
        self.t_start = t_start.reshape(shape)
        self.c = c.reshape(shape)
        self.sqrt_c = c.sqrt().reshape(shape)

    def tau(self, s: Tensor) -> Tensor:
        return self.t_start + self.c * (s - self.k)

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        return self.drift(self.tau(s), y) * self.c

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        g = self.diffusion(self.tau(s), y)
        extra = g.ndim - self.sqrt_c.ndim
        return g * (self.sqrt_c.reshape(self.sqrt_c.shape + (1,) * extra) if extra > 0 else self.sqrt_c)


def integrate_per_sample(term: SDETerm, solver: SDESolver, y0: Tensor, t: Tensor, dt: float | None,
                         brownian: BrownianPath | None, generator: torch.Generator | None) -> tuple[Tensor, int]:
    """Fixed steps on per-sample grids ``t: (*batch, time)``; returns ``(time, *batch, *state)``
    and the number of steps taken.

    Interval ``k`` is cut into ``n_k = ceil(max_b (t_b,k+1 - t_bk) / dt)`` steps for every sample
    (``dt=None``: one step), so no sample's step exceeds ``dt``. The vector fields receive ``t``
    of shape ``(*batch, 1, ..., 1)`` (``y0.ndim`` axes), each sample its own time.
    """
    if type(solver).init is not SDESolver.init:
        raise ValueError(
            f"{type(solver).__name__} carries state between steps and does not support per-sample time "
            "grids; use EulerMaruyama, Milstein, StratonovichHeun, SRI or SRA1")
    check_time_grid(t, y0)
    t = t.to(dtype=y0.dtype, device=y0.device)
    T = t.shape[-1]
    batch_shape = tuple(t.shape[:-1])
    spans = t[..., 1:] - t[..., :-1]  # (*batch, T - 1)
    if dt is None:
        n_sub = [1] * (T - 1)
    else:
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
        # one host sync at set-up: the shared number of steps of each interval
        n_sub = torch.ceil(spans.reshape(-1, T - 1).amax(0) / dt - 1e-9).clamp(min=1).long().tolist()
    grid = [0.0]
    for k, n in enumerate(n_sub):
        grid.extend(k + j / n for j in range(1, n))
        grid.append(float(k + 1))
    inc_shape = term.noise.increment_shape(y0.shape)
    if brownian is None:
        brownian = BrownianIncrements(grid, inc_shape, generator=generator, dtype=y0.dtype, device=y0.device,
                                      levy_area=solver.needs_levy_area)
    else:
        check_brownian(brownian, inc_shape, term.noise, y0.shape)
    if solver.needs_levy_area:
        dws, i10s = brownian.increments(grid, levy_area=True)
        i10_steps = i10s.to(y0.dtype).unbind(0)
    else:
        dws = brownian.increments(grid)
        i10_steps = [None] * (len(grid) - 1)
    dw_steps = dws.to(y0.dtype).unbind(0)
    s_steps = torch.tensor(grid, dtype=y0.dtype, device=y0.device).unbind(0)

    tc = _TimeChangedTerm(term, batch_shape, y0.ndim)
    tc.enter(0, t[..., 0], spans[..., 0])
    with torch.no_grad():
        term.noise.check(tc.g(s_steps[0], y0), y0)
    y = y0
    out = [y0]
    i = 0
    for k, n in enumerate(n_sub):
        tc.enter(k, t[..., k], spans[..., k])
        h = 1.0 / n
        for _ in range(n):
            y, _ = solver.step(tc, s_steps[i], h, y, dw_steps[i], i10_steps[i], None)
            i += 1
        out.append(y)
    ys = torch.stack(out)
    finite = torch.isfinite(ys.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise FloatingPointError(
            f"SDE state became non-finite (NaN/inf) by save index {first} of the per-sample time grid; "
            "reduce dt or check the drift/diffusion")
    return ys, i
