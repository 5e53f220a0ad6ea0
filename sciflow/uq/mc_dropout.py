r"""Monte-Carlo dropout (Gal & Ghahramani 2016): dropout kept active at prediction time.

Each stochastic forward pass samples a dropout mask, i.e. a draw from the approximate posterior
:math:`q(W)`; :math:`N` passes give predictive samples whose mean and variance approximate the
Bayesian predictive (eq. 8–9 of the paper; the homoscedastic :math:`\tau^{-1}` term is the optional
``observation_noise`` variance). Only dropout modules are switched to training mode — batch-norm
statistics and everything else stay in evaluation mode.

The :math:`N` passes run as one batched call: the batch is repeated :math:`N` times along its
batch axis (``batch.index``), so every row gets an independent mask and the cost is one forward
of size :math:`N B` (``chunk_size`` bounds the memory).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from sciflow.models.base import SciflowModel
from sciflow.uq.base import Predictor, check_alpha, evaluating
from sciflow.uq.heads import GaussianPredictive
from sciflow.uq.prediction import Prediction

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of ``model`` (empty if it has none)."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT)]


class MCDropout(Predictor):
    """MC-dropout predictive from a model with dropout layers.

    ``n_passes`` stochastic passes; ``chunk_size`` passes per batched call (default all);
    Gaussian-head models (:class:`~sciflow.uq.heads.GaussianPredictive`) contribute their
    variance to the mixture moments and one Gaussian draw per pass to the samples.
    """

    def __init__(self, model: SciflowModel, n_passes: int = 50, alpha: float = 0.1, *,
                 chunk_size: int | None = None, observation_noise: float = 0.0) -> None:
        if not isinstance(model, SciflowModel):
            raise TypeError(f"MCDropout wraps a SciflowModel, got {type(model).__name__}")
        if not dropout_modules(model):
            raise ValueError(f"MCDropout: {type(model).__name__} has no dropout layers "
                             "(build it with dropout > 0)")
        if n_passes < 2:
            raise ValueError(f"n_passes must be >= 2, got {n_passes}")
        if observation_noise < 0:
            raise ValueError(f"observation_noise must be >= 0, got {observation_noise}")
        self.model, self.n_passes, self.alpha = model, n_passes, check_alpha(alpha)
        self.chunk_size = chunk_size or n_passes
        self.observation_noise = observation_noise

    def _passes(self, batch: Any, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        B = batch.batch_size
        big = batch.index(torch.arange(B).repeat(n))
        if isinstance(self.model, GaussianPredictive):
            mean, var = self.model.predict_mean_var(big)
            return mean.reshape(n, B, *mean.shape[1:]), var.reshape(n, B, *var.shape[1:])
        out = self.model.sample(big, 1, generator=generator)[0]
        return out.reshape(n, B, *out.shape[1:]), None

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        with evaluating(self.model):
            for m in dropout_modules(self.model):   # dropout on, everything else in eval mode
                m.train()
            means, vars_ = [], []
            for start in range(0, self.n_passes, self.chunk_size):
                mu, var = self._passes(batch, min(self.chunk_size, self.n_passes - start), generator)
                means.append(mu)
                vars_.append(var)
        mu = torch.cat(means)
        mean = mu.mean(0)
        if vars_[0] is None:
            var = mu.var(0) + self.observation_noise
            samples = mu
            if self.observation_noise > 0:
                samples = mu + math.sqrt(self.observation_noise) * _randn_like(mu, generator)
        else:
            v = torch.cat(vars_) + self.observation_noise
            var = (v + mu**2).mean(0) - mean**2
            samples = mu + v.sqrt() * _randn_like(mu, generator)
        return Prediction.from_samples(samples, self.alpha, variance=var, mean=mean)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    dev = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)
