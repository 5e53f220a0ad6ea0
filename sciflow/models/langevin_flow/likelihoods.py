"""Observation models ``p(x_t | latent)``: Poisson counts and Gaussian values.

Both return the elementwise negative log-likelihood (constants included, so values are
comparable across models): Poisson with log-rate ``η`` (expected count per bin ``λ = e^η``),
``-log p(k) = λ - k η + log k!``; Gaussian with mean ``μ`` and standard deviation ``σ``,
``½ ((x-μ)/σ)² + log σ + ½ log 2π``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def poisson_nll(log_rate: Tensor, counts: Tensor) -> Tensor:
    """Elementwise ``-log Poisson(counts; exp(log_rate))``."""
    return log_rate.exp() - counts * log_rate + torch.lgamma(counts + 1.0)


def gaussian_nll(mean: Tensor, log_std: Tensor, x: Tensor) -> Tensor:
    """Elementwise ``-log N(x; mean, exp(log_std)²)``."""
    return 0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 + log_std + 0.5 * math.log(2 * math.pi)


def check_counts(x: Tensor) -> None:
    """Poisson data must be finite, non-negative integers."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError("spike counts contain NaN/inf")
    if bool((x < 0).any()) or not bool((x == x.round()).all()):
        raise ValueError("Poisson likelihood needs non-negative integer counts; got negative or fractional values "
                         "(use likelihood='gaussian' for continuous observations)")
