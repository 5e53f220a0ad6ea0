"""Random initial states shared by the 1-D generators.

All functions take the grid ``x`` (``(nx,)`` tensor) and a ``torch.Generator`` and return
``(n, nx)`` float64 tensors; nothing touches global random state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.data.pdes._spectral import sample_grf


def _check_grid(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 1 or x.numel() < 2:
        raise ValueError(f"{name}: grid x must be 1-D with >= 2 points, got shape {tuple(x.shape)}")
    return x


def gaussian_random_field(n: int, nx: int, *, length: float, alpha: float = 2.0, tau: float = 5.0,
                          sigma: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Periodic GRF with covariance ``sigma^2 (-d_xx + tau^2)^(-alpha)`` on ``nx`` points."""
    return sample_grf(n, (nx,), alpha=alpha, tau=tau, sigma=sigma, length=length, generator=generator)


def sine_superposition(n: int, x: Tensor, *, length: float, n_waves: int = 2, k_max: int = 8,
                       generator: torch.Generator | None = None) -> Tensor:
    """PDEBench-style ``u0 = sum_i A_i sin(2 pi k_i x / L + phi_i)`` (Takamoto et al. 2022, eq. 7).

    ``k_i`` uniform in ``{1..k_max}``, ``A_i ~ U(0, 1)``, ``phi_i ~ U(0, 2 pi)``. (PDEBench's random
    absolute value / window post-processing is not applied.)
    """
    x = _check_grid(x, "sine_superposition")
    k = torch.randint(1, k_max + 1, (n, n_waves, 1), generator=generator).to(torch.float64)
    a = torch.rand((n, n_waves, 1), generator=generator, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand((n, n_waves, 1), generator=generator, dtype=torch.float64)
    return (a * torch.sin(2 * math.pi * k * x / length + phi)).sum(1)


def gaussian_bumps(n: int, x: Tensor, *, n_bumps: int = 2, amplitude: tuple[float, float] = (-1.0, 1.0),
                   width: tuple[float, float] = (0.03, 0.08), zero_boundary: bool = False,
                   generator: torch.Generator | None = None) -> Tensor:
    """Sum of ``n_bumps`` Gaussians ``a exp(-(x - c)^2 / (2 w^2))`` with random ``a, c, w``.

    ``a ~ U(amplitude)``, ``c`` uniform in the middle half of ``[x[0], x[-1]]``, ``w`` uniform in
    ``width`` (fractions of the span), so tails at the ends are below ``exp(-0.25^2/(2 0.08^2))
    ~ 8e-3`` of the peak. ``zero_boundary=True`` (Dirichlet settings) also subtracts the linear
    interpolant of the end values, making ``u(x[0]) = u(x[-1]) = 0`` exactly.
    """
    x = _check_grid(x, "gaussian_bumps")
    lo, hi = float(x[0]), float(x[-1])
    span = hi - lo
    u = lambda *s: torch.rand(s, generator=generator, dtype=torch.float64)  # noqa: E731
    a = amplitude[0] + (amplitude[1] - amplitude[0]) * u(n, n_bumps, 1)
    c = lo + span * (0.25 + 0.5 * u(n, n_bumps, 1))
    w = span * (width[0] + (width[1] - width[0]) * u(n, n_bumps, 1))
    out = (a * torch.exp(-((x - c) ** 2) / (2 * w**2))).sum(1)
    if zero_boundary:
        s = (x - lo) / span
        out = out - out[:, :1] * (1 - s) - out[:, -1:] * s
    return out
