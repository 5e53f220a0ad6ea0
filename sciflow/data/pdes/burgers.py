"""Viscous Burgers equation ``u_t + u u_x = nu u_xx + f(t, x)`` in one dimension.

Three settings:

* **periodic** (PDEBench / FNO style): Fourier pseudo-spectral in space with the 2/3 rule and
  ETDRK4 in time (Kassam & Trefethen 2005). Initial states: Gaussian random fields, random sine
  superpositions (PDEBench) or Gaussian bumps; optional space–time forcing.
* **Dirichlet** ``u(a, t) = u(b, t) = 0``: a sine-Galerkin (odd-extension Fourier) solver, i.e. the
  same pseudo-spectral ETDRK4 on the odd ``2(b - a)``-periodic extension. Odd symmetry is
  preserved exactly by the equation (``u^2`` is even, its derivative odd; ``u_xx`` is odd), so
  the boundary values stay zero. Used for the PINN shock benchmark (``x in [-1, 1]``,
  ``u0 = -sin(pi x)``, ``nu = 0.01/pi``, Raissi et al. 2019) and the WDNO control setting
  (Hu et al. 2025: ``nu = 0.01``, ``x in [0, 1]``, Gaussian-bump initial states, space–time
  Gaussian forcing).
* **Cole–Hopf** exact solution of the shock benchmark: ``u = -2 nu phi_x / phi`` with the heat
  kernel integral (Basdevant et al. 1986, eq. 2) evaluated by Gauss–Hermite quadrature.

Shapes: states ``(batch, x)``, trajectories ``(batch, time, x)``. Computations in float64.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sciflow.data.initial_conditions import gaussian_bumps, gaussian_random_field, sine_superposition
from sciflow.data.pdes._dataset import check_positive, check_positive_int, trajectory_dataset
from sciflow.data.pdes._spectral import dealias_mask, integrate_etdrk4, wavenumbers

Forcing = Callable[[float, Tensor], Tensor]  # f(t, x) -> (batch, nx) or (nx,)
Progress = Callable[[int, int], None]  # progress(done, total) in save intervals


def _times(t: Sequence[float] | Tensor) -> Tensor:
    t = torch.as_tensor(np.array(t, dtype=np.float64) if not isinstance(t, Tensor) else t, dtype=torch.float64)
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"burgers: time grid must be 1-D with >= 2 points, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (torch.diff(t) <= 0).any():
        raise ValueError("burgers: time grid must be finite and strictly increasing")
    return t


def solve_periodic(u0: Tensor, *, nu: float, length: float, t: Sequence[float] | Tensor, dt: float,
                   forcing: Forcing | None = None, x0: float = 0.0, progress: Progress | None = None) -> Tensor:
    """Periodic Burgers on ``[x0, x0 + length)`` sampled at ``nx = u0.shape[-1]`` uniform points.

    ``u0``: ``(batch, nx)``; returns ``(batch, time, nx)`` at the times ``t`` (``t[0]`` is the
    initial time). Fourier–Galerkin with 2/3-rule dealiasing of ``u^2``; ETDRK4 with step ``<= dt``.
    """
    if not isinstance(u0, Tensor):
        raise TypeError(f"solve_periodic: u0 must be a torch.Tensor (batch, nx), got {type(u0).__name__}")
    if u0.ndim != 2 or u0.shape[0] < 1:
        raise ValueError(f"solve_periodic: u0 must be (batch, nx) with batch >= 1, got shape {tuple(u0.shape)}")
    if not torch.isfinite(u0).all():
        raise ValueError("solve_periodic: u0 contains NaN/inf")
    if nu < 0:
        raise ValueError(f"solve_periodic: viscosity must be >= 0, got {nu}")
    check_positive("solve_periodic: length", length)
    t = _times(t)
    nx = u0.shape[-1]
    dev = u0.device
    u0 = u0.to(torch.float64)
    k = wavenumbers(nx, length, real=True, device=dev)
    mask = dealias_mask(nx, real=True, device=dev)
    lin = -nu * k**2
    half_ik = (-0.5j * k) * mask
    x = x0 + length * torch.arange(nx, device=dev, dtype=torch.float64) / nx

    def nonlinear(v: Tensor, tt: float) -> Tensor:
        u = torch.fft.irfft(v, n=nx)
        out = half_ik * torch.fft.rfft(u * u)
        if forcing is not None:
            out = out + torch.fft.rfft(torch.as_tensor(forcing(tt, x), dtype=torch.float64, device=dev))
        return out

    cb = None if progress is None else (lambda i: progress(i, len(t) - 1))
    v = integrate_etdrk4(torch.fft.rfft(u0), lin, nonlinear, t, dt, callback=cb)
    return torch.fft.irfft(v, n=nx).transpose(0, 1).contiguous()


def _fourier_eval(v: Tensor, n: int, period: float, x_rel: Tensor) -> Tensor:
    """Evaluate the trigonometric interpolant with rfft coefficients ``v (..., n//2+1)`` at ``x_rel``."""
    nk = v.shape[-1]
    k = 2 * math.pi * torch.arange(nk, device=v.device, dtype=torch.float64) / period
    w = torch.full((nk,), 2.0, dtype=torch.float64, device=v.device)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0  # Nyquist mode counted once (cosine part)
    basis = torch.exp(1j * k[:, None] * x_rel[None, :])  # (nk, nxo)
    return torch.einsum("...k,kx->...x", v * w, basis).real / n


def solve_dirichlet(u0: Callable[[Tensor], Tensor], *, nu: float, domain: tuple[float, float],
                    t: Sequence[float] | Tensor, dt: float, x_out: Tensor, n_modes: int = 2048,
                    forcing: Forcing | None = None, progress: Progress | None = None,
                    device: str | torch.device | None = None) -> Tensor:
    """Burgers with ``u(a) = u(b) = 0`` by the sine-Galerkin (odd extension) pseudo-spectral method.

    ``u0(x)`` maps the fine grid ``x`` ``(n_modes + 1,)`` on ``[a, b]`` to ``(batch, n_modes + 1)``
    (or ``(n_modes + 1,)``); ``forcing(t, x)`` likewise. The odd ``2(b-a)``-periodic extension is
    solved on ``2 n_modes`` points and the result is evaluated spectrally at ``x_out``.
    ``device``: where the fine grid lives (``u0``/``forcing`` receive it there). Returns
    ``(batch, time, len(x_out))``.
    """
    a, b = map(float, domain)
    if not b > a:
        raise ValueError(f"solve_dirichlet: domain must satisfy a < b, got {domain}")
    x_out = torch.as_tensor(x_out, dtype=torch.float64)
    if x_out.ndim != 1 or (x_out < a - 1e-12).any() or (x_out > b + 1e-12).any():
        raise ValueError("solve_dirichlet: x_out must be a 1-D grid inside the domain")
    m = int(n_modes)
    span = b - a
    xf = a + span * torch.arange(m + 1, dtype=torch.float64, device=device) / m

    def odd_extend(values: Tensor) -> Tensor:
        values = torch.as_tensor(values, dtype=torch.float64, device=xf.device)
        if values.ndim == 1:
            values = values[None]
        if values.shape[-1] != m + 1:
            raise ValueError(f"solve_dirichlet: expected {m + 1} values on the fine grid, got {values.shape[-1]}")
        inner = values[..., 1:m]
        zero = torch.zeros_like(values[..., :1])
        return torch.cat([zero, inner, zero, -inner.flip(-1)], -1)

    u0v = u0(xf)
    if not torch.isfinite(torch.as_tensor(u0v)).all():
        raise ValueError("solve_dirichlet: u0 contains NaN/inf")
    ext_forcing = None
    if forcing is not None:
        ext_forcing = lambda tt, _x: odd_extend(forcing(tt, xf))  # noqa: E731
    traj = solve_periodic(odd_extend(u0v), nu=nu, length=2 * span, t=t, dt=dt, forcing=ext_forcing, x0=a,
                          progress=progress)
    v = torch.fft.rfft(traj)
    x_out = x_out.to(v.device)
    u = _fourier_eval(v, 2 * m, 2 * span, x_out - a)
    # the odd extension vanishes on the walls exactly; its sine series sums to ~1e-16 there
    return torch.where(((x_out - a).abs() <= 1e-12) | ((x_out - b).abs() <= 1e-12), 0.0, u)


def cole_hopf_sine(x: Tensor, t: Tensor, *, nu: float = 0.01 / math.pi, n_quad: int = 300) -> Tensor:
    """Exact solution of Burgers on ``R`` (hence on ``[-1, 1]`` with zero Dirichlet data) for
    ``u0 = -sin(pi x)`` by the Cole–Hopf transform:

    ``u(x, t) = - ∫ sin(pi(x - eta)) F(x - eta) G(eta) d eta / ∫ F(x - eta) G(eta) d eta``,
    ``F(y) = exp(-cos(pi y) / (2 pi nu))``, ``G(eta) = exp(-eta^2 / (4 nu t))``
    (Basdevant et al. 1986, eq. 2). With ``eta = sqrt(4 nu t) z`` both integrals are Gauss–Hermite
    quadratures in ``z``; the ``exp(±1/(2 pi nu))`` factors are handled in log space.
    Returns ``(len(t), len(x))``.
    """
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
    if (t < 0).any():
        raise ValueError("cole_hopf_sine: times must be >= 0")
    check_positive("cole_hopf_sine: nu (the heat-kernel width needs viscosity)", nu)
    z, w = np.polynomial.hermite.hermgauss(n_quad)
    z = torch.as_tensor(z, dtype=torch.float64)
    logw = torch.log(torch.as_tensor(w, dtype=torch.float64))
    out = torch.empty(t.numel(), x.numel(), dtype=torch.float64)
    for i, ti in enumerate(t.tolist()):
        if ti == 0.0:
            out[i] = -torch.sin(math.pi * x)
            continue
        y = x[:, None] - math.sqrt(4 * nu * ti) * z[None, :]  # (nx, nq)
        logf = -torch.cos(math.pi * y) / (2 * math.pi * nu) + logw
        wts = torch.exp(logf - logf.max(dim=1, keepdim=True).values)
        out[i] = -(torch.sin(math.pi * y) * wts).sum(1) / wts.sum(1)
    return out


# ----------------------------------------------------------------------------- generators

def generate(n: int, seed: int, *, nx: int = 256, nt: int = 101, t_final: float = 1.0, nu: float = 0.01,
             length: float = 1.0, initial_condition: str = "grf", dt: float = 1e-3,
             grf_alpha: float = 2.0, grf_tau: float = 5.0, grf_sigma: float | None = None,
             device: str | torch.device = "cpu", progress: Progress | None = None):
    """Periodic Burgers trajectories on ``[0, length)``: ``xr.Dataset`` with ``u (sample, time, x)``.

    ``initial_condition``: ``"grf"`` (covariance ``sigma^2 (-d_xx + tau^2)^(-alpha)``; ``sigma``
    defaults to ``tau^(alpha - 1/2)``; the FNO Burgers data of Li et al. 2021 use ``alpha=2,
    tau=5, sigma=25``, i.e. ``625 (-Delta + 25 I)^-2``, with ``nu=0.1``), ``"sines"`` (PDEBench) or
    ``"bumps"``. Deterministic for a given ``seed``.
    """
    if n < 1:
        raise ValueError(f"burgers.generate: n must be >= 1, got {n}")
    n, nx, nt = (check_positive_int(f"burgers.generate: {k}", v, lo) for k, v, lo in (("n", n, 1), ("nx", nx, 2),
                                                                                       ("nt", nt, 2)))
    check_positive("burgers.generate: length", length)
    g = torch.Generator().manual_seed(int(seed))
    x = length * torch.arange(nx, dtype=torch.float64) / nx
    if initial_condition == "grf":
        u0 = gaussian_random_field(n, nx, length=length, alpha=grf_alpha, tau=grf_tau, sigma=grf_sigma,
                                   generator=g)
    elif initial_condition == "sines":
        u0 = sine_superposition(n, x, length=length, generator=g)
    elif initial_condition == "bumps":
        u0 = gaussian_bumps(n, x, generator=g)
    else:
        raise ValueError(f"burgers.generate: unknown initial_condition {initial_condition!r} "
                         "(expected 'grf', 'sines' or 'bumps')")
    t = torch.linspace(0.0, t_final, nt, dtype=torch.float64)
    u = solve_periodic(u0.to(device), nu=nu, length=length, t=t, dt=dt, progress=progress)
    return trajectory_dataset(
        {"u": (("sample", "time", "x"), u)}, {"time": t, "x": x},
        equation="u_t + u u_x = nu u_xx, periodic on [0, L)",
        parameters={"nu": nu, "length": length, "initial_condition": initial_condition, "dt": dt,
                    "grf_alpha": grf_alpha, "grf_tau": grf_tau,
                    "grf_sigma": grf_tau ** (grf_alpha - 0.5) if grf_sigma is None else grf_sigma},
        generator="sciflow.data.pdes.burgers.generate", seed=seed)


def gaussian_forcing(n: int, *, n_terms: int = 2, generator: torch.Generator | None = None,
                     amplitude: float = 1.0, domain: tuple[float, float] = (0.0, 1.0),
                     t_span: tuple[float, float] = (0.0, 1.0)) -> tuple[Forcing, dict[str, Tensor]]:
    """Random space–time Gaussian forcing ``f(t, x) = sum_i a_i exp(-(x-c_i)^2/(2 s_i^2) - (t-tau_i)^2/(2 r_i^2))``
    (the WDNO/DiffPhyCon control parametrisation). Returns the callable and its parameters."""
    r = lambda *s: torch.rand(s, generator=generator, dtype=torch.float64)  # noqa: E731
    a0, a1 = domain
    t0, t1 = t_span
    # centres in the middle half and widths <= 0.08 of the span: the tails at the walls are
    # < 8e-3 of the peak, so the odd (sine) extension sees only a tiny kink there
    p = {"a": amplitude * (2 * r(n, n_terms) - 1), "c": a0 + (a1 - a0) * (0.25 + 0.5 * r(n, n_terms)),
         "s": (a1 - a0) * (0.03 + 0.05 * r(n, n_terms)), "tau": t0 + (t1 - t0) * r(n, n_terms),
         "r": (t1 - t0) * (0.1 + 0.2 * r(n, n_terms))}

    on: dict[torch.device, dict[str, Tensor]] = {}  # the parameters on each device asked for

    def f(tt: float, x: Tensor) -> Tensor:
        q = on.get(x.device) or on.setdefault(x.device, {k: v.to(x.device) for k, v in p.items()})
        space = torch.exp(-((x[None, None, :] - q["c"][..., None]) ** 2) / (2 * q["s"][..., None] ** 2))
        time = torch.exp(-((tt - q["tau"]) ** 2) / (2 * q["r"] ** 2))
        return (q["a"][..., None] * time[..., None] * space).sum(1)

    return f, p


def generate_control(n: int, seed: int, *, nx: int = 128, nt: int = 11, t_final: float = 1.0, nu: float = 0.01,
                     n_modes: int = 256, dt: float = 1e-3, forcing_amplitude: float = 1.0,
                     progress: Progress | None = None, device: str | torch.device | None = None):
    """WDNO control setting: ``x in [0, 1]``, zero Dirichlet data, ``nu = 0.01``, Gaussian-bump
    initial states and space–time Gaussian forcing. Dataset variables ``u`` and ``forcing``, both
    ``(sample, time, x)``; forcing parameters are stored per sample. ``device``: where the solver
    runs (random draws stay on the CPU generator, so the data do not depend on it)."""
    n, nx, nt, n_modes = (check_positive_int(f"burgers.generate_control: {k}", v, lo) for k, v, lo in
                          (("n", n, 1), ("nx", nx, 2), ("nt", nt, 2), ("n_modes", n_modes, 2)))
    g = torch.Generator().manual_seed(int(seed))
    x = torch.linspace(0.0, 1.0, nx, dtype=torch.float64)
    xf = torch.linspace(0.0, 1.0, n_modes + 1, dtype=torch.float64)
    # initial bumps are drawn on the fine grid so the solver sees the exact function
    u0_fine = gaussian_bumps(n, xf, zero_boundary=True, generator=g)
    f, fp = gaussian_forcing(n, generator=g, amplitude=forcing_amplitude, t_span=(0.0, t_final))
    t = torch.linspace(0.0, t_final, nt, dtype=torch.float64)
    u = solve_dirichlet(lambda _x: u0_fine, nu=nu, domain=(0.0, 1.0), t=t, dt=dt, x_out=x, n_modes=n_modes,
                        forcing=f, progress=progress, device=device).cpu()
    forcing_values = torch.stack([f(float(tt), x) for tt in t], 1)
    return trajectory_dataset(
        {"u": (("sample", "time", "x"), u), "forcing": (("sample", "time", "x"), forcing_values)},
        {"time": t, "x": x},
        equation="u_t + u u_x = nu u_xx + f(t, x), x in [0, 1], u(0, t) = u(1, t) = 0",
        parameters={"nu": nu, "n_modes": n_modes, "dt": dt, "forcing_amplitude": forcing_amplitude,
                    "forcing": {k: v.tolist() for k, v in fp.items()}},
        generator="sciflow.data.pdes.burgers.generate_control", seed=seed)


def generate_shock(n: int = 1, seed: int = 0, *, nu: float = 0.01 / math.pi, nx: int = 256, nt: int = 100,
                   dt: float = 5e-4, n_modes: int = 2048, method: str = "spectral",
                   progress: Progress | None = None):
    """The PINN Burgers shock benchmark on the ``burgers_shock.mat`` grid (``x = linspace(-1, 1, 256)``,
    ``t = 0, 0.01, ..., 0.99``): ``u0 = -sin(pi x)``, ``u(±1, t) = 0``. Deterministic; ``n`` copies.
    ``method``: ``"spectral"`` (sine-Galerkin ETDRK4) or ``"cole_hopf"`` (exact quadrature)."""
    n, nx, nt = (check_positive_int(f"burgers.generate_shock: {k}", v, lo) for k, v, lo in
                 (("n", n, 1), ("nx", nx, 2), ("nt", nt, 2)))
    x = torch.linspace(-1.0, 1.0, nx, dtype=torch.float64)
    t = torch.arange(nt, dtype=torch.float64) * 0.01
    if method == "spectral":
        u = solve_dirichlet(lambda xf: -torch.sin(math.pi * xf), nu=nu, domain=(-1.0, 1.0), t=t, dt=dt,
                            x_out=x, n_modes=n_modes, progress=progress)[0]
    elif method == "cole_hopf":
        u = cole_hopf_sine(x, t, nu=nu)
    else:
        raise ValueError(f"generate_shock: unknown method {method!r} (expected 'spectral' or 'cole_hopf')")
    u = u.expand(n, -1, -1)
    return trajectory_dataset(
        {"u": (("sample", "time", "x"), u)}, {"time": t, "x": x},
        equation="u_t + u u_x = nu u_xx, x in [-1, 1], u(x, 0) = -sin(pi x), u(±1, t) = 0",
        parameters={"nu": nu, "method": method, "dt": dt, "n_modes": n_modes},
        generator="sciflow.data.pdes.burgers.generate_shock", seed=seed)
