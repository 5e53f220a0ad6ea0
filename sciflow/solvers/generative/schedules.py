"""Noise schedules of diffusion models: ``x_t = α_t x_0 + σ_t ε``, ``t ∈ [0, 1]``.

Variance-preserving (VP, ``α_t² + σ_t² = 1``) schedules are given by ``ᾱ(t) = α_t²``:

* :class:`LinearVP` — continuous DDPM schedule (Ho et al. 2020; Song et al. 2021, "Score-based
  generative modeling through SDEs", eq. 33): ``β(t) = β_min + t (β_max - β_min)``,
  ``log ᾱ(t) = -(β_min t + (β_max - β_min) t² / 2)``.
* :class:`CosineVP` — Nichol & Dhariwal 2021, eq. 17:
  ``ᾱ(t) = cos²(π/2 (t + s)/(1 + s)) / cos²(π/2 s/(1 + s))``.
* :class:`SigmoidVP` — Chen 2023, "On the importance of noise scheduling for diffusion models",
  Alg. 1: ``ᾱ(t) = (v_end - sigmoid((t (end - start) + start)/τ)) / (v_end - v_start)``.

Variance-exploding: :class:`VE` — ``α_t = 1``, ``σ_t = σ_min (σ_max/σ_min)^t`` (Song et al. 2021, eq. 31).

Every schedule also gives the coefficients of the forward SDE ``dx = f(t) x dt + g(t) dW``
(``f = d log α/dt``, ``g² = dσ²/dt - 2 f σ²``) used by the probability-flow ODE, the
log-SNR ``λ_t = log(α_t/σ_t)`` used by DPM-Solver, and ``t_max``: the largest usable time
(``α > 0``; Lu et al. 2022 use 0.9946 for the cosine schedule).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class NoiseSchedule:
    """Interface. ``t`` is a tensor of any shape; results have its shape."""

    t_max: float = 1.0
    variance_preserving: bool = True

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def log_snr(self, t: Tensor) -> Tensor:
        """``λ_t = log(α_t / σ_t)``; strictly decreasing in ``t``."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def f(self, t: Tensor) -> Tensor:
        """Drift coefficient ``d log α_t / dt`` of the forward SDE."""
        raise NotImplementedError

    def g2(self, t: Tensor) -> Tensor:
        """Squared diffusion ``g(t)² = dσ²/dt - 2 f σ²`` of the forward SDE."""
        raise NotImplementedError

    def coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(α_t, σ_t)`` for ``t`` of shape ``(batch,)``, evaluated in float64 and returned in
        ``like``'s dtype, shaped ``(batch, 1, …)`` to broadcast over ``like``'s trailing axes."""
        shape = (-1,) + (1,) * (like.ndim - 1)
        tt = t.to(torch.float64)
        return (self.alpha(tt).to(like.dtype).reshape(shape), self.sigma(tt).to(like.dtype).reshape(shape))

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = α_t x_0 + σ_t ε`` with ``t`` of shape ``(batch,)`` broadcast over ``x0``'s trailing axes."""
        a, s = self.coefficients(t, x0)
        return a * x0 + s * noise

    def prior_std(self) -> float:
        """Standard deviation of the (approximate) prior ``x_{t_max} ~ N(0, σ² I)`` samplers start from."""
        return 1.0


class _VP(NoiseSchedule):
    """VP schedules from ``log ᾱ(t)`` and its derivative."""

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(self.log_alpha_bar(t)))

    def log_snr(self, t: Tensor) -> Tensor:
        la = self.log_alpha_bar(t)
        return 0.5 * (la - torch.log(-torch.expm1(la)))

    def f(self, t: Tensor) -> Tensor:
        return 0.5 * self.d_log_alpha_bar(t)

    def g2(self, t: Tensor) -> Tensor:
        return -self.d_log_alpha_bar(t)  # = β(t) for VP


class LinearVP(_VP):
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(f"LinearVP needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def log_alpha_bar(self, t):
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t)

    def d_log_alpha_bar(self, t):
        return -(self.beta_min + (self.beta_max - self.beta_min) * t)

    def __repr__(self):
        return f"LinearVP(beta_min={self.beta_min}, beta_max={self.beta_max})"


class CosineVP(_VP):
    def __init__(self, s: float = 0.008, t_max: float = 0.9946) -> None:
        if not (s >= 0 and 0 < t_max < 1):
            raise ValueError(f"CosineVP needs s >= 0 and 0 < t_max < 1 (alpha(1) = 0), got s={s}, t_max={t_max}")
        self.s, self.t_max = float(s), float(t_max)
        self._log_c0 = 2 * math.log(math.cos(0.5 * math.pi * self.s / (1 + self.s)))

    def _u(self, t):
        return 0.5 * math.pi * (t + self.s) / (1 + self.s)

    def log_alpha_bar(self, t):
        # <= 0 exactly: at t = 0 the two logs cancel only to rounding (+2.7e-20), and sigma(0) =
        # sqrt(-expm1(+2.7e-20)) would be NaN
        return (2 * torch.log(torch.cos(self._u(t))) - self._log_c0).clamp(max=0.0)

    def d_log_alpha_bar(self, t):
        return -torch.tan(self._u(t)) * (math.pi / (1 + self.s))

    def __repr__(self):
        return f"CosineVP(s={self.s}, t_max={self.t_max})"


class SigmoidVP(_VP):
    def __init__(self, start: float = -3.0, end: float = 3.0, tau: float = 1.0, t_max: float = 0.995) -> None:
        if not (end > start and tau > 0 and 0 < t_max < 1):
            raise ValueError(f"SigmoidVP needs end > start, tau > 0, 0 < t_max < 1; got {start}, {end}, {tau}, {t_max}")
        self.start, self.end, self.tau, self.t_max = float(start), float(end), float(tau), float(t_max)
        sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        self._v_start, self._v_end = sig(start / tau), sig(end / tau)

    def _z(self, t):
        return (t * (self.end - self.start) + self.start) / self.tau

    def log_alpha_bar(self, t):
        return torch.log((self._v_end - torch.sigmoid(self._z(t))) / (self._v_end - self._v_start))

    def d_log_alpha_bar(self, t):
        s = torch.sigmoid(self._z(t))
        return -s * (1 - s) * ((self.end - self.start) / self.tau) / (self._v_end - s)

    def __repr__(self):
        return f"SigmoidVP(start={self.start}, end={self.end}, tau={self.tau}, t_max={self.t_max})"


class VE(NoiseSchedule):
    variance_preserving = False

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * torch.exp(self._log_ratio * t)

    def log_snr(self, t):
        return -(math.log(self.sigma_min) + self._log_ratio * t)

    def f(self, t):
        return torch.zeros_like(t)

    def g2(self, t):
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def prior_std(self) -> float:
        return self.sigma_max

    def __repr__(self):
        return f"VE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
