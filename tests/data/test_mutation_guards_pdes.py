"""Mutation-audit guards for the PDE/ODE data generators: properties the other data tests left unchecked.

Each test is named after the numerical property it checks (session-11 mutation audit of
``sciflow.data``: every test here fails on at least one plausible bug that the rest of the suite
let through).

* **GRF spectrum** (Li et al. 2021, FNO data): the Fourier coefficients of
  ``sample_grf`` have variance ``sigma^2 (|2 pi k / L|^2 + tau^2)^(-alpha)`` with the *box length*
  ``L`` in the wavenumber and the default ``sigma = tau^(alpha - d/2)`` in ``d`` dimensions; the
  existing test only used ``L = 1`` and ``d = 1``, where neither can be wrong.
* **Initial states** as their docstrings state them: sine superpositions are ``L``-periodic with
  integer wavenumbers ``1..k_max``; a Gaussian bump ``a exp(-(x - c)^2 / (2 w^2))`` has standard
  deviation ``w`` in ``[0.03, 0.08]`` of the span; ``zero_boundary`` subtracts the *linear
  interpolant* of the end values (so the result is the raw field minus an affine function).
* **PDE residuals of the generators' output**: finite differences in time (5-point, 4th order) and
  spectral derivatives in space of the solver's own trajectories, inserted in
  :mod:`sciflow.data.pdes.residuals` — self-convergence tests cannot see a wrong coefficient of a
  term that the solver applies consistently, and the residual functions are checked against the
  data (the causal-PINN test of the KS residual uses ``alpha = 0``).
* KS ``"chaotic"`` regime = the classic ``v_s + v v_y + v_yy + v_yyyy = 0`` on ``[0, 32 pi)``
  under ``y = 16 x, s = 100 t`` (Kassam & Trefethen 2005), checked by solving both.
* Navier–Stokes helpers by hand: ``u = (psi_y, -psi_x)`` with ``-Lap psi = w``; the Kolmogorov
  forcing is the curl of the body force ``sin(k y) e_x``; the FNO forcing is
  ``0.1 (sin 2pi(x+y) + cos 2pi(x+y))``; enstrophy ``(1/2) mean w^2`` on Taylor–Green.
* Forcing on a shifted periodic box (``x0 != 0``) and the WDNO Gaussian forcing by its formula.
* Lorenz: continuous observation times ``~ U(t0, t_end]``; spiking readout ``W ~ N(0, s^2/3)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sciflow.data.initial_conditions import gaussian_bumps, sine_superposition
from sciflow.data.pdes import burgers, kuramoto_sivashinsky as ks, navier_stokes as ns, residuals as R
from sciflow.data.pdes._spectral import sample_grf, wavenumbers

DT = torch.float64


# ----------------------------------------------------------------------------- GRF spectrum


@pytest.mark.parametrize("shape, length", [((32,), 2 * math.pi), ((16, 16), 1.0), ((16, 16), 3.0)])
def test_grf_fourier_variance_uses_box_length_and_default_sigma(shape, length):
    """Mode variance ``sigma^2 (|2 pi k/L|^2 + tau^2)^-alpha``, ``sigma = tau^(alpha - d/2)`` (default)."""
    alpha, tau, n = 2.5, 3.0, 3000
    d = len(shape)
    u = sample_grf(n, shape, alpha=alpha, tau=tau, length=length, generator=torch.Generator().manual_seed(0))
    dims = tuple(range(1, d + 1))
    coef = torch.fft.fftn(u, dim=dims) / math.prod(shape)
    emp = (coef.abs() ** 2).mean(0)
    ks_ = torch.meshgrid(*[wavenumbers(s, length) for s in shape], indexing="ij")
    k2 = sum(k**2 for k in ks_)
    sigma = tau ** (alpha - d / 2)
    lam = sigma**2 * (k2 + tau**2) ** (-alpha)
    # the lowest non-zero modes (|integer k| <= 2): 3000 samples give ~2.6 % error per mode
    ik = torch.meshgrid(*[torch.fft.fftfreq(s, 1.0 / s) for s in shape], indexing="ij")
    sel = (sum(i.abs() for i in ik) > 0) & torch.stack([i.abs() <= 2 for i in ik]).all(0)
    ratio = (emp[sel] / lam[sel]).numpy()
    assert abs(ratio.mean() - 1) < 0.03, ratio.mean()
    assert np.abs(ratio - 1).max() < 0.15, ratio


# ----------------------------------------------------------------------------- initial states


def test_sine_superposition_is_periodic_on_its_box_with_integer_wavenumbers():
    length, nx, k_max = 2.5, 64, 6
    x = length * torch.arange(nx, dtype=DT) / nx
    u = sine_superposition(200, x, length=length, k_max=k_max, generator=torch.Generator().manual_seed(1))
    power = torch.fft.rfft(u).abs() ** 2
    inside = power[:, 1:k_max + 1].sum(1)
    assert float((power.sum(1) - inside).max() / inside.min()) < 1e-20  # no leakage: exact modes
    # two waves (n_waves = 2) of amplitude A ~ U(0, 1): a mode's |coefficient| <= 2 nx / 2
    assert float(torch.fft.rfft(u).abs()[:, 1:].max()) <= 2 * nx / 2 + 1e-9


def test_gaussian_bump_standard_deviation_lies_in_the_width_range():
    x = torch.linspace(-2.0, 3.0, 2001, dtype=DT)  # span 5: widths in [0.15, 0.4]
    u = gaussian_bumps(400, x, n_bumps=1, generator=torch.Generator().manual_seed(2))
    p = u / u.sum(1, keepdim=True)  # a single bump with a random sign: normalise to a density
    mean = (p * x).sum(1)
    std = ((p * (x - mean[:, None]) ** 2).sum(1)).sqrt() / 5.0
    assert float(std.min()) > 0.03 - 1e-3 and float(std.max()) < 0.08 + 1e-3, (std.min(), std.max())
    assert float(std.min()) < 0.035 and float(std.max()) > 0.075  # the range is covered
    assert float(mean.min()) > -2 + 0.25 * 5 - 0.01 and float(mean.max()) < -2 + 0.75 * 5 + 0.01


def test_zero_boundary_subtracts_the_linear_interpolant_of_the_end_values():
    x = torch.linspace(0.0, 1.0, 101, dtype=DT)
    raw = gaussian_bumps(5, x, width=(0.2, 0.3), generator=torch.Generator().manual_seed(3))
    zb = gaussian_bumps(5, x, width=(0.2, 0.3), zero_boundary=True, generator=torch.Generator().manual_seed(3))
    assert float(zb[:, [0, -1]].abs().max()) < 1e-15
    diff = raw - zb  # must be affine in x: zero second differences, matching the end values
    assert float(diff.diff(n=2, dim=1).abs().max()) < 1e-14
    torch.testing.assert_close(diff[:, [0, -1]], raw[:, [0, -1]], rtol=0, atol=1e-15)
    assert float(raw[:, [0, -1]].abs().min()) > 1e-4  # wide bumps: the end values are not negligible


# ----------------------------------------------------------------------------- residuals of generated data


def _d_dt(traj: torch.Tensor, delta: float) -> torch.Tensor:
    """4th-order central difference at the middle of 5 equally spaced snapshots ``(batch, 5, ...)``."""
    return (traj[:, 0] - 8 * traj[:, 1] + 8 * traj[:, 3] - traj[:, 4]) / (12 * delta)


def _spectral_dx(u: torch.Tensor, length: float, order: int, dim: int = -1) -> torch.Tensor:
    n = u.shape[dim]
    k = wavenumbers(n, length)
    shape = [1] * u.ndim
    shape[dim] = n
    return torch.fft.ifft((1j * k.reshape(shape)) ** order * torch.fft.fft(u, dim=dim), dim=dim).real


@pytest.mark.parametrize("regime", ["regular", "chaotic"])
def test_kuramoto_sivashinsky_output_satisfies_the_paper_residual(regime):
    """``u_t + alpha u u_x + beta u_xx + gamma u_xxxx = 0`` on the generator's own trajectory."""
    p = ks.REGIMES[regime]
    nx, length, tau, delta = 128, 2 * math.pi, 0.02, 1e-3  # resolved to round-off at nx = 128
    x = length * torch.arange(nx, dtype=DT) / nx
    u0 = (torch.cos(x) * (1 + torch.sin(x)))[None]
    t = [0.0] + [tau + j * delta for j in (-2, -1, 0, 1, 2)]
    traj = ks.solve(u0, t=t, dt=delta / 4, length=length, **p)[:, 1:]
    u = traj[:, 2]
    d = {k: _spectral_dx(u, length, k) for k in (1, 2, 4)}
    ut = _d_dt(traj, delta)
    res = R.kuramoto_sivashinsky(u, ut, d[1], d[2], d[4], **p)
    scale = (p["alpha"] * u * d[1]).abs().max()
    assert float(scale) > 0.1 * float(ut.abs().max())  # the nonlinear term is not negligible
    assert float(res.abs().max() / scale) < 1e-5, float(res.abs().max() / scale)


def test_navier_stokes_output_satisfies_the_vorticity_residual():
    """``w_t + u w_x + v w_y - nu Lap w - (f - mu w) = 0`` with ``u = psi_y, v = -psi_x``, ``-Lap psi = w``."""
    n, length, nu, mu, delta = 32, 2 * math.pi, 1e-2, 0.1, 2e-3
    x = length * torch.arange(n, dtype=DT) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    # band-limited (|k| <= 3 << n/3): the Galerkin truncation discards nothing at t ~ 0
    w0 = (3 * torch.sin(X) * torch.cos(2 * Y) + 2 * torch.cos(X + Y) + 1.5 * torch.sin(3 * Y - X))[None]
    f = ns.kolmogorov_forcing(n, k_f=2, length=length)
    t = [j * delta for j in range(5)]
    traj = ns.solve(w0, t=t, nu=nu, dt=delta / 8, length=length, forcing=f, drag=mu)
    w = traj[:, 2]
    grid = ns.SpectralGrid2D(n, length)
    psi = torch.fft.irfft2(torch.fft.rfft2(w) * grid.inv_k2, s=(n, n))
    u, v = _spectral_dx(psi, length, 1, dim=-1), -_spectral_dx(psi, length, 1, dim=-2)
    wx, wy = _spectral_dx(w, length, 1, dim=-2), _spectral_dx(w, length, 1, dim=-1)
    wxx, wyy = _spectral_dx(w, length, 2, dim=-2), _spectral_dx(w, length, 2, dim=-1)
    wt = _d_dt(traj, delta)
    res = R.navier_stokes_vorticity(u, v, wt, wx, wy, wxx, wyy, nu, forcing=f - mu * w)
    adv = (u * wx + v * wy).abs().max()
    assert float(adv) > 1.0  # advection dominates: a sign or factor error is O(1) in the residual
    # measured 5e-7 (the CNAB2 time error at h = dt/8 and the 4th-order difference in time)
    assert float(res.abs().max() / adv) < 1e-5, float(res.abs().max() / adv)


def test_chaotic_ks_regime_is_the_classic_equation_rescaled():
    """``alpha, beta, gamma = 100/16, 100/16^2, 100/16^4`` on ``[0, 2 pi)``: ``v(y, s) = u(y/16, s/100)``
    with ``v`` solving ``v_s + v v_y + v_yy + v_yyyy = 0`` on ``[0, 32 pi)``."""
    nx = 128
    x = 2 * math.pi * torch.arange(nx, dtype=DT) / nx
    u0 = (torch.cos(x) * (1 + torch.sin(x)))[None]
    u = ks.solve(u0, t=[0.0, 0.1], dt=1e-3, length=2 * math.pi, **ks.REGIMES["chaotic"])[0, -1]
    v = ks.solve(u0, t=[0.0, 10.0], dt=0.1, length=32 * math.pi, alpha=1.0, beta=1.0, gamma=1.0)[0, -1]
    assert float((u - v).abs().max()) < 1e-9 * float(v.abs().max())
    assert float((u - u0[0]).abs().max()) > 0.1  # the state has moved


# ----------------------------------------------------------------------------- Navier–Stokes helpers


def test_velocity_and_advection_from_vorticity_by_hand():
    """``psi = sin x cos 2y + cos y`` (``-Lap psi = w = 5 sin x cos 2y + cos y``): ``u = psi_y``,
    ``v = -psi_x`` and ``advection_hat = -(u w_x + v w_y)`` (all products band-limited below N/3)."""
    n, length = 16, 2 * math.pi
    x = length * torch.arange(n, dtype=DT) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w = 5 * torch.sin(X) * torch.cos(2 * Y) + torch.cos(Y)
    u = -2 * torch.sin(X) * torch.sin(2 * Y) - torch.sin(Y)
    v = -torch.cos(X) * torch.cos(2 * Y)
    wx, wy = 5 * torch.cos(X) * torch.cos(2 * Y), -10 * torch.sin(X) * torch.sin(2 * Y) - torch.sin(Y)
    grid = ns.SpectralGrid2D(n, length)
    w_hat = torch.fft.rfft2(w)
    uh, vh = grid.velocity_hat(w_hat)
    torch.testing.assert_close(torch.fft.irfft2(uh, s=(n, n)), u, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.fft.irfft2(vh, s=(n, n)), v, rtol=0, atol=1e-12)
    adv = torch.fft.irfft2(ns.advection_hat(w_hat, grid), s=(n, n))
    expect = -(u * wx + v * wy)
    assert float(expect.abs().max()) > 1.0
    torch.testing.assert_close(adv, expect, rtol=0, atol=1e-11)


def test_kolmogorov_forcing_is_the_curl_of_the_body_force():
    n, length, k_f = 32, 2 * math.pi, 4
    y = length * torch.arange(n, dtype=DT) / n
    fx = torch.sin(2 * math.pi * k_f / length * y)[None, :].expand(n, n)  # body force sin(k y) e_x
    curl = -_spectral_dx(fx, length, 1, dim=-1)  # d_x F_y - d_y F_x with F_y = 0
    torch.testing.assert_close(ns.kolmogorov_forcing(n, k_f=k_f, length=length), curl, rtol=0, atol=1e-12)


def test_fno_forcing_by_its_formula():
    n = 24
    x = torch.arange(n, dtype=DT) / n
    s = 2 * math.pi * (x[:, None] + x[None, :])
    torch.testing.assert_close(ns.fno_forcing(n), 0.1 * (torch.sin(s) + torch.cos(s)), rtol=0, atol=1e-15)


def test_taylor_green_enstrophy_and_energy_by_hand():
    """``w = 2 kappa sin sin``: enstrophy ``(1/2) mean w^2 = kappa^2 / 2``; ``psi = sin sin / kappa``:
    ``(1/2) mean |u|^2 = 1/4``."""
    for length, k in ((2 * math.pi, 1), (1.0, 2)):
        kap = 2 * math.pi * k / length
        w = ns.taylor_green(16, length=length, k=k)
        assert float(ns.enstrophy(w)) == pytest.approx(kap**2 / 2, rel=1e-12)
        assert float(ns.energy(w, length)) == pytest.approx(0.25, rel=1e-12)


# ----------------------------------------------------------------------------- Burgers forcing


def test_periodic_forcing_is_evaluated_on_the_shifted_grid():
    """Manufactured ``u = cos(2t) s(x)`` on ``[x0, x0 + 1)`` with ``x0 = 0.3``: the forcing callback
    must receive the physical coordinates ``x0 + j / nx``."""
    nu, x0, nx = 0.02, 0.3, 64
    s = lambda x: torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x)  # noqa: E731
    sx = lambda x: 2 * math.pi * torch.cos(2 * math.pi * x) - 2 * math.pi * torch.sin(4 * math.pi * x)  # noqa: E731
    sxx = lambda x: (-4 * math.pi**2 * torch.sin(2 * math.pi * x)  # noqa: E731
                     - 8 * math.pi**2 * torch.cos(4 * math.pi * x))

    def f(t, x):
        a, da = math.cos(2 * t), -2 * math.sin(2 * t)
        return da * s(x) + a**2 * s(x) * sx(x) - nu * a * sxx(x)

    x = x0 + torch.arange(nx, dtype=DT) / nx
    u = burgers.solve_periodic(s(x)[None], nu=nu, length=1.0, t=[0.0, 1.0], dt=0.01, forcing=f, x0=x0)
    assert float((u[0, -1] - math.cos(2.0) * s(x)).abs().max()) < 1e-7


def test_gaussian_forcing_matches_its_formula():
    f, p = burgers.gaussian_forcing(3, n_terms=2, generator=torch.Generator().manual_seed(4), amplitude=2.0,
                                    domain=(0.0, 1.0), t_span=(0.0, 2.0))
    x = torch.linspace(0.0, 1.0, 33, dtype=DT)
    for tt in (0.0, 0.7, 1.9):
        expect = torch.zeros(3, 33, dtype=DT)
        for i in range(3):
            for j in range(2):
                a, c, s_, tau, r = (float(p[k][i, j]) for k in ("a", "c", "s", "tau", "r"))
                expect[i] += a * torch.exp(-((x - c) ** 2) / (2 * s_**2) - (tt - tau) ** 2 / (2 * r**2))
        torch.testing.assert_close(f(tt, x), expect, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- Lorenz observation / spiking


def test_continuous_observation_times_are_uniform_on_the_window():
    """``on_grid=False``: per-sample times ``t_k ~ U(t0, t_end]`` (sorted), here ``t_end = 1``."""
    from sciflow.data.pdes import lorenz

    ds = lorenz.generate_lorenz63(40, n_time=51, dt=0.02, spinup=0.1, n_obs=25, on_grid=False,
                                  rtol=1e-6, atol=1e-6, seed=5)
    t = ds["obs_time"].values
    assert t.min() > 0 and t.max() <= 1.0
    assert stats.kstest(t.ravel(), "uniform", args=(0.0, 1.0)).pvalue > 1e-3


def test_spiking_readout_weights_have_the_stated_variance():
    """``W_nk ~ N(0, readout_scale^2 / 3)`` (Sussillo et al. 2016 §3.1 as implemented)."""
    from sciflow.data.pdes import lorenz

    ds = lorenz.generate_lorenz_spiking(1, n_trials=1, n_neurons=3000, n_bins=4, readout_scale=2.0,
                                        spinup=0.1, rtol=1e-6, atol=1e-6, seed=6)
    W = ds["readout_weight"].values
    assert abs(W.std() / (2.0 / math.sqrt(3.0)) - 1) < 0.03 and abs(W.mean()) < 0.05
