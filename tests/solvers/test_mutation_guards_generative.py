"""Mutation-audit guards for the generative samplers: properties the other tests left unchecked.

* DPM-Solver++(2M)'s local error is ``O(h³)`` for any step ratio ``r_i = h_{i-1}/h_i``. The
  existing order tests use log-SNR-uniform grids (``r = 1``), where a wrong ``r``-dependence of
  ``D_i = (1 + 1/(2r)) x̂_0^{(i)} - 1/(2r) x̂_0^{(i-1)}`` (Lu et al. 2022, Alg. 2) is invisible.
  Even a global order test on non-uniform grids cannot see it: the leading error of such a
  mutant is ``∝ Σ_i (h_{i-1}² - h_i²) x̂_0'``, which telescopes, so the global order stays 2.
  Hence a local test: with a data prediction ``x̂_0(λ) = a + bλ`` independent of ``x`` the
  exact solution is known in closed form and the second step's local error is isolated exactly.
* One DDPM / DDIM(η) step samples the Gaussian posterior of the forward process: for a point-mass
  data distribution at ``μ`` the exact ε-model gives ``x̂_0 = μ``, and ``q(x_t | x_s, x_0)`` has
  mean ``α_t μ + α_{s|t} σ_t²/σ_s² (x_s - α_s μ)`` and variance ``σ_t² - α_{s|t}² σ_t⁴/σ_s²``
  (``α_{s|t} = α_s/α_t``; the conditional of the jointly Gaussian ``(x_t, x_s)`` with
  ``Cov = α_{s|t} σ_t²``), derived here independently of the sampler's ``σ_{s|t}`` form; DDIM(η)
  has variance ``η²`` times it (Song et al. 2021, eq. 16). The moment tests of the full sampler
  do not see the per-step variance because the marginals are preserved for any variance.
* Replacement conditioning draws the forward marginal ``N(α_t known, σ_t²)`` (a missing ``α_t``
  is invisible at ``t_min``, where the full-sampler test looks).
* VP schedules reproduce their papers' ``ᾱ(t)`` (a wrong normaliser passes the consistency test).
  Found this way and fixed: ``CosineVP().sigma(0)`` was NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.generative import (DDIM, DDPM, CosineVP, DiffusionReplacement, DPMSolverPP2M, LinearVP, SigmoidVP,
                                        sample_diffusion)

DT = torch.float64


def _linear_vp_time(schedule, lam):
    """Inverse of LinearVP's log-SNR: ``log ᾱ = -softplus(-2λ)``, then the quadratic in ``t``."""
    log_abar = -torch.nn.functional.softplus(-2 * lam)
    b0, db = schedule.beta_min, schedule.beta_max - schedule.beta_min
    return (-b0 + torch.sqrt(b0**2 - 2 * db * log_abar)) / db


def _lam_grid(schedule, lams):
    grid = _linear_vp_time(schedule, torch.tensor(lams, dtype=DT))
    torch.testing.assert_close(schedule.log_snr(grid), torch.tensor(lams, dtype=DT), rtol=1e-10, atol=1e-10)
    return grid.tolist()


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_dpm_solver_pp_2m_local_error_third_order_for_unequal_steps(ratio):
    # data prediction x̂_0(λ) = a + b λ, independent of x: the exact solution is
    # x_t = σ_t/σ_s x_s + σ_t ∫_{λ_s}^{λ_t} e^λ (a + b λ) dλ (Lu et al. 2022, eq. 9), and a step's
    # error is not propagated, so the second (multistep) step's local error is isolated exactly
    schedule = LinearVP()
    a, b = torch.tensor([0.3, -1.2], dtype=DT), torch.tensor([0.8, 0.5], dtype=DT)

    def eps(x, t):
        al, si = schedule.alpha(t).reshape(-1, 1), schedule.sigma(t).reshape(-1, 1)
        return (x - al * (a + b * schedule.log_snr(t).reshape(-1, 1))) / si

    def sig(lam):
        return float(schedule.sigma(torch.tensor(_lam_grid(schedule, [lam]), dtype=DT)))

    def prim(lam):  # antiderivative of e^λ (a + b λ)
        return math.exp(lam) * (a + b * lam - b)

    x0 = torch.tensor([[0.4, -0.9]], dtype=DT)
    lam0, hs, errs = -1.5, [0.4, 0.2, 0.1, 0.05], []
    for h in hs:
        lams = [lam0, lam0 + ratio * h, lam0 + ratio * h + h]       # r = h_1/h_2 = ratio
        g = _lam_grid(schedule, lams)
        x1 = sample_diffusion(eps, schedule, x0, sampler=DPMSolverPP2M(), nfe=1, time_grid=g[:2])
        x2 = sample_diffusion(eps, schedule, x0, sampler=DPMSolverPP2M(), nfe=2, time_grid=g)
        s1, s2 = sig(lams[1]), sig(lams[2])
        exact_from_x1 = s2 / s1 * x1 + s2 * (prim(lams[2]) - prim(lams[1]))
        errs.append(float((x2 - exact_from_x1).abs().max()))
    order = float(np.polyfit(np.log(hs), np.log(errs), 1)[0])
    assert order > 2.7, (order, errs)                          # local error O(h³); an r-error is O(h²)


@pytest.mark.parametrize("sampler, eta", [(DDPM(), 1.0), (DDIM(0.5), 0.5)], ids=["DDPM", "DDIM0.5"])
@pytest.mark.parametrize("s, t", [(0.6, 0.35), (0.3, 0.1)])
def test_one_ancestral_step_samples_the_gaussian_posterior(sampler, eta, s, t):
    schedule = LinearVP()
    mu = 0.7
    a_s, s_s = float(schedule.alpha(torch.tensor(s, dtype=DT))), float(schedule.sigma(torch.tensor(s, dtype=DT)))
    a_t, s_t = float(schedule.alpha(torch.tensor(t, dtype=DT))), float(schedule.sigma(torch.tensor(t, dtype=DT)))

    def eps(x, tt):  # exact ε for data = δ_μ: x_t = α_t μ + σ_t ε
        return (x - schedule.alpha(tt).reshape(-1, 1) * mu) / schedule.sigma(tt).reshape(-1, 1)

    m = 200_000
    x_s = torch.full((m, 1), a_s * mu + 0.8 * s_s, dtype=DT)   # one fixed x_s, many draws of x_t
    x_t = sample_diffusion(eps, schedule, x_s, sampler=sampler, nfe=1, time_grid=[s, t],
                           generator=torch.Generator().manual_seed(3))
    a_st = a_s / a_t
    mean = a_t * mu + a_st * s_t**2 / s_s**2 * (x_s[0, 0].item() - a_s * mu)
    var = s_t**2 - a_st**2 * s_t**4 / s_s**2
    assert var > 0.05 * s_t**2                                   # a non-degenerate posterior
    # DDIM(η) draws with η² times the posterior variance, its mean moves so the marginal is kept
    var_eta = eta**2 * var
    mean_eta = a_t * mu + math.sqrt(s_t**2 - var_eta) * 0.8
    assert abs(float(x_t.var()) / var_eta - 1) < 0.02            # rel. s.e. sqrt(2/m) = 0.3 %
    assert abs(float(x_t.mean()) - mean_eta) < 5 * math.sqrt(var_eta / m)
    if eta == 1.0:
        assert abs(mean_eta - mean) < 1e-12                    # DDPM's mean is the posterior mean


@pytest.mark.parametrize("schedule", [LinearVP(), CosineVP()], ids=lambda s: type(s).__name__)
def test_diffusion_replacement_draws_the_forward_marginal(schedule):
    """Replacement conditioning (Lugmayr et al. 2022, RePaint; Song et al. 2021, §I.2) sets the known
    entries to a draw of the forward marginal ``q(x_t | x_0 = known) = N(α_t known, σ_t² I)``: with
    ``fixed_noise`` exactly ``schedule.marginal(known, t, noise)``; with fresh noise its moments.
    The full-sampler test ends at ``t_min`` where ``α ≈ 1``, so it cannot see a missing ``α_t``."""
    m = 100_000
    mask = torch.tensor([True, False])
    known = torch.tensor([2.5, -7.0], dtype=DT).expand(m, 2)
    x = torch.full((m, 2), 11.0, dtype=DT)
    t = torch.full((m,), 0.55, dtype=DT)
    a, s = float(schedule.alpha(t[:1])), float(schedule.sigma(t[:1]))
    assert a < 0.9 and s > 0.4                                   # a time where both terms matter
    noise = torch.randn(m, 2, generator=torch.Generator().manual_seed(5), dtype=DT)
    out = DiffusionReplacement(mask, known, schedule, fixed_noise=noise)(x, t)
    torch.testing.assert_close(out[:, 0], schedule.marginal(known, t, noise)[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[:, 0], a * 2.5 + s * noise[:, 0], rtol=1e-12, atol=1e-12)
    assert torch.equal(out[:, 1], x[:, 1])
    fresh = DiffusionReplacement(mask, known, schedule, generator=torch.Generator().manual_seed(6))(x, t)
    assert abs(float(fresh[:, 0].mean()) - a * 2.5) < 5 * s / math.sqrt(m)
    assert abs(float(fresh[:, 0].std()) / s - 1) < 0.02


def test_vp_schedules_match_published_alpha_bar_and_start_at_the_data():
    """``ᾱ(t) = α_t²`` of each VP schedule against its paper's formula, evaluated here with numpy:
    Song et al. 2021 eq. 33 (linear β), Nichol & Dhariwal 2021 eq. 17 (cosine), Chen 2023 Alg. 1
    (sigmoid); all have ``ᾱ(0) = 1``, i.e. ``x_0`` is the data. The consistency test of the
    schedules (``α² + σ² = 1``, ``f``/``g²`` by finite differences) is blind to a wrong normaliser."""
    t = np.array([0.0, 0.05, 0.3, 0.6, 0.9])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    cases = [
        (LinearVP(0.1, 20.0), np.exp(-(0.1 * t + 0.5 * (20.0 - 0.1) * t**2))),
        (CosineVP(s=0.008), np.cos(0.5 * np.pi * (t + 0.008) / 1.008) ** 2 / np.cos(0.5 * np.pi * 0.008 / 1.008) ** 2),
        (SigmoidVP(start=-3.0, end=3.0, tau=0.7),
         (sig(3.0 / 0.7) - sig((t * 6.0 - 3.0) / 0.7)) / (sig(3.0 / 0.7) - sig(-3.0 / 0.7))),
    ]
    for schedule, abar in cases:
        tt = torch.tensor(t, dtype=DT)
        np.testing.assert_allclose(schedule.alpha(tt).numpy() ** 2, abar, rtol=1e-12, atol=1e-14)
        assert abs(float(schedule.alpha(tt[:1])) - 1) < 1e-14
        s_small = float(schedule.sigma(torch.tensor([1e-9], dtype=DT)))   # σ_t ~ sqrt(-log ᾱ(t))
        assert 0 < s_small < 1e-4 and abs(s_small**2 / (1 - abar_at(schedule, 1e-9)) - 1) < 1e-3


def abar_at(schedule, t):
    """``ᾱ(t) = exp(log ᾱ(t))`` of a VP schedule at a scalar time."""
    return float(torch.exp(schedule.log_alpha_bar(torch.tensor(t, dtype=DT))))


def test_every_vp_schedule_has_sigma_zero_at_t0():
    """Was NaN for CosineVP: its log alpha_bar(0) rounded to +2.7e-20 (now clamped at 0)."""
    t0 = torch.zeros(1, dtype=DT)
    for schedule in (LinearVP(), SigmoidVP(), CosineVP()):
        assert torch.isfinite(schedule.sigma(t0)).all() and float(schedule.sigma(t0)) == 0.0, schedule
