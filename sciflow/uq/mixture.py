"""An equal-weight mixture of predictors: their predictive draws pooled.

MultiSWAG (Wilson & Izmailov, NeurIPS 2020, "Bayesian deep learning and a probabilistic
perspective of generalization", Sec. 4) is the mixture of SWAG posteriors around independently
trained networks — a deep ensemble whose members each carry their basin's spread:
``MixturePredictor([SWAG(m).fit(...) for m in ensemble.members])``. The same pools several HMC
runs, several Laplace approximations, or methods of different kinds.

Where every component is Gaussian (a ``variance``: Laplace, Gaussian heads) the mixture is a
Gaussian mixture and is returned exactly: mean ``μ̄ = mean_k μ_k``, variance by the law of total
variance ``mean_k(σ_k² + μ_k²) − μ̄²``, and the central interval from the mixture's own quantiles
(bisection on its CDF ``mean_k Φ((y − μ_k)/σ_k)``), not from a moment-matched Gaussian, which
misplaces the interval of a bimodal mixture. A mixture of linearised Laplace approximations around
the members of a deep ensemble is the "mixture of Laplace approximations" of Eschenhagen et al.
(2021, "Mixtures of Laplace approximations for improved post-hoc uncertainty in deep learning",
NeurIPS Bayesian Deep Learning workshop), what ``sciflow evaluate --uq laplace`` gives on an
ensemble run.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from sciflow.uq.base import Predictor, check_alpha
from sciflow.uq.prediction import Prediction

__all__ = ["MixturePredictor", "gaussian_mixture_quantile"]


class MixturePredictor(Predictor):
    """Each component predicts; their ``samples`` are pooled with equal weight: each contributes as
    many draws as the one with the fewest (its first ones). Gaussian components (all with a
    ``variance``): the exact Gaussian-mixture mean, variance and central interval (module
    docstring), with the pooled draws when every component gives some. Otherwise every component
    must give draws, and the interval is the pooled draws' empirical one at ``alpha``."""

    def __init__(self, components: Sequence[Predictor], alpha: float = 0.1) -> None:
        components = list(components)
        if len(components) < 2:
            raise ValueError(f"a mixture needs >= 2 predictors, got {len(components)}")
        for c in components:
            if not isinstance(c, Predictor):
                raise TypeError(f"mixture components must be Predictors, got {type(c).__name__}")
        self.components, self.alpha = components, check_alpha(alpha)

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        preds = [c.predict(batch, generator=generator) for c in self.components]
        if all(p.variance is not None for p in preds):
            return self._gaussian_mixture(preds)
        for i, p in enumerate(preds):
            if p.samples is None:
                raise ValueError(f"mixture component {i} ({type(self.components[i]).__name__}) gave no predictive "
                                 f"draws; every component must return samples")
        return Prediction.from_samples(_pooled(preds), self.alpha)

    def _gaussian_mixture(self, preds: list[Prediction]) -> Prediction:
        mu = torch.stack([p.mean for p in preds])
        var = torch.stack([p.variance for p in preds]).clamp_min(0)
        mean = mu.mean(0)
        total = ((var + mu**2).mean(0) - mean**2).clamp_min(0)
        sd = var.sqrt()
        lower = gaussian_mixture_quantile(mu, sd, self.alpha / 2)
        upper = gaussian_mixture_quantile(mu, sd, 1 - self.alpha / 2)
        samples = _pooled(preds) if all(p.samples is not None for p in preds) else None
        return Prediction(mean=mean, lower=lower, upper=upper, samples=samples, variance=total, alpha=self.alpha)


def _pooled(preds: list[Prediction]) -> Tensor:
    """The components' draws in equal shares: the first ``n`` of each, ``n`` the fewest any gave."""
    n = min(p.samples.shape[0] for p in preds)
    return torch.cat([p.samples[:n] for p in preds])


def gaussian_mixture_quantile(means: Tensor, stds: Tensor, q: float, iters: int = 64) -> Tensor:
    """The ``q``-quantile of the equal-weight mixture of ``N(means[k], stds[k]²)``, elementwise over
    the trailing axes (``means``, ``stds``: ``(K, *event)``).

    Bisection on the mixture CDF ``F(y) = mean_k Φ((y − μ_k)/σ_k)``, which is increasing, between the
    smallest and the largest of the components' own ``q``-quantiles (``F`` is at most ``q`` at the
    first and at least ``q`` at the second), in float64: ``iters`` halvings of that bracket. A
    component with ``σ_k = 0`` is a point mass (its CDF a step at ``μ_k``).
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if means.shape != stds.shape:
        raise ValueError(f"means {tuple(means.shape)} and stds {tuple(stds.shape)} must have one shape (K, *event)")
    m, s = means.double(), stds.double().clamp_min(0)
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q, dtype=torch.float64)).item()
    own = m + z * s
    lo, hi = own.min(0).values, own.max(0).values
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        # a point mass (σ = 0) counts as 1 at and above μ, 0 below
        cdf = torch.where(s > 0, torch.special.ndtr((mid - m) / s.clamp_min(torch.finfo(m.dtype).tiny)),
                          (mid >= m).to(m.dtype)).mean(0)
        below = cdf < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).to(means.dtype)
