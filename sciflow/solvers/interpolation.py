"""Interpolation of irregular, partly missing time series: the control paths of neural CDEs/SDEs.

All three interpolants are fitted to ``values: (batch, time, channel)`` observed at
``times: (batch, time)`` (one grid per sample, non-decreasing; padding may repeat the last time)
or ``(time,)``, with an optional ``mask`` (``(batch, time, channel)`` or ``(batch, time)``, True
where observed). Every (sample, channel) series is interpolated through **its own observed
points only** — a missing value is not imputed first. Internally each series' observed knots are
compacted to the front and the tail is padded, so fitting and evaluation are batched over all
series at once (``torch.searchsorted`` on the ``(series, knots)`` table).

On the interval ``[t_i, t_{i+1}]`` each interpolant is a cubic in ``τ = t - t_i``:
``y = a_i + b_i τ + c_i τ² + d_i τ³``.

* :class:`LinearInterpolation` — piecewise linear (``c = d = 0``); derivative piecewise constant.
* :class:`HermiteCubic` — cubic Hermite with backward differences (Morrill, Kidger, Yang & Lyons
  2021, "Neural CDEs for online prediction tasks", §3): the slope at knot ``i`` is the backward
  difference ``(y_i - y_{i-1}) / (t_i - t_{i-1})`` (the first knot uses the forward one). ``C¹``
  and causal: the path on ``[t_i, t_{i+1}]`` uses no data after ``t_{i+1}``.
* :class:`NaturalCubicSpline` — the ``C²`` natural cubic spline (``y'' = 0`` at both ends; de Boor,
  *A practical guide to splines*, ch. IV; Kidger et al. 2020, "Neural CDEs", §3), second
  derivatives from the tridiagonal system solved by the Thomas algorithm batched over series.

Outside ``[first, last]`` observed time of a series the path is held constant (derivative 0): a
control path must not extrapolate into the unobserved future. A series with one observation is
constant; a series with none is identically zero (a fully missing channel contributes nothing).
Shapes of :meth:`evaluate` / :meth:`derivative`: ``t`` 0-d -> ``(batch, channel)``; ``t: (time,)``
shared -> ``(batch, time, channel)``; ``t: (batch, time)`` per sample -> ``(batch, time, channel)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LinearInterpolation", "HermiteCubic", "NaturalCubicSpline"]


def _prepare(times: Tensor, values: Tensor, mask: Tensor | None):
    """Compact each (sample, channel) series' observed knots to the front.

    Returns knot times ``tk (N, K)``, values ``vk (N, K)``, observation counts ``n (N,)`` with
    ``N = batch * channel``; padded knots continue past the last observed time with unit spacing
    and repeat its value (never selected by evaluation, but keep all divisions finite).
    """
    if not isinstance(values, Tensor) or values.ndim != 3:
        raise ValueError(f"values must be a tensor of shape (batch, time, channel), got "
                         f"{getattr(values, 'shape', type(values).__name__)}")
    if not values.is_floating_point():
        raise ValueError(f"values must be floating, got {values.dtype}")
    Bn, T, C = values.shape
    if not isinstance(times, Tensor) or times.ndim not in (1, 2):
        raise ValueError("times must be a tensor of shape (time,) or (batch, time)")
    if times.shape[-1] != T or (times.ndim == 2 and times.shape[0] != Bn):
        raise ValueError(f"shape mismatch: times {tuple(times.shape)} vs values {tuple(values.shape)}; "
                         f"times must be (time,) = ({T},) or (batch, time) = ({Bn}, {T})")
    if times.ndim == 1:
        times = times.unsqueeze(0).expand(Bn, T)
    times = times.to(values.dtype)
    if mask is None:
        mask = torch.ones(Bn, T, C, dtype=torch.bool, device=values.device)
    else:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {mask.dtype}")
        if mask.ndim == 2:
            mask = mask.unsqueeze(-1).expand(Bn, T, C)
        if tuple(mask.shape) != (Bn, T, C):
            raise ValueError(f"shape mismatch: mask {tuple(mask.shape)} vs values {tuple(values.shape)}")
    if not bool(torch.isfinite(times).all()):
        raise ValueError("times contain non-finite entries")
    if bool((~torch.isfinite(values) & mask).any()):
        b, i, c = torch.nonzero(~torch.isfinite(values) & mask)[0].tolist()
        raise ValueError(f"observed value is non-finite at sample {b}, time index {i}, channel {c}; "
                         f"mark missing entries in mask instead")
    if T > 1 and bool((times[:, 1:] < times[:, :-1]).any()):
        b, i = torch.nonzero(times[:, 1:] < times[:, :-1])[0].tolist()
        raise ValueError(f"times are unsorted in sample {b} at index {i + 1}: "
                         f"{times[b, i + 1].item()} < {times[b, i].item()}")
    # series layout (N = batch * channel, T)
    tser = times.unsqueeze(1).expand(Bn, C, T).reshape(Bn * C, T)
    vser = values.permute(0, 2, 1).reshape(Bn * C, T)
    mser = mask.permute(0, 2, 1).reshape(Bn * C, T)
    vser = torch.where(mser, vser, torch.zeros((), dtype=vser.dtype, device=vser.device))
    order = torch.argsort((~mser).to(torch.int8), dim=1, stable=True)    # observed first, in time order
    tk = tser.gather(1, order)
    vk = vser.gather(1, order)
    n = mser.sum(1)
    pos = torch.arange(T, device=values.device).expand_as(tk)
    valid = pos < n.unsqueeze(1)
    if T > 1:
        dup = valid[:, 1:] & (tk[:, 1:] <= tk[:, :-1])
        if bool(dup.any()):
            s, i = torch.nonzero(dup)[0].tolist()
            raise ValueError(f"duplicated observation time {tk[s, i + 1].item()} in sample {s // C}, "
                             f"channel {s % C}: each series needs strictly increasing observed times")
    last = (n - 1).clamp(min=0).unsqueeze(1)
    t_last = tk.gather(1, last)
    v_last = vk.gather(1, last)
    extra = (pos - last).to(tk.dtype)
    tk = torch.where(valid, tk, t_last + extra)
    vk = torch.where(valid, vk, v_last)
    return tk, vk, n, (Bn, T, C)


class _CubicPath:
    """Piecewise cubic on per-series knots; subclasses compute the coefficients ``(a, b, c, d)``."""

    def __init__(self, times: Tensor, values: Tensor, mask: Tensor | None = None):
        tk, vk, n, (self.batch, _, self.channels) = _prepare(times, values, mask)
        self.knots, self.n_obs = tk, n
        if tk.shape[1] == 1:   # a single time point: constant path
            z = torch.zeros_like(vk)
            self.coeffs = (vk, z, z, z)
        else:
            self.coeffs = self._coefficients(tk, vk, n)
        self.t_first = tk[:, 0]
        self.t_last = tk.gather(1, (n - 1).clamp(min=0).unsqueeze(1)).squeeze(1)

    def _coefficients(self, tk: Tensor, vk: Tensor, n: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _locate(self, t) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
        t = torch.as_tensor(t, dtype=self.knots.dtype, device=self.knots.device)
        N = self.knots.shape[0]
        if t.ndim == 0:
            tq, out_shape = t.expand(N, 1), (self.batch, self.channels)
        elif t.ndim == 1:
            tq, out_shape = t.unsqueeze(0).expand(N, -1), (self.batch, t.shape[0], self.channels)
        elif t.ndim == 2 and t.shape[0] == self.batch:
            tq = t.unsqueeze(1).expand(self.batch, self.channels, t.shape[1]).reshape(N, t.shape[1])
            out_shape = (self.batch, t.shape[1], self.channels)
        else:
            raise ValueError(f"t must be 0-d, (time,) or (batch, time) with batch = {self.batch}; "
                             f"got shape {tuple(t.shape)}")
        inside = (tq >= self.t_first.unsqueeze(1)) & (tq <= self.t_last.unsqueeze(1))
        tq = torch.minimum(torch.maximum(tq, self.t_first.unsqueeze(1)), self.t_last.unsqueeze(1))
        n_int = self.coeffs[0].shape[1]
        idx = torch.searchsorted(self.knots.contiguous(), tq.contiguous(), right=True) - 1
        hi = (self.n_obs - 2).clamp(min=0).unsqueeze(1)
        idx = torch.minimum(idx.clamp(min=0), hi).clamp(max=n_int - 1)
        tau = tq - self.knots.gather(1, idx)
        return idx, tau, inside, out_shape

    def _shape(self, y: Tensor, out_shape: tuple[int, ...]) -> Tensor:
        if len(out_shape) == 2:
            return y.reshape(self.batch, self.channels)
        return y.reshape(self.batch, self.channels, -1).transpose(1, 2)

    def evaluate(self, t) -> Tensor:
        """The path ``X(t)``."""
        idx, tau, _, out_shape = self._locate(t)
        a, b, c, d = (x.gather(1, idx) for x in self.coeffs)
        return self._shape(a + tau * (b + tau * (c + tau * d)), out_shape)

    def derivative(self, t) -> Tensor:
        """``dX/dt`` (zero outside the observed range of each series)."""
        idx, tau, inside, out_shape = self._locate(t)
        _, b, c, d = (x.gather(1, idx) for x in self.coeffs)
        dy = b + tau * (2 * c + 3 * tau * d)
        return self._shape(torch.where(inside, dy, torch.zeros_like(dy)), out_shape)

    def __call__(self, t) -> Tensor:
        return self.evaluate(t)


def _intervals(tk: Tensor, vk: Tensor):
    h = tk[:, 1:] - tk[:, :-1]
    slope = (vk[:, 1:] - vk[:, :-1]) / h
    return h, slope


class LinearInterpolation(_CubicPath):
    """Piecewise-linear interpolation through each series' observed points."""

    def _coefficients(self, tk, vk, n):
        _, slope = _intervals(tk, vk)
        z = torch.zeros_like(slope)
        return vk[:, :-1], slope, z, z


class HermiteCubic(_CubicPath):
    """Cubic Hermite interpolation with backward-difference slopes (Morrill et al. 2021)."""

    def _coefficients(self, tk, vk, n):
        h, slope = _intervals(tk, vk)
        # slope at knot i = backward difference (slope of interval i-1); knot 0 uses interval 0
        m = torch.cat([slope[:, :1], slope], 1)
        m0, m1 = m[:, :-1], m[:, 1:]
        c = (3 * slope - 2 * m0 - m1) / h
        d = (m0 + m1 - 2 * slope) / (h * h)
        return vk[:, :-1], m0, c, d


class NaturalCubicSpline(_CubicPath):
    """Natural cubic spline (zero second derivative at the first and last observed knot)."""

    def _coefficients(self, tk, vk, n):
        h, slope = _intervals(tk, vk)
        N, K = tk.shape
        M = torch.zeros_like(tk)
        if K > 2:
            pos = torch.arange(1, K - 1, device=tk.device)
            interior = pos.unsqueeze(0) <= (n - 2).unsqueeze(1)            # rows 1..n-2 of each series
            one = torch.ones((), dtype=tk.dtype, device=tk.device)
            zero = torch.zeros((), dtype=tk.dtype, device=tk.device)
            lower = torch.where(interior, h[:, :-1], zero)                   # coefficient of M_{i-1}
            diag = torch.where(interior, 2 * (h[:, :-1] + h[:, 1:]), one)
            upper = torch.where(interior, h[:, 1:], zero)                    # coefficient of M_{i+1}
            rhs = torch.where(interior, 6 * (slope[:, 1:] - slope[:, :-1]), zero)
            # Thomas algorithm on rows 1..K-2 (M_0 = M_{K-1} = 0; padding rows are identity rows,
            # and an interior row next to the last observed knot couples to M_{n-1} = 0)
            upper = torch.where(pos.unsqueeze(0) < (n - 2).unsqueeze(1), upper, zero)
            cp, dp = [], []
            for i in range(K - 2):
                if i == 0:
                    denom = diag[:, 0]
                    cp.append(upper[:, 0] / denom)
                    dp.append(rhs[:, 0] / denom)
                else:
                    denom = diag[:, i] - lower[:, i] * cp[-1]
                    cp.append(upper[:, i] / denom)
                    dp.append((rhs[:, i] - lower[:, i] * dp[-1]) / denom)
            sol = [dp[-1]]
            for i in range(K - 4, -1, -1):
                sol.append(dp[i] - cp[i] * sol[-1])
            sol.reverse()
            z = torch.zeros(N, 1, dtype=tk.dtype, device=tk.device)
            M = torch.cat([z, torch.stack(sol, 1), z], 1)
        Mi, Mj = M[:, :-1], M[:, 1:]
        b = slope - h * (2 * Mi + Mj) / 6
        return vk[:, :-1], b, Mi / 2, (Mj - Mi) / (6 * h)
