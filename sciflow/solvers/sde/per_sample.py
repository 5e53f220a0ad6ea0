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

The same time change gives adaptive solvers per-sample step sizes (:mod:`.adaptive`): a step of
size ``h_b`` for sample ``b`` is one unit step of the time-changed SDE with ``c_b = h_b``. For
that, :class:`PerSampleBrownianTree` is a virtual Brownian tree that every sample can query at its
own time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import BrownianPath, _as_float_grid, grid_increments
from sciflow.solvers.sde.term import SDETerm

__all__ = ["check_time_grid", "integrate_per_sample", "PerSampleBrownianTree"]

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2^32`` for ``0 <= x < 2^32`` in int64 without signed overflow (split ``c``)."""
    return ((((x * (c >> 16)) & 0xFFFF) << 16) + x * (c & 0xFFFF)) & _M32


def _hash32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer mixer ("lowbias32", Wellons 2018) on int64 tensors in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _normal_pair(key: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Two independent standard normals per 32-bit key (Box–Muller on two hashed uniforms)."""
    u1 = (_hash32(key ^ 0x68E31DA4).to(torch.float64) + 0.5) * 2.0 ** -32     # (0, 1)
    u2 = _hash32(key ^ 0xB5297A4D).to(torch.float64) * 2.0 ** -32              # [0, 1)
    r = torch.sqrt(-2.0 * torch.log(u1))
    ang = (2.0 * math.pi) * u2
    return (r * torch.cos(ang)).to(dtype), (r * torch.sin(ang)).to(dtype)


class PerSampleBrownianTree(BrownianPath):
    """A virtual Brownian tree that each sample queries at its own time: ``W_b(t_b)``.

    Same construction as :class:`~sciflow.solvers.sde.brownian.VirtualBrownianTree` (a binary
    tree of Brownian bridges carrying the space-time Lévy area ``H``; root ``W(t1) ~ N(0, t1 -
    t0)``, ``H ~ N(0, (t1 - t0)/12)``; each node's halves drawn from the exact conditional law;
    below ``tol`` the conditional mean given ``(W, H)`` of the leaf), but the normal draws are
    **per element**: the draw of element ``e`` at node ``(level, index)`` is a pure function of
    ``(seed, e, level, index)`` (a counter-based hash, Salmon et al. 2011 "Parallel random numbers:
    as easy as 1, 2, 3", with Box–Muller), so every element descends its own path of the tree in
    one batched pass, and each sample ``b`` of ``shape = (*batch, *noise)`` can be evaluated at
    its own time ``t_b`` with O(depth) batched tensor operations — what per-sample adaptive steps
    need (one query per attempted step for the whole batch). Elements are independent Brownian
    motions; ``W`` is a deterministic function of ``(seed, t)`` (reproducible, any query order).

    It is a different path from ``VirtualBrownianTree(seed)`` (different random numbers, same
    law). Uniforms have 32-bit resolution, so normals are cut at about 6.7σ (probability 3e-11).

    Args:
        t0, t1: the interval.
        shape: ``(*batch, *noise)``, the increments' shape.
        batch_ndim: leading axes of ``shape`` that carry their own clock (default 1).
        seed: integer key.
        tol: bisection depth ``L = ceil(log2((t1 - t0) / tol))`` (default ``(t1 - t0) 2^-20``,
            at most ``2^-26``).
    """

    has_levy_area = True

    def __init__(self, t0: float, t1: float, shape, *, seed: int, batch_ndim: int = 1,
                 tol: float | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"PerSampleBrownianTree needs finite t0 < t1, got t0={t0}, t1={t1}")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.shape = torch.Size(shape)
        if not 1 <= batch_ndim <= len(self.shape):
            raise ValueError(f"batch_ndim = {batch_ndim} is out of range for shape {tuple(self.shape)}")
        self.t0, self.t1, self.seed, self.batch_ndim = t0, t1, seed, batch_ndim
        self.batch_shape = self.shape[:batch_ndim]
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        span = t1 - t0
        tol = span * 2.0 ** -20 if tol is None else float(tol)
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        self.tol = tol
        self.depth = int(min(26, max(1, math.ceil(math.log2(span / tol)))))
        n = self.shape.numel()
        mask = _M32
        e = torch.arange(n, dtype=torch.int64, device=self.device)
        self._ekey = _hash32(_hash32(e ^ (seed & mask)) ^ ((seed >> 32) & mask))
        z0, z1 = _normal_pair(_hash32(self._ekey), self.dtype)       # the root: key (level 0, index 0)
        self._w1 = z0 * math.sqrt(span)
        self._h1 = z1 * math.sqrt(span / 12)
        L = self.depth
        self._shifts = torch.arange(L, 0, -1, dtype=torch.int64, device=self.device).unsqueeze(1)  # L … 1
        self._levels = torch.arange(1, L + 1, dtype=torch.int64, device=self.device).unsqueeze(1) << 26
        half = span * 2.0 ** -torch.arange(1, L + 1, dtype=torch.float64)      # child length per level
        self._sig_d = (half / 2).sqrt().to(self.dtype).to(self.device).unsqueeze(1)
        self._sig_h = (half / 6).sqrt().to(self.dtype).to(self.device).unsqueeze(1)
        self._half = half.tolist()

    def evaluate_at(self, t: Tensor, levy_area: bool = True, check: bool = True) -> tuple[Tensor, Tensor | None]:
        """``W_b(t_b)`` and (``levy_area``) ``K_b(t_b) = ∫_{t0}^{t_b} W_b du`` for per-sample
        times ``t: (*batch,)`` (float64 recommended) -> tensors of ``shape`` (``K`` or ``None``).
        ``check=False`` skips the range check (a host sync) for callers that guarantee it.

        The leaf index of each time fixes its whole root-to-leaf path, so the draws of all levels
        come from one batched hash; only the bridge recursion runs level by level."""
        t = torch.as_tensor(t, device=self.device)
        if t.shape != self.batch_shape:
            t = t.expand(self.batch_shape)
        L = self.depth
        tt = t.to(torch.float64).reshape(self.batch_shape + (1,) * (len(self.shape) - self.batch_ndim))
        tt = tt.expand(self.shape).reshape(-1)
        eps = 1e-12 * max(1.0, abs(self.t0), abs(self.t1))
        if check and bool(((tt < self.t0 - eps) | (tt > self.t1 + eps)).any()):
            raise ValueError(f"PerSampleBrownianTree covers [{self.t0}, {self.t1}]; queried "
                             f"[{tt.min().item()}, {tt.max().item()}]")
        leaf = (self.t1 - self.t0) * 2.0 ** -L
        index = torch.floor((tt - self.t0) / leaf).clamp(0, 2 ** L - 1).to(torch.int64)
        parents = index >> self._shifts                  # (L, n): the node split at each level
        z0, z1 = _normal_pair(_hash32(self._ekey ^ _hash32(parents ^ self._levels)), self.dtype)
        go_right = ((index >> (self._shifts - 1)) & 1).to(self.dtype)   # (L, n): child taken
        d_noise = self._sig_d * z0                       # √(h'/2) Z_1
        diff = self._sig_h * z1                          # H_1 - H_2 = √(h'/6) Z_2
        sdiff = (2 * go_right - 1) * diff
        wab, hab = self._w1, self._h1
        wa = torch.zeros_like(wab)
        ka = torch.zeros_like(wab) if levy_area else None
        for lvl in range(L):
            r = go_right[lvl]
            d = torch.add(d_noise[lvl], hab, alpha=3.0)   # D = W_1 - W_2 = 3 H + √(h'/2) Z_1
            sum_h = torch.add(hab * 2.0, d, alpha=-0.5)   # H_1 + H_2
            w_left = 0.5 * (wab + d)
            if levy_area:
                h_left = 0.5 * (sum_h + diff[lvl])
                ka = ka + r * (self._half[lvl] * (wa + 0.5 * w_left + h_left))
            wa = wa + r * w_left
            wab = wab - r * d - 0.5 * (wab - d)            # left: (W + D)/2, right: (W - D)/2
            hab = 0.5 * (sum_h - sdiff[lvl])               # left: (ΣH + ΔH)/2, right: (ΣH - ΔH)/2
        s = ((tt - self.t0 - index.to(torch.float64) * leaf) / leaf).clamp(0.0, 1.0).to(self.dtype)
        w = wa + s * wab + (6 * s * (1 - s)) * hab
        k = None
        if levy_area:
            k = ka + leaf * (s * wa + (0.5 * s * s) * wab + (6 * (0.5 * s * s - s * s * s / 3)) * hab)
            k = k.reshape(self.shape)
        return w.reshape(self.shape), k

    def increments(self, grid, levy_area: bool = False, time_tol: float | None = None):
        """Increments over a grid shared by all samples (the :class:`BrownianPath` interface):
        ``(len(grid) - 1, *shape)``, and ``I_(1,0)`` with ``levy_area=True``."""
        grid = _as_float_grid(grid)
        self._check_range(grid)
        ws, ks = zip(*(self.evaluate_at(torch.tensor(g, dtype=torch.float64), levy_area) for g in grid))
        w = torch.stack(ws)
        dw = w[1:] - w[:-1]
        if not levy_area:
            return dw
        k = torch.stack(ks)
        h = torch.tensor([b - a for a, b in zip(grid[:-1], grid[1:])], dtype=self.dtype, device=self.device)
        return dw, (k[1:] - k[:-1]) - w[:-1] * h.reshape((-1,) + (1,) * len(self.shape))

    def __repr__(self) -> str:
        return (f"PerSampleBrownianTree(t0={self.t0}, t1={self.t1}, shape={tuple(self.shape)}, "
                f"batch_ndim={self.batch_ndim}, seed={self.seed}, depth={self.depth})")



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
    dws, i10s = grid_increments(brownian, grid, term.noise, y0, levy_area=solver.needs_levy_area,
                                generator=generator)
    i10_steps = i10s.to(y0.dtype).unbind(0) if i10s is not None else [None] * (len(grid) - 1)
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
