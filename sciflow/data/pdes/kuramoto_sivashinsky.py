"""Kuramoto–Sivashinsky equation ``u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0`` (periodic).

Fourier pseudo-spectral, 2/3-rule dealiasing of ``u^2``, ETDRK4 in time with
``L = beta k^2 - gamma k^4`` (Kassam & Trefethen 2005, sec. 6). Regimes of the causal-PINN paper
(Wang, Sankaran & Perdikaris 2022, sec. 5.3; domains and initial states as in the official
code's ``KS/regular_KS.py`` and ``KS/chaotic_KS.py``), ``t in [0, 1]``:

* ``"regular"``: ``alpha = 5, beta = 0.5, gamma = 0.005`` on ``x in [-1, 1]`` with
  ``u0 = -sin(pi x)``;
* ``"chaotic"``: ``alpha = 100/16, beta = 100/16^2, gamma = 100/16^4`` on ``x in [0, 2 pi]`` with
  ``u0 = cos(x)(1 + sin(x))`` — exactly the classic
  ``v_s + v v_y + v_yy + v_yyyy = 0`` on ``y in [0, 32 pi]``, ``s in [0, 100]`` under
  ``y = 16 x``, ``s = 100 t`` (``u = v``), with the classic initial state ``cos(y/16)(1 + sin(y/16))``
  of Kassam & Trefethen (2005).

The mean ``∫ u dx`` is conserved exactly (the ``k = 0`` mode has ``L = N = 0``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from sciflow.data.initial_conditions import gaussian_random_field
from sciflow.data.pdes._dataset import check_positive, trajectory_dataset
from sciflow.data.pdes._spectral import dealias_mask, integrate_etdrk4, wavenumbers

REGIMES: dict[str, dict[str, float]] = {
    "regular": {"alpha": 5.0, "beta": 0.5, "gamma": 0.005},
    "chaotic": {"alpha": 100 / 16, "beta": 100 / 16**2, "gamma": 100 / 16**4},
}


def solve(u0: Tensor, *, t: Sequence[float] | Tensor, alpha: float, beta: float, gamma: float,
          length: float = 2 * math.pi, dt: float = 1e-4,
          progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Integrate ``u0 (batch, nx)``; returns ``(batch, time, nx)``."""
    if u0.ndim != 2:
        raise ValueError(f"kuramoto_sivashinsky.solve: u0 must be (batch, nx), got shape {tuple(u0.shape)}")
    if not torch.isfinite(u0).all():
        raise ValueError("kuramoto_sivashinsky.solve: u0 contains NaN/inf")
    # gamma u_xxxx is the dissipation that makes KS well posed (gamma < 0: exponential blow-up)
    check_positive("kuramoto_sivashinsky.solve: gamma", gamma)
    check_positive("kuramoto_sivashinsky.solve: length", length)
    nx = u0.shape[-1]
    k = wavenumbers(nx, length, real=True, device=u0.device)
    lin = beta * k**2 - gamma * k**4
    coef = (-0.5j * alpha * k) * dealias_mask(nx, real=True, device=u0.device)

    def nonlinear(v: Tensor, _t: float) -> Tensor:
        u = torch.fft.irfft(v, n=nx)
        return coef * torch.fft.rfft(u * u)

    t = torch.as_tensor(t, dtype=torch.float64)
    cb = None if progress is None else (lambda i: progress(i, len(t) - 1))
    v = integrate_etdrk4(torch.fft.rfft(u0.to(torch.float64)), lin, nonlinear, t, dt, callback=cb)
    return torch.fft.irfft(v, n=nx).transpose(0, 1).contiguous()


def generate(n: int = 1, seed: int = 0, *, regime: str = "chaotic", nx: int = 512, nt: int = 251,
             t_final: float = 1.0, dt: float = 1e-4, initial_condition: str = "benchmark",
             device: str | torch.device = "cpu",
             progress: Callable[[int, int], None] | None = None):
    """KS trajectories on ``x = 2 pi j / nx``. ``initial_condition``: ``"benchmark"``
    (``cos x (1 + sin x)``) or ``"grf"`` (periodic GRF, ``alpha = 2, tau = 1``, unit max)."""
    if regime not in REGIMES:
        raise ValueError(f"kuramoto_sivashinsky.generate: unknown regime {regime!r} (expected {sorted(REGIMES)})")
    if n < 1:
        raise ValueError(f"kuramoto_sivashinsky.generate: n must be >= 1, got {n}")
    p = REGIMES[regime]
    length = 2 * math.pi
    x = length * torch.arange(nx, dtype=torch.float64) / nx
    if initial_condition == "benchmark":
        u0 = (torch.cos(x) * (1 + torch.sin(x))).expand(n, -1).clone()
    elif initial_condition == "grf":
        g = torch.Generator().manual_seed(int(seed))
        u0 = gaussian_random_field(n, nx, length=length, alpha=2.0, tau=1.0, generator=g)
        u0 = u0 / u0.abs().amax(-1, keepdim=True)
    else:
        raise ValueError(f"kuramoto_sivashinsky.generate: unknown initial_condition {initial_condition!r}")
    t = torch.linspace(0.0, t_final, nt, dtype=torch.float64)
    u = solve(u0.to(device), t=t, dt=dt, length=length, **p, progress=progress)
    return trajectory_dataset(
        {"u": (("sample", "time", "x"), u)}, {"time": t, "x": x},
        equation="u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0, x in [0, 2 pi) periodic",
        parameters={**p, "regime": regime, "dt": dt, "initial_condition": initial_condition},
        generator="sciflow.data.pdes.kuramoto_sivashinsky.generate", seed=seed)
