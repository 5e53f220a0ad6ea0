"""2-D incompressible Navier–Stokes on the torus in vorticity–streamfunction form.

    w_t + u . grad w = nu Lap w - mu w + f(x, y),     u = (psi_y, -psi_x),     -Lap psi = w,

on ``[0, L)^2`` (``x`` is the first spatial axis, ``y`` the second). Pseudo-spectral (``rfft2``)
Fourier–Galerkin with the 2/3 rule: the initial state and forcing are truncated to the retained
square ``|k_x|, |k_y| < N/3`` and every product is masked, so the scheme is an exact Galerkin
truncation (energy and enstrophy are conserved by the discrete advection).

Advection uses Basdevant's (1983) velocity form,
``u . grad w = (d_xx - d_yy)(u v) + d_xy (v^2 - u^2)``, which needs 2 inverse + 2 forward FFTs per
evaluation instead of the 4 + 1 of ``u w_x + v w_y``.

Time stepping (IMEX, second order): Crank–Nicolson for ``nu Lap - mu`` and Adams–Bashforth 2 for
advection + forcing (CNAB2; Peyret 2002, sec. 4.5), started by one Crank–Nicolson–Heun step.
The FNO paper's generator (Li et al. 2021, ``ns_2d.py``) uses Crank–Nicolson with *forward Euler*
advection, which is first order in time; see ``benchmarks/ns_generation.py`` for the comparison.

Settings: the FNO setting (``L = 1``, ``f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y))``, GRF initial
vorticity ``alpha = 2.5, tau = 7``, ``nu in {1e-3, 1e-4, 1e-5}``) and Kolmogorov flow
(``L = 2 pi``, body force ``sin(k_f y) e_x`` i.e. ``f = -k_f cos(k_f y)``, linear drag ``mu``;
Kochkov et al. 2021 use ``k_f = 4, mu = 0.1, nu = 1e-3``).

Shapes: states ``(batch, x, y)``; trajectories ``(batch, time, x, y)``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sciflow.data.pdes._dataset import trajectory_dataset
from sciflow.data.pdes._spectral import sample_grf, steps_per_interval, wavenumbers


class SpectralGrid2D:
    """Wavenumbers, Laplacian symbol and 2/3 mask of an ``n x n`` ``rfft2`` grid on ``[0, L)^2``."""

    def __init__(self, n: int, length: float = 1.0, *, device=None, dtype: torch.dtype = torch.float64) -> None:
        if n < 4 or n % 2:
            raise ValueError(f"SpectralGrid2D: n must be even and >= 4, got {n}")
        self.n, self.length = n, float(length)
        kx = wavenumbers(n, length, device=device, dtype=dtype)[:, None]
        ky = wavenumbers(n, length, real=True, device=device, dtype=dtype)[None, :]
        self.kx, self.ky = kx, ky
        self.k2 = kx**2 + ky**2
        inv = 1.0 / self.k2
        inv[0, 0] = 0.0
        self.inv_k2 = inv  # -Lap^{-1} with zero mean
        ix = torch.fft.fftfreq(n, 1.0 / n, device=device).abs()[:, None]
        iy = torch.fft.rfftfreq(n, 1.0 / n, device=device)[None, :]
        self.mask = ((ix < n / 3) & (iy < n / 3)).to(dtype)
        self.x = self.length * torch.arange(n, device=device, dtype=dtype) / n

    def velocity_hat(self, w_hat: Tensor) -> tuple[Tensor, Tensor]:
        psi = w_hat * self.inv_k2
        return 1j * self.ky * psi, -1j * self.kx * psi


def advection_hat(w_hat: Tensor, grid: SpectralGrid2D) -> Tensor:
    """Fourier coefficients of ``-(u . grad w)``, dealiased (Basdevant form, 4 FFTs)."""
    n = grid.n
    u_hat, v_hat = grid.velocity_hat(w_hat)
    uv = torch.fft.irfft2(torch.stack([u_hat, v_hat]), s=(n, n))
    u, v = uv[0], uv[1]
    prods = torch.fft.rfft2(torch.stack([u * v, v * v - u * u]))
    return grid.mask * ((grid.kx**2 - grid.ky**2) * prods[0] + (grid.kx * grid.ky) * prods[1])


class _CNAB2:
    """Crank–Nicolson / Adams–Bashforth-2 stepper with precomputed Fourier multipliers.

    All multipliers (velocity from vorticity, the Basdevant derivative pair with the 2/3 mask
    folded in, the CN factors) are built once. Real multipliers act on ``view_as_real`` views
    (no complex promotion) and updates are fused (``addcmul_``), so each step is two batched FFT
    calls plus a handful of element-wise kernels, with no host synchronisation.
    """

    def __init__(self, grid: SpectralGrid2D, h: float, nu: float, drag: float, f_hat: Tensor | None,
                 cdtype: torch.dtype) -> None:
        self.n = grid.n
        rdtype = torch.float32 if cdtype == torch.complex64 else torch.float64
        lam = -nu * grid.k2 - drag
        b = h / (1 - 0.5 * h * lam)
        as_r = lambda m: m.to(rdtype).unsqueeze(-1)  # noqa: E731  (n, m, 1) acting on (re, im)
        self.a = as_r((1 + 0.5 * h * lam) / (1 - 0.5 * h * lam))
        self.b, self.b_ab_new, self.b_ab_old = as_r(b), as_r(1.5 * b), as_r(-0.5 * b)
        self.vel = torch.stack([1j * grid.ky * grid.inv_k2, -1j * grid.kx * grid.inv_k2]).to(cdtype).unsqueeze(1)
        self.dxx_yy = as_r(grid.mask * (grid.kx**2 - grid.ky**2))
        self.dxy = as_r(grid.mask * grid.kx * grid.ky)
        self.f_hat = None if f_hat is None else torch.view_as_real(f_hat.to(cdtype).contiguous())

    def rhs(self, w_hat: Tensor) -> Tensor:
        """``view_as_real`` of the Fourier coefficients of ``-(u . grad w) + f`` (dealiased,
        Basdevant form: ``-(d_xx - d_yy)(u v) - d_xy (v^2 - u^2)``)."""
        uv = torch.fft.irfft2(w_hat.unsqueeze(0) * self.vel, s=(self.n, self.n))  # (2, batch, n, n)
        u, v = uv[0], uv[1]
        prods = torch.empty_like(uv)
        torch.mul(u, v, out=prods[0])
        torch.mul(v - u, v + u, out=prods[1])
        p = torch.view_as_real(torch.fft.rfft2(prods))
        r = p[0] * self.dxx_yy
        r.addcmul_(p[1], self.dxy)
        if self.f_hat is not None:
            r.add_(self.f_hat)
        return r

    def start(self, w_hat: Tensor) -> tuple[Tensor, Tensor]:
        """One Crank–Nicolson–Heun step (second order); returns the new state and ``N(w_0)``."""
        w_r = torch.view_as_real(w_hat)
        n0 = self.rhs(w_hat)
        pred = torch.view_as_complex((w_r * self.a).addcmul_(n0, self.b).contiguous())
        n1 = self.rhs(pred)
        new = (w_r * self.a).addcmul_(n0 + n1, 0.5 * self.b)
        return torch.view_as_complex(new), n0

    def step(self, w_hat: Tensor, n_prev: Tensor) -> tuple[Tensor, Tensor]:
        n_cur = self.rhs(w_hat)
        new = torch.view_as_real(w_hat) * self.a
        new.addcmul_(n_cur, self.b_ab_new).addcmul_(n_prev, self.b_ab_old)
        return torch.view_as_complex(new), n_cur


def solve(w0: Tensor, *, t: Sequence[float] | Tensor, nu: float, dt: float, length: float = 1.0,
          forcing: Tensor | None = None, drag: float = 0.0,
          callback: Callable[[int], None] | None = None) -> Tensor:
    """Integrate vorticity ``w0 (batch, n, n)`` and return ``(batch, time, n, n)`` at the times ``t``.

    ``t`` must be a uniform grid (AB2 uses a constant step); the step is the largest
    ``h <= dt`` dividing the save interval. ``forcing``: ``(n, n)`` or ``(batch, n, n)``
    time-independent vorticity source. Works on any device/dtype of ``w0`` (float32 or float64).
    """
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2]:
        raise ValueError(f"navier_stokes.solve: w0 must be (batch, n, n), got shape {tuple(w0.shape)}")
    if not torch.isfinite(w0).all():
        raise ValueError("navier_stokes.solve: w0 contains NaN/inf")
    if nu < 0 or drag < 0:
        raise ValueError(f"navier_stokes.solve: nu and drag must be >= 0, got nu={nu}, drag={drag}")
    tt = torch.as_tensor(np.asarray(t, dtype=np.float64) if not isinstance(t, Tensor) else t,
                         dtype=torch.float64).cpu()
    nsub = steps_per_interval(tt, dt)
    d = torch.diff(tt)
    if len(set(nsub)) > 1 or (d.max() - d.min()) > 1e-9 * d.abs().max():
        raise ValueError("navier_stokes.solve: save times must be uniformly spaced")
    m = nsub[0]
    h = float(d[0]) / m
    grid = SpectralGrid2D(w0.shape[-1], length, device=w0.device, dtype=torch.float64)
    cdtype = torch.complex64 if w0.dtype == torch.float32 else torch.complex128
    f_hat = None
    if forcing is not None:
        if forcing.shape[-2:] != w0.shape[-2:]:
            raise ValueError(f"navier_stokes.solve: forcing shape {tuple(forcing.shape)} does not match grid")
        f_hat = (grid.mask * torch.fft.rfft2(forcing.to(device=w0.device, dtype=torch.float64))).to(cdtype)
    stepper = _CNAB2(grid, h, nu, drag, f_hat, cdtype)
    w_hat = (grid.mask * torch.fft.rfft2(w0.to(torch.float64))).to(cdtype)
    out = [torch.fft.irfft2(w_hat, s=w0.shape[-2:])]
    w_hat, n_prev = stepper.start(w_hat)
    steps_done = 1
    for i in range(len(nsub)):
        while steps_done < (i + 1) * m:
            w_hat, n_prev = stepper.step(w_hat, n_prev)
            steps_done += 1
        out.append(torch.fft.irfft2(w_hat, s=w0.shape[-2:]))
        if callback is not None:
            callback(i + 1)
    return torch.stack(out, 1)


def energy(w: Tensor, length: float = 1.0) -> Tensor:
    """Kinetic energy ``(1/2) mean |u|^2`` of vorticity fields ``(..., n, n)``."""
    grid = SpectralGrid2D(w.shape[-1], length, device=w.device, dtype=w.dtype)
    w_hat = torch.fft.fft2(w) / w.shape[-1] ** 2
    k2 = grid.kx**2 + wavenumbers(w.shape[-1], length, device=w.device, dtype=w.dtype)[None, :] ** 2
    inv = torch.where(k2 > 0, 1.0 / k2, torch.zeros_like(k2))
    return 0.5 * (w_hat.abs() ** 2 * inv).sum((-1, -2))


def enstrophy(w: Tensor) -> Tensor:
    """Enstrophy ``(1/2) mean w^2`` of ``(..., n, n)`` fields."""
    return 0.5 * (w**2).mean((-1, -2))


def fno_forcing(n: int, *, device=None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``0.1 (sin 2pi(x + y) + cos 2pi(x + y))`` on ``[0, 1)^2`` (Li et al. 2021, sec. 5.3)."""
    x = torch.arange(n, device=device, dtype=dtype) / n
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return 0.1 * (torch.sin(s) + torch.cos(s))


def kolmogorov_forcing(n: int, *, k_f: int = 4, length: float = 2 * math.pi, device=None,
                       dtype: torch.dtype = torch.float64) -> Tensor:
    """Vorticity of the body force ``sin(k y) e_x`` with ``k = 2 pi k_f / L``: ``-k cos(k y)``."""
    y = length * torch.arange(n, device=device, dtype=dtype) / n
    k = 2 * math.pi * k_f / length
    return (-k * torch.cos(k * y))[None, :].expand(n, n).clone()


def taylor_green(n: int, *, length: float = 2 * math.pi, k: int = 1, device=None,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """Taylor–Green vorticity ``2 kappa sin(kappa x) sin(kappa y)`` (stream function ``sin sin / kappa``),
    ``kappa = 2 pi k / L``; an exact steady-shape solution decaying as ``exp(-2 nu kappa^2 t)``."""
    x = length * torch.arange(n, device=device, dtype=dtype) / n
    kap = 2 * math.pi * k / length
    return 2 * kap * torch.sin(kap * x)[:, None] * torch.sin(kap * x)[None, :]


def generate(n: int, seed: int, *, setting: str = "fno", nu: float = 1e-3, resolution: int = 64,
             t_final: float = 50.0, nt: int = 51, dt: float = 1e-3, stride: int = 1, drag: float | None = None,
             k_f: int = 4, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64,
             batch_size: int = 64, progress: Callable[[int, int], None] | None = None):
    """Vorticity trajectories ``w (sample, time, x, y)``.

    ``setting="fno"``: unit torus, FNO forcing, GRF(alpha=2.5, tau=7) initial vorticity
    (``nu`` in {1e-3, 1e-4, 1e-5} in the paper; their ``T = 50, 30, 20``). ``setting="kolmogorov"``:
    ``[0, 2pi)^2``, ``f = -k_f cos(k_f y)``, drag 0.1 by default, and the same initial vorticity
    per integer wavenumber as ``"fno"`` (the unit-torus GRF, ``length=1``, laid on the larger box:
    a deliberate choice that keeps the two settings' initial spectra comparable mode by mode).
    ``stride`` subsamples the output grid (solve at ``resolution``, store ``resolution // stride``).
    Samples are produced in chunks of ``batch_size`` on ``device``. ``progress(done, total)`` is
    called after every save interval of every chunk (for the CLI's progress bar).
    """
    if n < 1:
        raise ValueError(f"navier_stokes.generate: n must be >= 1, got {n}")
    if not (int(stride) == stride >= 1 and int(batch_size) == batch_size >= 1):
        raise ValueError(f"navier_stokes.generate: stride and batch_size must be integers >= 1, got "
                         f"stride={stride!r}, batch_size={batch_size!r}")
    if resolution % stride:
        raise ValueError(f"navier_stokes.generate: stride {stride} must divide resolution {resolution}")
    g = torch.Generator().manual_seed(int(seed))
    if setting == "fno":
        length = 1.0
        f = fno_forcing(resolution, device=device, dtype=dtype)
        mu = 0.0 if drag is None else drag
    elif setting == "kolmogorov":
        length = 2 * math.pi
        f = kolmogorov_forcing(resolution, k_f=k_f, length=length, device=device, dtype=dtype)
        mu = 0.1 if drag is None else drag
    else:
        raise ValueError(f"navier_stokes.generate: unknown setting {setting!r} (expected 'fno' or 'kolmogorov')")
    # the unit-torus GRF in both settings (docstring): its Fourier coefficients per integer mode
    w0 = sample_grf(n, (resolution, resolution), alpha=2.5, tau=7.0, length=1.0, generator=g)
    t = torch.linspace(0.0, t_final, nt, dtype=torch.float64)
    chunks = []
    n_chunks = -(-n // batch_size)
    total = n_chunks * (nt - 1)
    for c, s in enumerate(range(0, n, batch_size)):
        cb = None if progress is None else (lambda i, c=c: progress(c * (nt - 1) + i, total))
        w = solve(w0[s:s + batch_size].to(device=device, dtype=dtype), t=t, nu=nu, dt=dt, length=length,
                  forcing=f, drag=mu, callback=cb)
        chunks.append(w[..., ::stride, ::stride].cpu())
    w = torch.cat(chunks)
    x = length * torch.arange(0, resolution, stride, dtype=torch.float64) / resolution
    return trajectory_dataset(
        {"vorticity": (("sample", "time", "x", "y"), w),
         "forcing": (("x", "y"), f[::stride, ::stride])},
        {"time": t, "x": x, "y": x.clone()},
        equation="w_t + u.grad w = nu Lap w - mu w + f, u = (psi_y, -psi_x), -Lap psi = w, periodic",
        parameters={"setting": setting, "nu": nu, "drag": mu, "length": length, "resolution": resolution,
                    "stride": stride, "dt": dt, "k_f": k_f if setting == "kolmogorov" else None,
                    "grf_alpha": 2.5, "grf_tau": 7.0, "dtype": str(dtype)},
        generator="sciflow.data.pdes.navier_stokes.generate", seed=seed)
