"""Allen–Cahn equation ``u_t = eps u_xx + a (u - u^3)`` on a periodic interval.

The PINN benchmark form (Raissi et al. 2019; Wang, Sankaran & Perdikaris 2022, sec. 5.2):
``eps = 1e-4``, ``a = 5``, ``x in [-1, 1]`` periodic, ``u(x, 0) = x^2 cos(pi x)``, ``t in [0, 1]``.
Fourier pseudo-spectral in space, ETDRK4 in time with ``L = -eps k^2 + a`` (the linear part of the
reaction joins the stiff operator) and ``N(u) = -a u^3`` (Kassam & Trefethen 2005, sec. 5 solve the
same equation with Chebyshev points). The cubic is evaluated without dealiasing: at the benchmark
resolution (512 modes) the solution is resolved to round-off and truncation would only add error.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from sciflow.data.initial_conditions import gaussian_random_field
from sciflow.data.pdes._dataset import check_positive, trajectory_dataset
from sciflow.data.pdes._spectral import integrate_etdrk4, wavenumbers


def solve(u0: Tensor, *, t: Sequence[float] | Tensor, eps: float = 1e-4, a: float = 5.0, length: float = 2.0,
          dt: float = 1e-4, progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Integrate ``u0 (batch, nx)`` on a periodic interval of ``length``; returns ``(batch, time, nx)``."""
    if u0.ndim != 2:
        raise ValueError(f"allen_cahn.solve: u0 must be (batch, nx), got shape {tuple(u0.shape)}")
    if not torch.isfinite(u0).all():
        raise ValueError("allen_cahn.solve: u0 contains NaN/inf")
    check_positive("allen_cahn.solve: eps (diffusivity; eps < 0 is ill-posed)", eps, allow_zero=True)
    check_positive("allen_cahn.solve: length", length)
    nx = u0.shape[-1]
    k = wavenumbers(nx, length, real=True, device=u0.device)
    lin = -eps * k**2 + a

    def nonlinear(v: Tensor, _t: float) -> Tensor:
        u = torch.fft.irfft(v, n=nx)
        return -a * torch.fft.rfft(u * u * u)

    t = torch.as_tensor(t, dtype=torch.float64)
    cb = None if progress is None else (lambda i: progress(i, len(t) - 1))
    v = integrate_etdrk4(torch.fft.rfft(u0.to(torch.float64)), lin, nonlinear, t, dt, callback=cb)
    return torch.fft.irfft(v, n=nx).transpose(0, 1).contiguous()


def generate(n: int = 1, seed: int = 0, *, nx: int = 512, nt: int = 201, t_final: float = 1.0, eps: float = 1e-4,
             a: float = 5.0, dt: float = 1e-4, initial_condition: str = "benchmark", grf_alpha: float = 2.0,
             grf_tau: float = 5.0, device: str | torch.device = "cpu",
             progress: Callable[[int, int], None] | None = None):
    """Allen–Cahn trajectories on ``x = -1 + 2 j / nx`` (the ``allen_cahn.mat`` grid).

    ``initial_condition``: ``"benchmark"`` (``x^2 cos(pi x)`` for every sample) or ``"grf"``
    (periodic Gaussian random fields, scaled to max |u0| = 1).
    """
    if n < 1:
        raise ValueError(f"allen_cahn.generate: n must be >= 1, got {n}")
    x = -1.0 + 2.0 * torch.arange(nx, dtype=torch.float64) / nx
    if initial_condition == "benchmark":
        u0 = (x**2 * torch.cos(math.pi * x)).expand(n, -1).clone()
    elif initial_condition == "grf":
        g = torch.Generator().manual_seed(int(seed))
        u0 = gaussian_random_field(n, nx, length=2.0, alpha=grf_alpha, tau=grf_tau, generator=g)
        u0 = u0 / u0.abs().amax(-1, keepdim=True)
    else:
        raise ValueError(f"allen_cahn.generate: unknown initial_condition {initial_condition!r} "
                         "(expected 'benchmark' or 'grf')")
    t = torch.linspace(0.0, t_final, nt, dtype=torch.float64)
    u = solve(u0.to(device), t=t, eps=eps, a=a, dt=dt, progress=progress)
    return trajectory_dataset(
        {"u": (("sample", "time", "x"), u)}, {"time": t, "x": x},
        equation="u_t = eps u_xx + a (u - u^3), x in [-1, 1) periodic",
        parameters={"eps": eps, "a": a, "dt": dt, "initial_condition": initial_condition},
        generator="sciflow.data.pdes.allen_cahn.generate", seed=seed)
