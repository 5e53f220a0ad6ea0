"""Shared spectral machinery: ETDRK4 coefficients, its order, the 2/3 mask, GRF covariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.data.pdes._spectral import ETDRK4, dealias_mask, integrate_etdrk4, sample_grf, wavenumbers


def test_etdrk4_coefficients_match_closed_forms_and_limits():
    h = 0.1
    lin = torch.tensor([-50.0, -3.0, -1e-9, 0.0, 2.0], dtype=torch.float64)
    s = ETDRK4(lin, h)
    z = h * lin[:2]  # closed forms are accurate away from 0
    q = h * (torch.exp(z / 2) - 1) / z
    f1 = h * (-4 - z + torch.exp(z) * (4 - 3 * z + z**2)) / z**3
    f2 = h * (2 + z + torch.exp(z) * (-2 + z)) / z**3
    f3 = h * (-4 - 3 * z - z**2 + torch.exp(z) * (4 - z)) / z**3
    for a, b in [(s.Q[:2], q), (s.f1[:2], f1), (s.f2[:2], f2), (s.f3[:2], f3)]:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    # limits at L = 0 (where the closed forms cancel catastrophically): h/2 and h/6
    torch.testing.assert_close(s.Q[2:4], torch.full((2,), h / 2, dtype=torch.float64), rtol=1e-9, atol=0)
    for f in (s.f1, s.f2, s.f3):
        torch.testing.assert_close(f[2:4], torch.full((2,), h / 6, dtype=torch.float64), rtol=1e-9, atol=0)


@pytest.mark.parametrize("lam", [-4.0, -100.0])
def test_etdrk4_order_on_a_linear_forced_problem(lam):
    # y' = lam y + cos t, y(0) = 1 (exact solution known). Non-stiff (|h lam| <= 1.6): order 4.
    # Stiff (|h lam| = 5..20): Hochbruck & Ostermann (2005) show order reduction of the Cox–Matthews
    # scheme for time-dependent N; we observe ~3 and require > 2.5 plus small absolute error.
    lin = torch.tensor([lam], dtype=torch.float64)

    def n(v, t):
        return torch.full_like(v, math.cos(t))  # y' = lam y + cos t

    def exact(t):
        a = (math.sin(t) - lam * math.cos(t)) / (1 + lam**2)
        c = 1.0 - (-lam) / (1 + lam**2)
        return c * math.exp(lam * t) + a

    errs = []
    for dt in (0.2, 0.1, 0.05):
        y = integrate_etdrk4(torch.ones(1, dtype=torch.float64), lin, n, [0.0, 2.0], dt)[-1]
        errs.append(abs(float(y) - exact(2.0)))
    slope = np.polyfit(np.log([0.2, 0.1, 0.05]), np.log(errs), 1)[0]
    if lam == -4.0:
        assert 3.7 < slope < 4.5, (errs, slope)
    else:
        assert slope > 2.5 and errs[-1] < 1e-8, (errs, slope)


def test_dealias_mask_keeps_two_thirds():
    m = dealias_mask(96, real=True)
    assert int(m.sum()) == 32  # k = 0..31 (< 96/3)
    assert wavenumbers(8, 2 * math.pi, real=True).tolist() == [0, 1, 2, 3, 4]


def test_grf_fourier_variance_matches_covariance_operator():
    g = torch.Generator().manual_seed(0)
    n, alpha, tau = 4000, 2.0, 3.0
    u = sample_grf(n, (32,), alpha=alpha, tau=tau, sigma=1.0, length=1.0, generator=g)
    coef = torch.fft.fft(u, dim=-1) / 32  # Fourier coefficients of the interpolant
    emp = (coef.abs() ** 2).mean(0)
    k = wavenumbers(32, 1.0)
    lam = (k**2 + tau**2) ** (-alpha)
    rel = (emp[1:8] / lam[1:8] - 1).abs()
    assert rel.max() < 0.1, rel  # 4000 samples: ~2.2 % std per mode
    assert emp[0] < 1e-20  # zero mean mode
    # deterministic by generator
    a = sample_grf(2, (8, 8), alpha=2.5, tau=7.0, generator=torch.Generator().manual_seed(1))
    b = sample_grf(2, (8, 8), alpha=2.5, tau=7.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_bad_save_grid_raises():
    with pytest.raises(ValueError, match="strictly increasing"):
        integrate_etdrk4(torch.ones(1), torch.zeros(1), lambda v, t: v, [0.0, 1.0, 0.5], 0.1)
