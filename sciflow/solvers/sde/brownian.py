"""Brownian motion as explicit, seeded objects.

Two implementations share one interface (:class:`BrownianPath`):

* :class:`BrownianIncrements` — increments pre-sampled on a fixed time grid (one batched
  ``randn`` call; the fastest choice for fixed-step solves). Optionally also the time integral
  ``I_(1,0) = ∫_s^t (W_u - W_s) du`` each step needs for order-1.5 additive-noise schemes (SRA1).
  Queries on any coarser sub-grid of the stored grid are exact (sums of the fine increments).
* :class:`VirtualBrownianTree` — O(1) memory, any interval, reproducible from an integer seed
  (Gaines & Lyons 1997, "Variable step size control in the numerical solution of SDEs";
  Li, Wong, Chen & Duvenaud 2020, "Scalable gradients for SDEs", §4). ``W`` on ``[t0, t1]`` is the
  limit of a binary tree of Brownian bridges: the root draws ``W(t1) ~ N(0, t1 - t0)``; the node
  on ``[a, b]`` draws its midpoint ``W(m) | W(a), W(b) ~ N((W(a) + W(b)) / 2, (b - a) / 4)``.
  Every node's normal draw comes from its own counter-based key ``splitmix64(seed, level,
  index)``, so ``W(t)`` is a deterministic function of ``(seed, t)``: nothing is stored, queries
  may come in any order, and the same seed reproduces the same path (what adjoint and adaptive
  solvers need). Each node also carries its space-time Lévy area, so ``I_(1,0)`` is available
  on the tree too (SRI, SRA1). Below ``tol`` the path is the conditional mean of the leaf.

Times are kept as Python floats (float64) whatever the tensor dtype: a float32 clock makes
``t + dt`` overshoot and forces needless refinement (torchsde issue #109).
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of SplitMix64 (Steele, Lea & Flood 2014): a bijective 64-bit mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_from(generator: torch.Generator | None, high: int) -> int:
    """An integer seed in ``[0, high)`` drawn from ``generator`` (the global one if ``None``), on the
    generator's own device: a CUDA generator cannot draw on the CPU. One host read per call."""
    device = None if generator is None else generator.device
    return int(torch.randint(0, high, (), generator=generator, device=device))


def _as_float_grid(grid: Sequence[float] | Tensor, what: str = "grid") -> list[float]:
    if isinstance(grid, Tensor):
        if grid.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {tuple(grid.shape)}")
        grid = grid.detach().to("cpu", torch.float64).tolist()
    g = [float(x) for x in grid]
    if len(g) < 2:
        raise ValueError(f"{what} needs at least two times, got {len(g)}")
    if any(not math.isfinite(x) for x in g):
        raise ValueError(f"{what} contains non-finite times")
    for a, b in zip(g[:-1], g[1:]):
        if not b > a:
            raise ValueError(f"{what} must be strictly increasing; got {a!r} followed by {b!r}")
    return g


class BrownianPath:
    """Interface of a Brownian motion ``W: [t0, t1] -> R^shape``.

    ``increment(s, t)`` is ``W(t) - W(s)``; ``increments(grid)`` the stacked increments over a
    grid, ``(len(grid) - 1, *shape)``; with ``levy_area=True`` both also return
    ``I_(1,0) = ∫_s^t (W_u - W_s) du`` (only where ``has_levy_area``).
    """

    t0: float
    t1: float
    shape: torch.Size
    dtype: torch.dtype
    device: torch.device
    has_levy_area: bool = False

    def increments(self, grid: Sequence[float] | Tensor, levy_area: bool = False, time_tol: float | None = None):
        raise NotImplementedError

    def increment(self, s: float, t: float, levy_area: bool = False, time_tol: float | None = None):
        out = self.increments([float(s), float(t)], levy_area=levy_area, time_tol=time_tol)
        if levy_area:
            return out[0][0], out[1][0]
        return out[0]

    def _check_range(self, grid: list[float]) -> None:
        span = self.t1 - self.t0
        eps = 1e-12 * max(1.0, abs(self.t0), abs(self.t1))
        if grid[0] < self.t0 - eps or grid[-1] > self.t1 + eps:
            raise ValueError(
                f"{type(self).__name__} covers [{self.t0}, {self.t1}] (length {span}); "
                f"queried [{grid[0]}, {grid[-1]}]"
            )


class BrownianIncrements(BrownianPath):
    """Brownian increments pre-sampled on a fixed grid ``t_0 < t_1 < ... < t_n``.

    ``dW_k = sqrt(h_k) ξ_k``; with ``levy_area=True`` also
    ``I_k = h_k / 2 (dW_k + sqrt(h_k / 3) ζ_k)``, the exact joint law of
    ``(W(t_{k+1}) - W(t_k), ∫ (W_u - W(t_k)) du)`` (Kloeden & Platen 1992, eq. 10.4.3).
    Queries are allowed on any sub-grid of the stored grid; other times raise.

    Shapes: ``dw`` is ``(n, *shape)``. Memory is O(n) (use :class:`VirtualBrownianTree` when that
    matters or the query times are not known in advance).
    """

    def __init__(
        self,
        grid: Sequence[float] | Tensor,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        levy_area: bool = False,
    ) -> None:
        self.grid = _as_float_grid(grid)
        self.t0, self.t1 = self.grid[0], self.grid[-1]
        self.shape = torch.Size(shape)
        if any(d < 0 for d in self.shape):
            raise ValueError(f"shape must have non-negative sizes, got {tuple(self.shape)}")
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        self.device = torch.device(device) if device is not None else (
            generator.device if generator is not None else torch.device("cpu"))
        self.has_levy_area = levy_area
        n = len(self.grid) - 1
        h = torch.tensor([b - a for a, b in zip(self.grid[:-1], self.grid[1:])], dtype=self.dtype,
                         device=self.device)
        self._h = h.reshape((n,) + (1,) * len(self.shape))
        xi = torch.randn((n, *self.shape), generator=generator, dtype=self.dtype, device=self.device)
        self.dw = xi * self._h.sqrt()
        if levy_area:
            zeta = torch.randn((n, *self.shape), generator=generator, dtype=self.dtype, device=self.device)
            self.i10: Tensor | None = 0.5 * self._h * (self.dw + (self._h / 3).sqrt() * zeta)
        else:
            self.i10 = None
        self._cum: tuple[Tensor, Tensor | None] | None = None

    @classmethod
    def uniform(cls, t0: float, t1: float, n_steps: int, shape: Sequence[int], **kwargs) -> "BrownianIncrements":
        """``n_steps`` equal steps on ``[t0, t1]``."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        h = (float(t1) - float(t0)) / n_steps
        return cls([float(t0) + k * h for k in range(n_steps)] + [float(t1)], shape, **kwargs)

    def _cumulative(self) -> tuple[Tensor, Tensor | None]:
        # W(t_k) and K(t_k) = ∫_{t_0}^{t_k} W du, each (n + 1, *shape)
        if self._cum is None:
            zero = torch.zeros((1, *self.shape), dtype=self.dtype, device=self.device)
            w = torch.cat([zero, self.dw.cumsum(0)])
            k = None
            if self.i10 is not None:
                k = torch.cat([zero, (w[:-1] * self._h + self.i10).cumsum(0)])
            self._cum = (w, k)
        return self._cum

    def _indices(self, grid: list[float], time_tol: float | None) -> list[int]:
        idx = []
        tol = (1e-11 if time_tol is None else time_tol) * max(1.0, abs(self.t0), abs(self.t1))
        for t in grid:
            j = bisect.bisect_left(self.grid, t - tol)
            if j >= len(self.grid) or abs(self.grid[j] - t) > tol:
                raise ValueError(
                    f"time {t!r} is not on the pre-sampled Brownian grid of {len(self.grid)} points on "
                    f"[{self.t0}, {self.t1}]; query a sub-grid of it or use VirtualBrownianTree for arbitrary times"
                )
            idx.append(j)
        return idx

    def increments(self, grid: Sequence[float] | Tensor, levy_area: bool = False, time_tol: float | None = None):
        """Increments over ``grid`` (a sub-grid of the stored one, matched within ``time_tol``
        relative to the interval's scale; default 1e-11, i.e. float64 clocks)."""
        grid = _as_float_grid(grid)
        if levy_area and not self.has_levy_area:
            raise ValueError("this BrownianIncrements was built without levy_area=True; the solver needs I_(1,0)")
        if len(grid) == len(self.grid) and all(a == b for a, b in zip(grid, self.grid)):
            return (self.dw, self.i10) if levy_area else self.dw
        self._check_range(grid)
        ids = self._indices(grid, time_tol)
        idx = torch.tensor(ids, device=self.device)
        w, k = self._cumulative()
        wg = w.index_select(0, idx)
        dw = wg[1:] - wg[:-1]
        if not levy_area:
            return dw
        tg = torch.tensor([self.grid[i] for i in ids], dtype=self.dtype, device=self.device)
        h = (tg[1:] - tg[:-1]).reshape((-1,) + (1,) * len(self.shape))
        kg = k.index_select(0, idx)
        return dw, (kg[1:] - kg[:-1]) - wg[:-1] * h

    def __repr__(self) -> str:
        return (f"BrownianIncrements(n_steps={len(self.grid) - 1}, t0={self.t0}, t1={self.t1}, "
                f"shape={tuple(self.shape)}, levy_area={self.has_levy_area})")


class VirtualBrownianTree(BrownianPath):
    """Virtual Brownian tree on ``[t0, t1]``: O(1) memory, any query, reproducible from ``seed``.

    Each node ``[a, b]`` (length ``h``) carries its increment ``W_ab`` and space-time Lévy area
    ``H_ab = (1/h) ∫_a^b (W_u - W_a - (u - a)/h W_ab) du`` (law ``N(0, h/12)``, independent of
    ``W_ab``). Its halves (length ``h' = h/2``) are drawn from the exact conditional law, derived
    from ``W_ab = W_1 + W_2`` and ``H_ab = (W_1 - W_2)/4 + (H_1 + H_2)/2``:

    .. math::
        D = W_1 - W_2 = 3 H_{ab} + \\sqrt{h'/2}\\,Z_1, \\quad H_1 + H_2 = 2H_{ab} - D/2, \\quad
        H_1 - H_2 = \\sqrt{h'/6}\\,Z_2

    (marginally this is the Brownian bridge, ``Var(W(m) | W_a, W_b) = h/4``). Carrying ``H`` lets
    the tree also answer ``I_(1,0) = ∫_s^t (W_u - W_s) du`` (``levy_area=True``), so the order-1.5
    schemes (SRI, SRA1) run on it. Below ``tol`` the path is the conditional mean given
    ``(W_ab, H_ab)``: linear plus ``6 H_ab s (1 - s)``, ``s = (t - a)/h``.

    Args:
        t0, t1: the interval.
        shape: shape of ``W(t)``, e.g. ``(batch, d)``.
        seed: integer key; the path is a deterministic function of ``(seed, t)``.
        tol: bisection stops when the node is shorter than ``tol``. Default ``(t1 - t0) * 2**-20``
            (at most 20 draws per query). Increments over intervals much longer than ``tol`` have
            the exact Brownian law; inside one leaf their variance is reduced.
    """

    has_levy_area = True

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: Sequence[int],
        *,
        seed: int,
        tol: float | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"VirtualBrownianTree needs finite t0 < t1, got t0={t0}, t1={t1}")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.t0, self.t1 = t0, t1
        self.shape = torch.Size(shape)
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.tol = float(tol) if tol is not None else (t1 - t0) * 2.0 ** -20
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        self.seed = seed
        self._key = _splitmix64(seed & _MASK64)
        self._gen = torch.Generator(device=self.device)
        z = self._normals(0, 0)
        span = t1 - t0
        self._w1 = z[0] * math.sqrt(span)
        self._h1 = z[1] * math.sqrt(span / 12)

    def _normals(self, level: int, index: int) -> Tensor:
        """Two standard normal draws ``(2, *shape)`` keyed by the node ``(level, index)``:
        a counter-based key, so the values do not depend on the order of queries."""
        key = _splitmix64(self._key ^ _splitmix64((level << 48) ^ index))
        self._gen.manual_seed(key & ((1 << 63) - 1))
        return torch.randn((2, *self.shape), generator=self._gen, dtype=self.dtype, device=self.device)

    def _evaluate(self, times: Sequence[float]) -> tuple[list[Tensor], list[Tensor]]:
        """``W(t)`` and ``K(t) = ∫_{t0}^t W du`` for each time; shared nodes drawn once per call."""
        times = [float(t) for t in times]
        self._check_range(sorted(times))
        n = len(times)
        w_out: list[Tensor | None] = [None] * n
        k_out: list[Tensor | None] = [None] * n
        zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        span = self.t1 - self.t0
        k1 = span * (0.5 * self._w1 + self._h1)
        pending = []
        for i, t in enumerate(times):
            if t <= self.t0:
                w_out[i], k_out[i] = zero, zero
            elif t >= self.t1:
                w_out[i], k_out[i] = self._w1, k1
            else:
                pending.append((t, i))
        pending.sort()
        # explicit stack of nodes: (a, b, W(a), K(a), W_ab, H_ab, level, index, points in (a, b))
        stack = [(self.t0, self.t1, zero, zero, self._w1, self._h1, 0, 0, pending)] if pending else []
        while stack:
            a, b, wa, ka, wab, hab, level, index, pts = stack.pop()
            h = b - a
            if h <= self.tol:
                for t, i in pts:
                    s = (t - a) / h
                    w_out[i] = wa + s * wab + (6 * s * (1 - s)) * hab
                    k_out[i] = ka + h * (s * wa + (0.5 * s * s) * wab + (6 * (0.5 * s * s - s**3 / 3)) * hab)
                continue
            hh = 0.5 * h
            z = self._normals(level + 1, index)
            d = 3 * hab + math.sqrt(hh / 2) * z[0]
            sum_h = 2 * hab - 0.5 * d
            diff_h = math.sqrt(hh / 6) * z[1]
            w_left, w_right = 0.5 * (wab + d), 0.5 * (wab - d)
            h_left, h_right = 0.5 * (sum_h + diff_h), 0.5 * (sum_h - diff_h)
            m = a + hh
            wm = wa + w_left
            km = ka + hh * (wa + 0.5 * w_left + h_left)
            left, right = [], []
            for t, i in pts:
                if t == m:
                    w_out[i], k_out[i] = wm, km
                elif t < m:
                    left.append((t, i))
                else:
                    right.append((t, i))
            if left:
                stack.append((a, m, wa, ka, w_left, h_left, level + 1, 2 * index, left))
            if right:
                stack.append((m, b, wm, km, w_right, h_right, level + 1, 2 * index + 1, right))
        return w_out, k_out  # type: ignore[return-value]

    def evaluate(self, times: Sequence[float]) -> list[Tensor]:
        """``W(t)`` for each time (any order)."""
        return self._evaluate(times)[0]

    def increments(self, grid: Sequence[float] | Tensor, levy_area: bool = False,
                   time_tol: float | None = None):
        grid = _as_float_grid(grid)
        w_list, k_list = self._evaluate(grid)
        w = torch.stack(w_list)
        dw = w[1:] - w[:-1]
        if not levy_area:
            return dw
        k = torch.stack(k_list)
        h = torch.tensor([b - a for a, b in zip(grid[:-1], grid[1:])], dtype=self.dtype, device=self.device)
        h = h.reshape((-1,) + (1,) * len(self.shape))
        return dw, (k[1:] - k[:-1]) - w[:-1] * h

    def __repr__(self) -> str:
        return (f"VirtualBrownianTree(t0={self.t0}, t1={self.t1}, shape={tuple(self.shape)}, "
                f"seed={self.seed}, tol={self.tol})")


def check_brownian(brownian: BrownianPath, inc_shape: tuple[int, ...], noise: object,
                   y_shape: tuple[int, ...]) -> BrownianPath:
    """Check a user-supplied Brownian object against the increments a solve needs; returns it.

    Raises ``TypeError`` for anything that is not a :class:`BrownianPath` and ``ValueError``
    naming both shapes when the noise type on a state of ``y_shape`` needs other increments.
    """
    if not isinstance(brownian, BrownianPath):
        raise TypeError(f"brownian must be a BrownianPath (BrownianIncrements, VirtualBrownianTree), got {brownian!r}")
    if tuple(brownian.shape) != tuple(inc_shape):
        raise ValueError(
            f"brownian has shape {tuple(brownian.shape)} but {noise!r} noise on a state of shape "
            f"{tuple(y_shape)} needs increments of shape {tuple(inc_shape)}")
    return brownian


def grid_increments(brownian: BrownianPath | None, grid: list[float], noise: object, y0: Tensor, *,
                    levy_area: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    """``(dW, I10)`` stacked over the steps of ``grid`` for a fixed-grid solve from ``y0``.

    ``brownian=None`` pre-samples :class:`BrownianIncrements` on ``grid`` with ``generator``;
    a user object is checked with :func:`check_brownian`. ``I10`` (the space–time Lévy area) is
    returned only when ``levy_area`` (solvers that need it), else ``None``.
    """
    inc_shape = noise.increment_shape(y0.shape)
    if brownian is None:
        brownian = BrownianIncrements(grid, inc_shape, generator=generator, dtype=y0.dtype, device=y0.device,
                                      levy_area=levy_area)
    else:
        check_brownian(brownian, inc_shape, noise, y0.shape)
    if levy_area:
        return brownian.increments(grid, levy_area=True)
    return brownian.increments(grid), None
