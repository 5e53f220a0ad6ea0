"""The common output of every UQ method: a predictive distribution summarised as a tensor bundle."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Prediction:
    """A predictive distribution over a tensor-valued target.

    Shapes (``*event`` is the model's prediction shape, e.g. ``(batch, time, x)``):

    - ``mean``: ``(*event)`` point prediction (predictive mean).
    - ``lower``, ``upper``: ``(*event)`` bounds of the central ``1 - alpha`` interval
      (``None`` when the method has not been asked for intervals).
    - ``samples``: ``(n_samples, *event)`` predictive draws, or ``None`` when the
      distribution is parametric (e.g. a Gaussian mixture summarised by moments).
    - ``variance``: ``(*event)`` predictive variance when the method knows it in closed form
      (Gaussian heads, ensemble mixtures), else ``None`` (then :attr:`std` uses the samples).
    - ``alpha``: the miscoverage level the interval was built for.

    Frozen and validated on construction: every tensor must share ``mean``'s event shape and
    be finite-or-infinite, never NaN.
    """

    mean: Tensor
    lower: Tensor | None = None
    upper: Tensor | None = None
    samples: Tensor | None = None
    variance: Tensor | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.mean.shape)
        for name in ("lower", "upper", "variance"):
            v = getattr(self, name)
            if v is not None and tuple(v.shape) != shape:
                raise ValueError(f"Prediction.{name} has shape {tuple(v.shape)}, mean has {shape}")
        if self.samples is not None and tuple(self.samples.shape[1:]) != shape:
            raise ValueError(
                f"Prediction.samples must be (n_samples, *{shape}), got {tuple(self.samples.shape)}"
            )
        if (self.lower is None) != (self.upper is None):
            raise ValueError("Prediction: give both lower and upper, or neither")
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            raise ValueError(f"Prediction.alpha must be in (0, 1), got {self.alpha}")
        # the documented contract (never NaN, variance >= 0), in one host sync. lower > upper is
        # allowed: conformalised quantile regression yields empty intervals when its quantile is < 0
        parts = [(n, getattr(self, n)) for n in ("mean", "lower", "upper", "samples", "variance")]
        parts = [(n, v) for n, v in parts if v is not None]
        checks = [torch.isnan(v).any() for _, v in parts]
        if self.variance is not None:
            checks.append((self.variance < 0).any())
        flags = torch.stack(checks).tolist()
        if any(flags):
            for (name, _), b in zip(parts, flags):
                if b:
                    raise ValueError(f"Prediction.{name} contains NaN (the model produced NaN predictions)")
            raise ValueError("Prediction.variance is negative somewhere")

    @property
    def std(self) -> Tensor:
        """Predictive standard deviation: closed form if known, else the (unbiased) sample std."""
        if self.variance is not None:
            return self.variance.clamp_min(0).sqrt()
        if self.samples is not None and self.samples.shape[0] > 1:
            return self.samples.std(dim=0)
        raise ValueError("Prediction has neither a variance nor >= 2 samples: std undefined")

    @property
    def interval_std(self) -> Tensor:
        """Standard deviation of the Gaussian whose central ``1 - alpha`` interval is
        ``[lower, upper]``: ``(upper - lower) / (2 z_{1 - alpha/2})`` — a density for predictors
        that give only intervals (split conformal around a point forecast), e.g. for a Gaussian NLL."""
        if self.lower is None or self.alpha is None:
            raise ValueError("Prediction.interval_std needs lower/upper and the alpha they were built for")
        z = statistics.NormalDist().inv_cdf(1.0 - self.alpha / 2)
        return (self.upper - self.lower) / (2.0 * z)

    @property
    def has_interval(self) -> bool:
        return self.lower is not None

    def to(self, device: torch.device | str) -> "Prediction":
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Prediction(mv(self.mean), mv(self.lower), mv(self.upper), mv(self.samples),
                          mv(self.variance), self.alpha)

    @classmethod
    def from_samples(cls, samples: Tensor, alpha: float = 0.1,
                     variance: Tensor | None = None, mean: Tensor | None = None) -> "Prediction":
        """Summarise draws ``(n_samples, *event)``: sample mean and the empirical central
        ``1 - alpha`` interval (quantiles ``alpha/2`` and ``1 - alpha/2``, linear interpolation)."""
        if samples.ndim < 1 or samples.shape[0] < 1:
            raise ValueError(f"samples must be (n_samples, *event) with n_samples >= 1, got {tuple(samples.shape)}")
        if torch.isnan(samples).any():
            raise ValueError("Prediction.from_samples: samples contain NaN")
        lo, hi = _quantiles0(samples, (alpha / 2, 1 - alpha / 2))
        return cls(mean=samples.mean(0) if mean is None else mean, lower=lo, upper=hi,
                   samples=samples, variance=variance, alpha=alpha)

    @classmethod
    def from_gaussian(cls, mean: Tensor, variance: Tensor, alpha: float = 0.1,
                      samples: Tensor | None = None) -> "Prediction":
        """A Gaussian predictive ``N(mean, variance)`` with its exact central interval."""
        z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - alpha / 2, dtype=torch.float64)).item()
        s = variance.clamp_min(0).sqrt()
        return cls(mean=mean, lower=mean - z * s, upper=mean + z * s, samples=samples,
                   variance=variance, alpha=alpha)


def _quantiles0(x: Tensor, qs: tuple[float, ...]) -> list[Tensor]:
    """Quantiles along axis 0 with linear interpolation (``torch.quantile``'s default rule) via
    one sort, without ``torch.quantile``'s 16M-element input limit (ERA5-sized ensembles)."""
    n = x.shape[0]
    xs = torch.sort(x, dim=0).values
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        w = pos - lo
        out.append(xs[lo] * (1 - w) + xs[hi] * w)
    return out
