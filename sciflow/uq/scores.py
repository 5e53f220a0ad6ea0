r"""Proper scoring rules and calibration diagnostics, in torch (differentiable, device-agnostic).

Conventions shared by every function:

- ``samples``: ``(n_samples, *shape)`` predictive draws (ensemble members, MC-dropout passes,
  posterior predictive draws); ``y``: ``(*shape)`` the truth.
- Elementwise scores are reduced by :func:`~sciflow.uq._reduce.weighted_mean`: ``dim=None``
  averages over every axis, ``dim=()`` returns the elementwise field, an int/name/sequence
  reduces those axes (names resolved through ``names=``, e.g. ``("batch","time","lat","lon")``).
  ``weights=`` (e.g. :func:`latitude_weights`) broadcasts against ``y`` by trailing axes.
- Lower is better for scores (NLL, CRPS, energy, variogram, interval score); skill measures say so.

References: Gneiting & Raftery (2007) "Strictly proper scoring rules, prediction, and estimation"
(JASA); Gneiting et al. (2005) (CRPS of a Gaussian); Ferro (2014) (fair scores); Scheuerer &
Hamill (2015) (variogram score); Kuleshov et al. (2018) (quantile calibration); Fortin et al.
(2014) (spread–skill); Rasp et al. (2020) WeatherBench (area-weighted RMSE/ACC).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from sciflow.data.latitude import latitude_weights  # re-exported: the grid owns its weights
from sciflow.uq._reduce import (Dim, check_not_nan, check_same_shape, check_samples, check_scale, resolve_dims,
                                weighted_mean)

__all__ = [
    "latitude_weights", "gaussian_nll", "crps_gaussian", "crps_ensemble", "energy_score",
    "variogram_score", "interval_coverage", "interval_width", "interval_score", "pit", "pit_gaussian",
    "rank_histogram", "reliability", "calibration_error", "spread_skill_ratio", "rmse", "acc",
]

_SQRT_PI = math.sqrt(math.pi)


# ---------------------------------------------------------------- parametric (Gaussian) scores

def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor, *, weights: Tensor | None = None,
                 dim: Dim = None, names: Sequence[str] | None = None) -> Tensor:
    r"""Negative log density of ``y`` under :math:`\mathcal N(\mu, \sigma^2)`, full constant included:
    :math:`\tfrac12\left[\log(2\pi\sigma^2) + (y-\mu)^2/\sigma^2\right]`."""
    check_same_shape(mean, y, "mean", "y")
    check_same_shape(var, y, "var", "y")
    check_not_nan(mean=mean, y=y)
    check_scale(var, "var")
    nll = 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)
    return weighted_mean(nll, weights, dim, names)


def crps_gaussian(mean: Tensor, std: Tensor, y: Tensor, *, weights: Tensor | None = None,
                  dim: Dim = None, names: Sequence[str] | None = None) -> Tensor:
    r"""Closed-form CRPS of :math:`\mathcal N(\mu,\sigma^2)` (Gneiting et al. 2005, eq. 5):
    :math:`\sigma\,[z(2\Phi(z)-1) + 2\varphi(z) - 1/\sqrt\pi]`, :math:`z=(y-\mu)/\sigma`."""
    check_same_shape(mean, y, "mean", "y")
    check_same_shape(std, y, "std", "y")
    check_not_nan(mean=mean, y=y)
    check_scale(std, "std")
    z = (y - mean) / std
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    crps = std * (z * (2 * cdf - 1) + 2 * pdf - 1 / _SQRT_PI)
    return weighted_mean(crps, weights, dim, names)


# ---------------------------------------------------------------- sample-based univariate scores

def _mean_abs_pairwise(samples: Tensor) -> Tensor:
    r""":math:`\frac1{m^2}\sum_{i,j}|x_i-x_j| = \frac{2}{m^2}\sum_i (2i-m-1)\,x_{(i)}` over axis 0,
    in :math:`O(m\log m)` via the order statistics."""
    m = samples.shape[0]
    xs, _ = torch.sort(samples, dim=0)
    i = torch.arange(1, m + 1, dtype=samples.dtype, device=samples.device)
    coef = (2 * i - m - 1).reshape((m,) + (1,) * (samples.ndim - 1))
    return 2.0 / m**2 * (coef * xs).sum(0)


def crps_ensemble(samples: Tensor, y: Tensor, *, fair: bool = False, weights: Tensor | None = None,
                  dim: Dim = None, names: Sequence[str] | None = None) -> Tensor:
    r"""CRPS of the empirical ensemble distribution (Gneiting & Raftery 2007, eq. 21):
    :math:`\mathbb E|X-y| - \tfrac12\mathbb E|X-X'|`.

    ``fair=True`` gives the unbiased ("fair") estimator of the CRPS of the distribution the members
    are drawn from (Ferro 2014): the pairwise term is averaged over the :math:`m(m-1)` distinct
    pairs, i.e. multiplied by :math:`m/(m-1)`. ``fair=False`` matches ``properscoring.crps_ensemble``.
    """
    check_samples(samples, y)
    m = samples.shape[0]
    if fair and m < 2:
        raise ValueError("fair CRPS needs at least 2 samples")
    skill = (samples - y).abs().mean(0)
    spread = _mean_abs_pairwise(samples)
    if fair:
        spread = spread * m / (m - 1)
    return weighted_mean(skill - 0.5 * spread, weights, dim, names)


def _event_flatten(samples: Tensor, y: Tensor, event_dims: Dim, names: Sequence[str] | None
                   ) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Move ``event_dims`` of ``y`` to the end and flatten them: returns samples ``(m, *rest, d)``,
    y ``(*rest, d)`` and the kept axes."""
    ev = resolve_dims(event_dims, y.ndim, names)
    if not ev:
        raise ValueError("event_dims must name at least one axis")
    rest = tuple(i for i in range(y.ndim) if i not in ev)
    yp = y.permute(*rest, *ev).reshape(*[y.shape[i] for i in rest], -1)
    sp = samples.permute(0, *[i + 1 for i in rest], *[i + 1 for i in ev]).reshape(
        samples.shape[0], *[y.shape[i] for i in rest], -1)
    return sp, yp, rest


def _norm(x: Tensor) -> Tensor:
    # sqrt with a zero-safe gradient (the pairwise diagonal is exactly zero)
    sq = (x * x).sum(-1)
    return torch.where(sq > 0, sq.clamp_min(1e-300).sqrt(), torch.zeros_like(sq))


def energy_score(samples: Tensor, y: Tensor, *, event_dims: Dim = -1, fair: bool = False,
                 weights: Tensor | None = None, dim: Dim = None, names: Sequence[str] | None = None
                 ) -> Tensor:
    r"""Energy score (Gneiting & Raftery 2007, eq. 22 with :math:`\beta=1`) of a multivariate ensemble:
    :math:`\mathbb E\|X-y\| - \tfrac12\mathbb E\|X-X'\|`, the norm taken over ``event_dims`` of ``y``.

    ``weights`` (broadcastable to ``y``) weight the squared components inside the norm
    (area-weighted Euclidean distance for lat/lon fields). The remaining axes are averaged by
    ``dim`` (unweighted). ``fair=True`` averages the pairwise term over distinct pairs.
    Cost: :math:`O(m^2 d)` per event.
    """
    check_samples(samples, y)
    m = samples.shape[0]
    if fair and m < 2:
        raise ValueError("fair energy score needs at least 2 samples")
    if weights is not None:
        w = torch.broadcast_to(weights.to(y.dtype), y.shape).sqrt()
        samples, y = samples * w, y * w
    sp, yp, rest = _event_flatten(samples, y, event_dims, names)
    skill = _norm(sp - yp).mean(0)
    diff = sp.unsqueeze(0) - sp.unsqueeze(1)                         # (m, m, *rest, d)
    pair = _norm(diff).sum((0, 1))
    spread = pair / (m * (m - 1)) if fair else pair / m**2
    es = skill - 0.5 * spread
    rest_names = None if names is None else [names[i] for i in rest]
    return weighted_mean(es, None, dim, rest_names)


def variogram_score(samples: Tensor, y: Tensor, *, p: float = 0.5, event_dims: Dim = -1,
                    pair_weights: Tensor | None = None, dim: Dim = None,
                    names: Sequence[str] | None = None) -> Tensor:
    r"""Variogram score of order ``p`` (Scheuerer & Hamill 2015, eq. 3):
    :math:`\sum_{i,j} w_{ij}\left(|y_i-y_j|^p - \mathbb E|X_i-X_j|^p\right)^2` over the flattened
    ``event_dims``. ``pair_weights``: ``(d, d)`` (default all ones). Cost :math:`O(m d^2)`.
    """
    check_samples(samples, y)
    if not p > 0:
        raise ValueError(f"variogram order p must be > 0, got {p}")
    sp, yp, rest = _event_flatten(samples, y, event_dims, names)
    d = yp.shape[-1]
    vy = (yp.unsqueeze(-1) - yp.unsqueeze(-2)).abs().pow(p)
    vx = (sp.unsqueeze(-1) - sp.unsqueeze(-2)).abs().pow(p).mean(0)
    sq = (vy - vx) ** 2
    if pair_weights is not None:
        if tuple(pair_weights.shape) != (d, d):
            raise ValueError(f"pair_weights must be ({d}, {d}), got {tuple(pair_weights.shape)}")
        sq = sq * pair_weights.to(sq.dtype)
    vs = sq.sum((-1, -2))
    rest_names = None if names is None else [names[i] for i in rest]
    return weighted_mean(vs, None, dim, rest_names)


# ---------------------------------------------------------------- intervals


def interval_coverage(lower: Tensor, upper: Tensor, y: Tensor, *, weights: Tensor | None = None,
                      dim: Dim = None, names: Sequence[str] | None = None) -> Tensor:
    """Fraction of ``y`` inside ``[lower, upper]`` (weighted). Not differentiable (an indicator)."""
    check_same_shape(lower, y, "lower", "y")
    check_same_shape(upper, y, "upper", "y")
    check_not_nan(lower=lower, upper=upper, y=y)
    inside = ((y >= lower) & (y <= upper)).to(y.dtype if y.is_floating_point() else torch.float32)
    return weighted_mean(inside, weights, dim, names)


def interval_width(lower: Tensor, upper: Tensor, *, weights: Tensor | None = None, dim: Dim = None,
                   names: Sequence[str] | None = None) -> Tensor:
    """Mean width ``upper - lower`` (weighted). A crossed interval (``lower > upper``: the empty
    set, which online conformal methods issue when their level α_t ≥ 1) has
    width 0, not a negative one that would offset the others."""
    check_same_shape(lower, upper, "lower", "upper")
    return weighted_mean((upper - lower).clamp_min(0), weights, dim, names)


def interval_score(lower: Tensor, upper: Tensor, y: Tensor, alpha: float, *,
                   weights: Tensor | None = None, dim: Dim = None,
                   names: Sequence[str] | None = None) -> Tensor:
    r"""Interval (Winkler) score of a central ``1-alpha`` interval (Gneiting & Raftery 2007, eq. 43):
    :math:`(u-l) + \tfrac2\alpha(l-y)\mathbb 1[y<l] + \tfrac2\alpha(y-u)\mathbb 1[y>u]`."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    check_same_shape(lower, y, "lower", "y")
    check_same_shape(upper, y, "upper", "y")
    check_not_nan(lower=lower, upper=upper, y=y)
    s = (upper - lower) + 2 / alpha * (lower - y).clamp_min(0) + 2 / alpha * (y - upper).clamp_min(0)
    return weighted_mean(s, weights, dim, names)


# ---------------------------------------------------------------- calibration

def _ranks(samples: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
    below = (samples < y).sum(0)
    if generator is None:
        return below
    ties = (samples == y).sum(0)
    u = torch.rand(y.shape, generator=generator, device=y.device if generator.device.type != "cpu" else "cpu")
    return below + torch.floor(u.to(y.device) * (ties + 1).to(u.dtype)).to(below.dtype)


def pit(samples: Tensor, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    r"""Probability integral transform of ``y`` under the ensemble: :math:`(r + \tfrac12)/(m+1)` with
    :math:`r = \#\{x_i < y\}` the rank (ties broken uniformly at random if ``generator`` is given).
    Uniform on (0, 1) for a calibrated forecast. Shape of ``y``."""
    check_samples(samples, y)
    r = _ranks(samples, y, generator).to(samples.dtype)
    return (r + 0.5) / (samples.shape[0] + 1)


def pit_gaussian(mean: Tensor, std: Tensor, y: Tensor) -> Tensor:
    r"""PIT of ``y`` under :math:`\mathcal N(\mu,\sigma^2)`: :math:`\Phi((y-\mu)/\sigma)`."""
    check_same_shape(mean, y, "mean", "y")
    check_same_shape(std, y, "std", "y")
    check_not_nan(mean=mean, y=y)
    check_scale(std, "std")
    return 0.5 * (1 + torch.erf((y - mean) / (std * math.sqrt(2))))


def rank_histogram(samples: Tensor, y: Tensor, *, generator: torch.Generator | None = None,
                   normalize: bool = False) -> Tensor:
    """Talagrand rank histogram: counts of the rank of ``y`` among the ``m`` samples, ``(m + 1,)``.
    Flat for a calibrated ensemble; U-shaped when under-dispersed (over-confident)."""
    check_samples(samples, y)
    m = samples.shape[0]
    r = _ranks(samples, y, generator).reshape(-1)
    counts = torch.bincount(r, minlength=m + 1).to(samples.dtype)
    return counts / counts.sum() if normalize else counts


def reliability(pit_values: Tensor, levels: Tensor | int = 19) -> tuple[Tensor, Tensor]:
    r"""Reliability curve from PIT values: for each nominal level :math:`p_j` the observed frequency
    :math:`\hat p_j = \frac1N\#\{\mathrm{PIT} \le p_j\}` (Kuleshov et al. 2018, eq. 8).
    ``levels``: tensor of levels in (0, 1) or a count of equispaced levels. Returns ``(levels, observed)``."""
    if not bool(((pit_values >= 0) & (pit_values <= 1)).all()):
        raise ValueError("pit_values must lie in [0, 1] (and not be NaN); pass the output of pit() / pit_gaussian()")
    if isinstance(levels, int):
        if levels < 1:
            raise ValueError(f"levels must be >= 1 (a count of equispaced levels), got {levels}")
        levels = torch.linspace(0, 1, levels + 2, dtype=pit_values.dtype, device=pit_values.device)[1:-1]
    elif levels.numel() == 0 or not bool(((levels > 0) & (levels < 1)).all()):
        raise ValueError(f"levels must be a non-empty tensor of levels in (0, 1), got {levels.tolist()}")
    obs = (pit_values.reshape(-1, 1) <= levels.reshape(1, -1)).to(pit_values.dtype).mean(0)
    return levels, obs


def calibration_error(pit_values: Tensor, levels: Tensor | int = 19) -> Tensor:
    r"""Quantile calibration error (Kuleshov et al. 2018, eq. 9, uniform weights):
    :math:`\frac1J\sum_j (p_j - \hat p_j)^2`; zero for perfectly calibrated PIT values."""
    lv, obs = reliability(pit_values, levels)
    return ((lv - obs) ** 2).mean()


def spread_skill_ratio(samples: Tensor, y: Tensor, *, weights: Tensor | None = None, dim: Dim = None,
                       names: Sequence[str] | None = None, correction: bool = True) -> Tensor:
    r"""Spread–skill ratio :math:`\sqrt{\tfrac{m+1}{m}\,\overline{s^2}}\,/\,\mathrm{RMSE}(\bar x, y)`
    (Fortin et al. 2014, eq. 8 with the finite-ensemble factor when ``correction``):
    :math:`s^2` the unbiased ensemble variance, averages weighted over ``dim``. About 1 for a
    calibrated ensemble; < 1 over-confident; > 1 under-confident."""
    check_samples(samples, y)
    m = samples.shape[0]
    if m < 2:
        raise ValueError("spread-skill ratio needs at least 2 samples")
    var = samples.var(0)
    mse = (samples.mean(0) - y) ** 2
    factor = (m + 1) / m if correction else 1.0
    spread = (factor * weighted_mean(var, weights, dim, names)).sqrt()
    skill = weighted_mean(mse, weights, dim, names).sqrt()
    return spread / skill


# ---------------------------------------------------------------- deterministic skill

def rmse(prediction: Tensor, y: Tensor, *, weights: Tensor | None = None, dim: Dim = None,
         names: Sequence[str] | None = None) -> Tensor:
    """Root (weighted) mean squared error over ``dim`` (WeatherBench, Rasp et al. 2020 eq. 1)."""
    check_same_shape(prediction, y, "prediction", "y")
    check_not_nan(prediction=prediction, y=y)
    return weighted_mean((prediction - y) ** 2, weights, dim, names).sqrt()


def acc(prediction: Tensor, y: Tensor, climatology: Tensor | None = None, *,
        weights: Tensor | None = None, dim: Dim = None, names: Sequence[str] | None = None,
        centered: bool = False) -> Tensor:
    r"""Anomaly correlation coefficient (Rasp et al. 2020, eq. 2):
    :math:`\sum w f' o' / \sqrt{\sum w f'^2 \sum w o'^2}` over ``dim``, anomalies with respect to
    ``climatology`` (broadcastable to ``y``; zero if None). ``centered=True`` subtracts the
    weighted mean anomaly first (a Pearson correlation)."""
    check_same_shape(prediction, y, "prediction", "y")
    check_not_nan(prediction=prediction, y=y)
    clim = torch.zeros_like(y) if climatology is None else climatology
    f, o = prediction - clim, y - clim
    if centered:
        f = f - weighted_mean(f, weights, dim, names).reshape(_keep_shape(f, dim, names))
        o = o - weighted_mean(o, weights, dim, names).reshape(_keep_shape(o, dim, names))
    num = weighted_mean(f * o, weights, dim, names)
    den = (weighted_mean(f * f, weights, dim, names) * weighted_mean(o * o, weights, dim, names)).sqrt()
    return num / den


def _keep_shape(x: Tensor, dim: Dim, names: Sequence[str] | None) -> tuple[int, ...]:
    dims = resolve_dims(dim, x.ndim, names)
    return tuple(1 if i in dims else s for i, s in enumerate(x.shape))
