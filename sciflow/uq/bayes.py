r"""Explicit priors and likelihoods for Bayesian inference over network weights (used by :mod:`hmc`).

The posterior is :math:`\log\pi(\theta) = \log p(\theta) + \sum_i \log p(y_i\mid f_\theta(x_i))`;
priors act on the flat weight vector ``theta`` ``(chains, D)`` and likelihoods on model predictions
with any leading axes (``(chains, *event)``) against the truth ``(*event)``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Callable

import torch
from torch import Tensor


class Prior(abc.ABC):
    """Log density of the flat weight vector (up to a constant)."""

    @abc.abstractmethod
    def log_prob(self, theta: Tensor) -> Tensor:
        """``theta``: ``(..., D)`` -> ``(...)``."""


class GaussianPrior(Prior):
    r"""Isotropic (or per-weight, ``scale`` of shape ``(D,)``) prior :math:`\theta\sim\mathcal N(0, s^2)`;
    the normalising constant is included."""

    def __init__(self, scale: float | Tensor = 1.0) -> None:
        s = torch.as_tensor(scale, dtype=torch.float64)
        if bool((s <= 0).any()):
            raise ValueError(f"prior scale must be positive, got {scale}")
        self.scale = s

    def log_prob(self, theta: Tensor) -> Tensor:
        s = self.scale.to(theta.dtype).to(theta.device)
        if s.ndim == 1 and s.shape[0] != theta.shape[-1]:
            raise ValueError(f"prior scale has {s.shape[0]} entries, theta has {theta.shape[-1]}")
        return (-0.5 * (theta / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)


class Likelihood(abc.ABC):
    """Observation model :math:`p(y\\mid f)`."""

    @abc.abstractmethod
    def log_prob(self, prediction: Tensor, y: Tensor, observed: Tensor | None = None) -> Tensor:
        """``prediction``: ``(..., *y.shape)``; summed over the ``y`` axes -> ``(...)``; only the
        ``observed`` entries of ``y`` (bool, ``y``'s shape; ``None``: all) count."""

    def sample(self, prediction: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw of ``y`` given ``prediction`` (the aleatoric part of the predictive)."""
        return prediction


class GaussianLikelihood(Likelihood):
    r""":math:`y = f_\theta(x) + \varepsilon`, :math:`\varepsilon\sim\mathcal N(0, \sigma^2)` with a fixed,
    known ``noise_std`` (scalar or broadcastable to ``y``)."""

    def __init__(self, noise_std: float | Tensor) -> None:
        s = torch.as_tensor(noise_std, dtype=torch.float64)
        if bool((s <= 0).any()):
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        self.noise_std = s

    def log_prob(self, prediction: Tensor, y: Tensor, observed: Tensor | None = None) -> Tensor:
        if tuple(prediction.shape[prediction.ndim - y.ndim:]) != tuple(y.shape):
            raise ValueError(f"prediction shape {tuple(prediction.shape)} does not end with y's {tuple(y.shape)}")
        s = self.noise_std.to(prediction.dtype).to(prediction.device)
        event = tuple(range(prediction.ndim - y.ndim, prediction.ndim))
        if observed is not None:  # a missing value (any fill, NaN too) adds nothing, nor its gradient
            if tuple(observed.shape) != tuple(y.shape):
                raise ValueError(f"observed has shape {tuple(observed.shape)}, y {tuple(y.shape)}")
            y = torch.where(observed, y, prediction.detach())
        lp = -0.5 * ((y - prediction) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
        lp = torch.broadcast_to(lp, prediction.shape)
        if observed is not None:
            lp = lp.masked_fill(~observed, 0.0)
        return lp.sum(dim=event) if event else lp

    def sample(self, prediction: Tensor, generator: torch.Generator | None = None) -> Tensor:
        s = self.noise_std.to(prediction.dtype).to(prediction.device)
        dev = prediction.device if generator is None else generator.device
        eps = torch.randn(prediction.shape, generator=generator, dtype=prediction.dtype, device=dev)
        return prediction + s * eps.to(prediction.device)


class LossLikelihood:
    r"""Generalised (Gibbs) likelihood from the model's own objective:
    :math:`\log p(D\mid\theta) = -\,n\,\mathcal L_\theta(\text{batch}) / T` with ``n`` the number of
    data points the mean loss averages and temperature ``T`` (Bissiri et al. 2016). Equals the
    exact log-likelihood, up to a constant, when ``loss`` is a mean NLL (e.g. a Gaussian head with
    ``beta=0``). Used by :class:`~sciflow.uq.hmc.HMC` through ``model.loss`` instead of
    ``model.sample``."""

    def __init__(self, n_data: Callable[[Any], int] | int, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.n_data, self.temperature = n_data, temperature

    def scale(self, batch: Any) -> float:
        n = self.n_data(batch) if callable(self.n_data) else self.n_data
        return float(n) / self.temperature
