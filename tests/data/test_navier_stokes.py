"""2-D Navier–Stokes: Taylor–Green exact decay, energy/enstrophy budgets, convergence in dt and
resolution, the Basdevant identity, settings and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.data.pdes import navier_stokes as ns
from sciflow.data.pdes._spectral import sample_grf
from sciflow.data.schema import validate


@pytest.mark.parametrize("length,k", [(1.0, 1), (2 * math.pi, 2)])
def test_taylor_green_decays_at_exact_rate(length, k):
    nu = 0.01
    kap2 = 2 * (2 * math.pi * k / length) ** 2
    w0 = ns.taylor_green(32, length=length, k=k)[None]
    t_end = 2.0 / (nu * kap2)  # two e-folds of enstrophy... of amplitude
    t = torch.linspace(0, t_end, 5, dtype=torch.float64)
    w = ns.solve(w0, t=t, nu=nu, dt=t_end / 400, length=length)
    amp = (w[0] * w0[0]).sum((-1, -2)) / (w0[0] ** 2).sum()
    rate = -np.polyfit(t.numpy(), np.log(amp.numpy()), 1)[0]
    assert abs(rate / (nu * kap2) - 1) < 1e-5, rate
    # the remaining 2e-6 is exactly Crank–Nicolson's amplification error (1+z/2)/(1-z/2) vs e^z
    h, z = t_end / 400, -nu * kap2 * t_end / 400
    assert abs(rate + math.log((1 + z / 2) / (1 - z / 2)) / h) < 1e-9 * rate
    # the shape is preserved (advection of an eigenfunction of the Laplacian vanishes)
    assert float((w[0, -1] - amp[-1] * w0[0]).abs().max()) < 1e-12


def test_basdevant_form_equals_advective_form():
    g = torch.Generator().manual_seed(0)
    w = sample_grf(3, (32, 32), alpha=2.5, tau=7.0, generator=g)
    grid = ns.SpectralGrid2D(32, 1.0)
    wh = grid.mask * torch.fft.rfft2(w)
    uh, vh = grid.velocity_hat(wh)
    irf = lambda z: torch.fft.irfft2(z, s=(32, 32))  # noqa: E731
    direct = -grid.mask * torch.fft.rfft2(irf(uh) * irf(1j * grid.kx * wh) + irf(vh) * irf(1j * grid.ky * wh))
    got = ns.advection_hat(wh, grid)
    assert float((got - direct).abs().max() / direct.abs().max()) < 1e-12
    # Galerkin truncation conserves energy and enstrophy: <N, w> = 0 and <N, psi> = 0
    nphys, wphys, psi = irf(got), irf(wh), irf(wh * grid.inv_k2)
    assert float((nphys * wphys).mean((-1, -2)).abs().max()) < 1e-12 * float((nphys.abs() * wphys.abs()).mean())
    assert float((nphys * psi).mean((-1, -2)).abs().max()) < 1e-12 * float((nphys.abs() * psi.abs()).mean())


def _budget_terms(w, f, nu, mu, length):
    n = w.shape[-1]
    grid = ns.SpectralGrid2D(n, length)
    wh = torch.fft.rfft2(w)
    psi = torch.fft.irfft2(wh * grid.inv_k2, s=(n, n))
    wx = torch.fft.irfft2(1j * grid.kx * wh, s=(n, n))
    wy = torch.fft.irfft2(1j * grid.ky * wh, s=(n, n))
    mean = lambda a: a.mean((-1, -2))  # noqa: E731
    z = 0.5 * mean(w**2)
    dz = -nu * mean(wx**2 + wy**2) - 2 * mu * z + mean(f * w)
    e = ns.energy(w, length)
    de = -nu * mean(w**2) - 2 * mu * e + mean(f * psi)
    return z, dz, e, de


def test_energy_and_enstrophy_budgets_close():
    n, nu, mu, length = 32, 2e-3, 0.05, 1.0
    g = torch.Generator().manual_seed(1)
    w0 = sample_grf(2, (n, n), alpha=2.5, tau=7.0, generator=g)
    f = ns.fno_forcing(n) * 10
    dt = 2e-3
    t = torch.arange(0, 301, dtype=torch.float64) * dt
    w = ns.solve(w0, t=t, nu=nu, dt=dt, forcing=f, drag=mu, length=length)
    z, dz, e, de = _budget_terms(w, f, nu, mu, length)
    trap = lambda y: (0.5 * (y[:, 1:] + y[:, :-1]) * dt).sum(1)  # noqa: E731
    for q, dq in ((z, dz), (e, de)):
        change = q[:, -1] - q[:, 0]
        scale = (dq.abs() * dt).sum(1)
        assert float(((change - trap(dq)).abs() / scale).max()) < 1e-5
        assert float((change.abs() / scale).min()) > 1e-2  # the budget is not trivially zero


def test_second_order_in_time():
    n = 32
    g = torch.Generator().manual_seed(2)
    w0 = sample_grf(1, (n, n), alpha=2.5, tau=7.0, generator=g) * 3
    f = ns.fno_forcing(n)
    t = [0.0, 2.0]
    run = lambda dt: ns.solve(w0, t=t, nu=1e-3, dt=dt, forcing=f)[0, -1]  # noqa: E731
    fine = run(2.0 / 1600)
    dts = [2.0 / 50, 2.0 / 100, 2.0 / 200]
    errs = [float((run(d) - fine).abs().max()) for d in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 1.8 < slope < 2.3, (errs, slope)


def test_resolution_convergence():
    # a band-limited initial state representable on every grid
    def w0(n):
        x = torch.arange(n, dtype=torch.float64) / n
        X, Y = torch.meshgrid(x, x, indexing="ij")
        return (torch.sin(2 * math.pi * X) * torch.cos(4 * math.pi * Y) + 0.8 * torch.cos(2 * math.pi * (X + 2 * Y))
                + 0.5 * torch.sin(2 * math.pi * 3 * Y))[None] * 10

    t = [0.0, 0.5]
    ref = ns.solve(w0(96), t=t, nu=5e-3, dt=2e-3)[0, -1]
    errs = []
    for n in (24, 32, 48):
        w = ns.solve(w0(n), t=t, nu=5e-3, dt=2e-3)[0, -1]
        errs.append(float((w[:: n // 8, :: n // 8] - ref[:: 12, :: 12]).abs().max()))
    assert errs[0] > 10 * errs[1] > 100 * errs[2], errs


def test_generate_settings_deterministic_and_valid():
    kw = dict(resolution=16, t_final=0.1, nt=3, dt=1e-2)
    a = ns.generate(2, 11, **kw)
    b = ns.generate(2, 11, **kw, batch_size=1)  # chunking does not change the result
    c = ns.generate(2, 12, **kw)
    validate(a)
    np.testing.assert_allclose(a["vorticity"].values, b["vorticity"].values, rtol=0, atol=1e-13)
    assert not np.allclose(a["vorticity"].values, c["vorticity"].values)
    np.testing.assert_allclose(a["forcing"].values, ns.fno_forcing(16).numpy())
    k = ns.generate(1, 0, setting="kolmogorov", **kw, stride=2)
    validate(k)
    assert k["vorticity"].shape == (1, 3, 8, 8)
    assert abs(k["x"].values[1] - 2 * 2 * math.pi / 16) < 1e-14
    f32 = ns.generate(2, 11, **kw, dtype=torch.float32)
    assert f32["vorticity"].dtype == np.float32
    np.testing.assert_allclose(f32["vorticity"].values, a["vorticity"].values, atol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(batch, n, n\)"):
        ns.solve(torch.zeros(8, 8), t=[0, 1], nu=1e-3, dt=0.1)
    with pytest.raises(ValueError, match="uniformly spaced"):
        ns.solve(torch.zeros(1, 8, 8), t=[0, 1, 3], nu=1e-3, dt=0.1)
    with pytest.raises(ValueError, match="unknown setting"):
        ns.generate(1, 0, setting="channel")


@pytest.mark.gpu
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    w0 = sample_grf(4, (64, 64), alpha=2.5, tau=7.0, generator=g)
    f = ns.fno_forcing(64)
    cpu = ns.solve(w0, t=[0.0, 0.5], nu=1e-3, dt=1e-3, forcing=f)
    gpu = ns.solve(w0.cuda(), t=[0.0, 0.5], nu=1e-3, dt=1e-3, forcing=f.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)
