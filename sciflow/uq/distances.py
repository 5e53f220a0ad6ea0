r"""Distances between populations (point clouds) for population-level predictions.

``x``: ``(n, dim)``, ``y``: ``(m, dim)`` (1-D samples may be passed as ``(n,)``). All are torch and
differentiable in the points; the exact Wasserstein distances solve the transport problem on the
host with SciPy (an assignment for equal uniform sets, a linear programme otherwise) and
differentiate through the optimal plan (envelope theorem), so use them for evaluation and the
sliced/MMD/energy forms inside training loops.

References: Villani (2008); Bonneel et al. (2015) (sliced Wasserstein); Gretton et al. (2012)
(MMD, unbiased estimator eq. 3); Székely & Rizzo (2013) (energy distance).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["wasserstein", "wasserstein_exact", "sliced_wasserstein", "wasserstein_1d", "mmd",
           "energy_distance", "population_metrics", "mean_population_metrics"]


def _as_points(x: Tensor, name: str) -> Tensor:
    if x.ndim == 1:
        x = x.unsqueeze(-1)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n_points, dim) or (n_points,), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def _check_p(p: float) -> None:
    if p < 1:
        raise ValueError(f"Wasserstein order p must be >= 1, got {p}")


def _pairwise_dist(x: Tensor, y: Tensor) -> Tensor:
    # exact differences (cdist's matmul path loses precision near zero)
    d2 = ((x.unsqueeze(-2) - y.unsqueeze(-3)) ** 2).sum(-1)
    return torch.where(d2 > 0, d2.clamp_min(1e-300).sqrt(), torch.zeros_like(d2))


def wasserstein_exact(x: Tensor, y: Tensor, p: float = 1.0, *, x_weights: Tensor | None = None,
                      y_weights: Tensor | None = None) -> Tensor:
    r"""Exact :math:`W_p = (\min_{P\in\Pi(a,b)} \sum_{ij} P_{ij}\|x_i-y_j\|^p)^{1/p}`.

    Equal sizes with uniform weights reduce to an assignment problem (Hungarian,
    ``scipy.optimize.linear_sum_assignment``, :math:`O(n^3)`); otherwise the transport linear
    programme is solved with HiGHS (``scipy.optimize.linprog``), practical up to a few hundred
    points per side. Weights must be non-negative and are normalised to sum to one.
    """
    _check_p(p)
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    cost = _pairwise_dist(x, y) ** p
    n, m = cost.shape
    c = cost.detach().cpu().double().numpy()
    if x_weights is None and y_weights is None and n == m:
        from scipy.optimize import linear_sum_assignment

        r, k = linear_sum_assignment(c)
        plan = np.zeros((n, m))
        plan[r, k] = 1.0 / n
    else:
        from scipy.optimize import linprog
        from scipy.sparse import coo_matrix, vstack

        a = np.full(n, 1.0 / n) if x_weights is None else x_weights.detach().cpu().double().numpy()
        b = np.full(m, 1.0 / m) if y_weights is None else y_weights.detach().cpu().double().numpy()
        if a.shape != (n,) or b.shape != (m,):
            raise ValueError(f"weights must be ({n},) and ({m},), got {a.shape} and {b.shape}")
        if (a < 0).any() or (b < 0).any():
            raise ValueError("transport weights must be non-negative")
        a, b = a / a.sum(), b / b.sum()
        rows = coo_matrix((np.ones(n * m), (np.repeat(np.arange(n), m), np.arange(n * m))), shape=(n, n * m))
        cols = coo_matrix((np.ones(n * m), (np.tile(np.arange(m), n), np.arange(n * m))), shape=(m, n * m))
        res = linprog(c.reshape(-1), A_eq=vstack([rows, cols]).tocsr(), b_eq=np.concatenate([a, b]),
                      bounds=(0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"optimal transport linear programme failed: {res.message}")
        plan = res.x.reshape(n, m)
    P = torch.as_tensor(plan, dtype=cost.dtype, device=cost.device)
    return (P * cost).sum().clamp_min(0) ** (1.0 / p)


def wasserstein_1d(u: Tensor, v: Tensor, p: float = 1.0) -> Tensor:
    r"""Exact :math:`W_p` between 1-D empirical measures with uniform weights, batched over leading axes:
    :math:`W_p^p=\int_0^1|F_u^{-1}(t)-F_v^{-1}(t)|^p\,dt` evaluated on the merged quantile breakpoints.
    ``u``: ``(..., n)``, ``v``: ``(..., m)``; returns ``(...)``."""
    _check_p(p)
    n, m = u.shape[-1], v.shape[-1]
    if n == 0 or m == 0:
        raise ValueError(f"u and v need at least one point each along the last axis, got {n} and {m}")
    if bool(torch.isnan(u).any()) or bool(torch.isnan(v).any()):
        raise ValueError("u or v contains NaN")
    us, _ = torch.sort(u, dim=-1)
    vs, _ = torch.sort(v, dim=-1)
    if n == m:
        return ((us - vs).abs() ** p).mean(-1).clamp_min(0) ** (1.0 / p)
    dt = u.dtype
    t = torch.cat([torch.arange(1, n + 1, dtype=dt, device=u.device) / n,
                   torch.arange(1, m + 1, dtype=dt, device=u.device) / m]).sort().values
    left = torch.cat([t.new_zeros(1), t[:-1]])
    mid, width = (left + t) / 2, t - left
    iu = torch.clamp((mid * n).floor().long(), max=n - 1)
    iv = torch.clamp((mid * m).floor().long(), max=m - 1)
    du = us[..., iu] - vs[..., iv]
    return (width * du.abs() ** p).sum(-1).clamp_min(0) ** (1.0 / p)


def sliced_wasserstein(x: Tensor, y: Tensor, p: float = 2.0, *, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> Tensor:
    r"""Sliced :math:`W_p` (Bonneel et al. 2015): :math:`(\mathbb E_\theta W_p^p(\theta^\top x,
    \theta^\top y))^{1/p}` over directions uniform on the sphere, Monte-Carlo with
    ``n_projections`` directions drawn from ``generator``. :math:`O(L (n+m)\log(n+m))`; equals the
    exact :math:`W_p` in 1-D. Sizes may differ."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    if int(n_projections) < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    d = x.shape[1]
    if d == 1:
        return wasserstein_1d(x[:, 0], y[:, 0], p)
    theta = torch.randn(n_projections, d, generator=generator, dtype=x.dtype,
                        device=generator.device if generator is not None else x.device).to(x.device)
    theta = theta / theta.norm(dim=1, keepdim=True)
    wp = wasserstein_1d(theta @ x.T, theta @ y.T, p) ** p
    return wp.mean().clamp_min(0) ** (1.0 / p)


def wasserstein(x: Tensor, y: Tensor, p: float = 1.0, *, max_exact: int = 512,
                n_projections: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """:math:`W_p`: exact (:func:`wasserstein_exact`, or the closed form in 1-D) when both sets have
    at most ``max_exact`` points, else :func:`sliced_wasserstein` (a different, smaller quantity
    in dim > 1: report which one was used)."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] == 1:
        return wasserstein_1d(x[:, 0], y[:, 0], p)
    if max(x.shape[0], y.shape[0]) <= max_exact:
        return wasserstein_exact(x, y, p)
    return sliced_wasserstein(x, y, p, n_projections=n_projections, generator=generator)


def _median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    z = torch.cat([x, y]).detach()
    d = _pairwise_dist(z, z)
    iu = torch.triu_indices(len(z), len(z), 1, device=z.device)
    return d[iu[0], iu[1]].median().clamp_min(1e-12)


def mmd(x: Tensor, y: Tensor, *, bandwidths: Sequence[float] | Tensor | None = None,
        scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), unbiased: bool = True) -> Tensor:
    r"""Squared maximum mean discrepancy with a mixture of Gaussian kernels
    :math:`k(a,b)=\sum_\ell \exp(-\|a-b\|^2/(2h_\ell^2))` (Gretton et al. 2012).

    ``bandwidths``: explicit :math:`h_\ell`; default ``scales`` times the median pairwise distance
    of the pooled sample (computed without gradient). ``unbiased``: the U-statistic (eq. 3,
    diagonals excluded; may be slightly negative), else the V-statistic (eq. 5)."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError("unbiased MMD needs at least 2 points per set")
    if bandwidths is None:
        h = _median_bandwidth(x, y) * torch.tensor(scales, dtype=x.dtype, device=x.device)
    else:
        h = torch.as_tensor(bandwidths, dtype=x.dtype, device=x.device).reshape(-1)
        if bool((h <= 0).any()):
            raise ValueError("kernel bandwidths must be positive")

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = ((a.unsqueeze(1) - b.unsqueeze(0)) ** 2).sum(-1)
        return torch.exp(-d2.unsqueeze(-1) / (2 * h**2)).sum(-1)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    if unbiased:
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        sxx, syy = kxx.mean(), kyy.mean()
    return sxx + syy - 2 * kxy.mean()


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    r"""Energy distance :math:`\sqrt{2\mathbb E\|X-Y\| - \mathbb E\|X-X'\| - \mathbb E\|Y-Y'\|}`
    (Székely & Rizzo 2013; V-statistics; the convention of ``scipy.stats.energy_distance``)."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    e = 2 * _pairwise_dist(x, y).mean() - _pairwise_dist(x, x).mean() - _pairwise_dist(y, y).mean()
    return e.clamp_min(0).sqrt()


def population_metrics(pred: Tensor, true: Tensor) -> dict[str, float]:
    """The four scores of a predicted population against the true one, in float64: ``W1``, ``W2``
    (exact), ``MMD`` (RBF MMD², median-heuristic bandwidths) and ``energy`` (the metrics of the meta
    flow matching paper's tables, Atanackovic et al. 2025)."""
    pred, true = pred.double(), true.double()
    return {"W1": float(wasserstein_exact(pred, true, p=1)),
            "W2": float(wasserstein_exact(pred, true, p=2)),
            "MMD": float(mmd(pred, true)),
            "energy": float(energy_distance(pred, true))}


def mean_population_metrics(preds: Tensor, trues: Tensor) -> dict[str, float]:
    """:func:`population_metrics` of ``preds[b]`` against ``trues[b]`` for ``(batch, n, dim)``
    populations, averaged over the batch (each population counts once, whatever its size)."""
    if preds.ndim != 3 or trues.ndim != 3 or preds.shape[0] != trues.shape[0] or preds.shape[0] == 0:
        raise ValueError(f"need (batch, n, dim) populations with the same non-zero batch, got "
                         f"{tuple(preds.shape)} and {tuple(trues.shape)}")
    per = [population_metrics(p, t) for p, t in zip(preds, trues)]
    return {k: math.fsum(m[k] for m in per) / len(per) for k in per[0]}
