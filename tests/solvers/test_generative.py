"""Generative samplers on a Gaussian data distribution whose ε / score / flow map are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.generative import (DDIM, DDPM, VE, CosineVP, DiffusionReplacement, DPMSolverPP2M,
                                        FlowAdaptive, FlowEuler, FlowHeun, FlowMidpoint, FlowReplacement, LinearVP,
                                        NFEBudgetExceeded, ProbabilityFlow, SigmoidVP, sample_diffusion,
                                        sample_flow)
from sciflow.solvers.ode import RK4, Dopri5, Heun

DT = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=DT)
SIGMA = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=DT)
EVALS, EVECS = torch.linalg.eigh(SIGMA)
T_MIN = 1e-3


def exact_eps(schedule):
    """ε̂(x, t) = σ_t C_t⁻¹ (x - α_t μ), C_t = α_t² Σ + σ_t² I: the exact minimiser of the ε-loss."""
    def eps(x, t):
        a = schedule.alpha(t).reshape(-1, 1, 1)
        s = schedule.sigma(t).reshape(-1, 1, 1)
        cov = a**2 * SIGMA + s**2 * torch.eye(2, dtype=DT)
        r = (x - a[..., 0] * MU).unsqueeze(-1)
        return (s * torch.linalg.solve(cov, r)).squeeze(-1)
    return eps


def marginal_sample(schedule, t, n, gen):
    """Exact x_t ~ N(α_t μ, α_t² Σ + σ_t² I) so samplers start without prior mismatch."""
    tt = torch.tensor(t, dtype=DT)
    a, s = float(schedule.alpha(tt)), float(schedule.sigma(tt))
    z = torch.randn(n, 2, generator=gen, dtype=DT)
    std = torch.sqrt(a**2 * EVALS + s**2)
    return a * MU + (z * std) @ EVECS.T


def flow_map(schedule, x_start, t_start, t_end):
    """Exact probability-flow map: in Σ's eigenbasis (x - α μ)/std_t is constant along the flow."""
    def std(t):
        tt = torch.tensor(t, dtype=DT)
        return torch.sqrt(schedule.alpha(tt) ** 2 * EVALS + schedule.sigma(tt) ** 2), float(schedule.alpha(tt))
    s0, a0 = std(t_start)
    s1, a1 = std(t_end)
    u = ((x_start - a0 * MU) @ EVECS) / s0
    return a1 * MU + (u * s1) @ EVECS.T


def _check_moments(x, sigmas=5.0, cov_tol=0.0):
    n = x.shape[0]
    mean_err = (x.mean(0) - MU).abs()
    assert (mean_err < sigmas * torch.sqrt(torch.diag(SIGMA) / n)).all(), mean_err
    cov = torch.cov(x.T)
    se = torch.sqrt((SIGMA**2 + torch.outer(torch.diag(SIGMA), torch.diag(SIGMA))) / n)
    assert ((cov - SIGMA).abs() < sigmas * se + cov_tol).all(), cov


@pytest.mark.parametrize("schedule", [LinearVP(), CosineVP(), SigmoidVP(), VE(0.01, 20.0)])
def test_schedule_coefficients_consistent(schedule):
    t = torch.linspace(0.02, schedule.t_max - 0.02, 50, dtype=DT)
    a, s = schedule.alpha(t), schedule.sigma(t)
    if schedule.variance_preserving:
        torch.testing.assert_close(a**2 + s**2, torch.ones_like(t))
    lam = schedule.log_snr(t)
    torch.testing.assert_close(lam, torch.log(a / s))
    assert (lam[1:] < lam[:-1]).all()
    h = 1e-6  # central differences check f = d log α/dt and g² = dσ²/dt - 2 f σ²
    dlog_a = (torch.log(schedule.alpha(t + h)) - torch.log(schedule.alpha(t - h))) / (2 * h)
    dsig2 = (schedule.sigma(t + h) ** 2 - schedule.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(schedule.f(t), dlog_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(schedule.g2(t), dsig2 - 2 * schedule.f(t) * s**2, rtol=1e-6, atol=1e-6)
    # coefficients(): float64 evaluation, cast to the state's dtype, broadcast over its trailing axes
    x = torch.zeros(50, 3, 4, dtype=torch.float32)
    ab, sb = schedule.coefficients(t.float(), x)
    assert ab.shape == sb.shape == (50, 1, 1) and ab.dtype == sb.dtype == torch.float32
    torch.testing.assert_close(ab.flatten(), a.float())
    torch.testing.assert_close(sb.flatten(), s.float())


def _endpoint_error(sampler, schedule, nfe, n=256, **kw):
    gen = torch.Generator().manual_seed(0)
    x_t = marginal_sample(schedule, schedule.t_max, n, gen)
    x = sample_diffusion(exact_eps(schedule), schedule, x_t, sampler=sampler, nfe=nfe, t_min=T_MIN, **kw)
    exact = flow_map(schedule, x_t, schedule.t_max, T_MIN)
    return float((x - exact).abs().max())


@pytest.mark.parametrize("sampler, order", [(DDIM(0.0), 1.0), (DPMSolverPP2M(), 2.0)])
def test_deterministic_samplers_converge_to_exact_flow_map(sampler, order):
    schedule = LinearVP()
    nfes = [10, 20, 40]
    errs = [_endpoint_error(sampler, schedule, n, log_snr_spacing=True) for n in nfes]
    slope = -float(np.polyfit(np.log(nfes), np.log(errs), 1)[0])
    assert slope > order - 0.35, (slope, errs)


def test_dpm_solver_beats_ddim_at_equal_nfe():
    for schedule in (LinearVP(), CosineVP(), VE(0.01, 20.0)):
        e_ddim = _endpoint_error(DDIM(0.0), schedule, 15, log_snr_spacing=True)
        e_dpm = _endpoint_error(DPMSolverPP2M(), schedule, 15, log_snr_spacing=True)
        assert e_dpm < 0.3 * e_ddim, (schedule, e_dpm, e_ddim)
        assert e_dpm < 0.1


@pytest.mark.parametrize("sampler, nfe, cov_tol", [(DDIM(0.0), 200, 0.03), (DPMSolverPP2M(), 25, 0.01)])
def test_deterministic_samplers_recover_data_moments(sampler, nfe, cov_tol):
    # DDIM is first order: at 200 NFE its covariance is still ~2 % short; DPM-Solver++ needs 25
    schedule = LinearVP()
    gen = torch.Generator().manual_seed(1)
    x_t = marginal_sample(schedule, 1.0, 10_000, gen)
    x = sample_diffusion(exact_eps(schedule), schedule, x_t, sampler=sampler, nfe=nfe, t_min=T_MIN,
                         log_snr_spacing=True)
    _check_moments(x, cov_tol=cov_tol)


def test_ddpm_ancestral_recovers_data_moments():
    schedule = LinearVP()
    gen = torch.Generator().manual_seed(2)
    x_t = marginal_sample(schedule, 1.0, 10_000, gen)
    x = sample_diffusion(exact_eps(schedule), schedule, x_t, sampler=DDPM(), nfe=200, t_min=T_MIN, generator=gen)
    _check_moments(x, cov_tol=0.02)


@pytest.mark.parametrize("solver, adaptive, nfe, tol", [(Dopri5(), None, 400, 1e-5), (RK4(), None, 80, 1e-3),
                                                        (Heun(), False, 80, 1e-2)])
def test_probability_flow_ode_with_sciflow_solvers(solver, adaptive, nfe, tol):
    schedule = LinearVP()
    gen = torch.Generator().manual_seed(3)
    x_t = marginal_sample(schedule, 1.0, 64, gen)
    calls = []
    eps = exact_eps(schedule)
    counted = lambda x, t: (calls.append(1), eps(x, t))[1]  # noqa: E731
    x, used = sample_diffusion(counted, schedule, x_t, sampler=ProbabilityFlow(solver, rtol=1e-7, atol=1e-7,
                                                                                    adaptive=adaptive),
                               nfe=nfe, t_min=T_MIN, return_nfe=True)
    assert used == len(calls) <= nfe
    assert float((x - flow_map(schedule, x_t, 1.0, T_MIN)).abs().max()) < tol


def test_probability_flow_budget_and_solver_kind():
    schedule = LinearVP()
    x_t = marginal_sample(schedule, 1.0, 8, torch.Generator().manual_seed(0))
    with pytest.raises(NFEBudgetExceeded):
        sample_diffusion(exact_eps(schedule), schedule, x_t, sampler=ProbabilityFlow(Dopri5(), rtol=1e-10,
                                                                                       atol=1e-10), nfe=30)
    from sciflow.solvers.sde import EulerMaruyama
    with pytest.raises(TypeError, match="needs an ODE solver"):
        sample_diffusion(exact_eps(schedule), schedule, x_t, sampler=ProbabilityFlow(EulerMaruyama()), nfe=30)


# ---------------------------------------------------------------- flow matching
S_END = 0.5
MU_F = torch.tensor([2.0, -1.0], dtype=DT)


def ot_velocity(x, t):
    """Straight-line coupling x1 = μ + s x0: v(x, t) = μ + (s - 1) x0, x0 = (x - t μ)/(1 - t + t s)."""
    t = t.reshape(-1, 1)
    x0 = (x - t * MU_F) / (1 - t + t * S_END)
    return MU_F + (S_END - 1) * x0


def _flow_err(sampler, nfe, n=64):
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    x1, used = sample_flow(ot_velocity, x0, sampler=sampler, nfe=nfe, return_nfe=True)
    assert used <= nfe
    return float((x1 - (MU_F + S_END * x0)).abs().max())


def _swirl(x, t):
    # v = ω(t) J x with ω(t) = 2π t: exact solution is a rotation by angle π t² (π at t = 1)
    w = (2 * math.pi * t).reshape(-1, 1)
    return w * torch.stack([-x[:, 1], x[:, 0]], dim=1)


def _swirl_err(sampler, nfe):
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    x1, used = sample_flow(_swirl, x0, sampler=sampler, nfe=nfe, return_nfe=True)
    assert used <= nfe
    return float((x1 + x0).abs().max())  # rotation by π: x(1) = -x(0)


@pytest.mark.parametrize("sampler, order", [(FlowEuler(), 1), (FlowMidpoint(), 2), (FlowHeun(), 2)])
def test_flow_samplers_order_on_analytic_field(sampler, order):
    nfes = [40, 80, 160]
    errs = [_swirl_err(sampler, n) for n in nfes]
    slope = -float(np.polyfit(np.log(nfes), np.log(errs), 1)[0])
    assert abs(slope - order) < 0.3, (slope, errs)


def test_flow_samplers_reach_ot_endpoint():
    # along straight OT paths the velocity is constant per trajectory: every sampler is exact
    for sampler in (FlowEuler(), FlowMidpoint(), FlowHeun()):
        assert _flow_err(sampler, 8) < 1e-12


def test_adaptive_flow_sampler_tolerance_and_budget():
    err_loose = _swirl_err(FlowAdaptive(rtol=1e-4, atol=1e-4), 2000)
    err_tight = _swirl_err(FlowAdaptive(rtol=1e-8, atol=1e-8), 5000)
    assert err_tight < 1e-6 and err_tight < err_loose < 1e-2
    with pytest.raises(NFEBudgetExceeded):
        _swirl_err(FlowAdaptive(rtol=1e-10, atol=1e-10), 50)


def test_fixed_samplers_use_the_whole_budget_and_no_more():
    calls = []
    v = lambda x, t: (calls.append(1), ot_velocity(x, t))[1]  # noqa: E731
    x0 = torch.zeros(4, 2, dtype=DT)
    for sampler, nfe, expect in ((FlowEuler(), 7, 7), (FlowHeun(), 7, 6), (FlowMidpoint(), 9, 8)):
        calls.clear()
        sample_flow(v, x0, sampler=sampler, nfe=nfe)
        assert len(calls) == expect
    calls.clear()
    sch = LinearVP()
    eps = exact_eps(sch)
    sample_diffusion(lambda x, t: (calls.append(1), eps(x, t))[1], sch, x0, sampler=DPMSolverPP2M(), nfe=12)
    assert len(calls) == 12


def test_replacement_conditioning():
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(16, 2, generator=gen, dtype=DT)
    known = torch.full((16, 2), 3.0, dtype=DT)
    mask = torch.tensor([True, False])
    hook = FlowReplacement(mask, known, x0)
    x1 = sample_flow(ot_velocity, x0, sampler=FlowHeun(), nfe=20, condition=hook)
    torch.testing.assert_close(x1[:, 0], known[:, 0])
    # diffusion: known coordinate lands within σ(t_min) of the known value
    sch = LinearVP()
    x_t = marginal_sample(sch, 1.0, 16, gen)
    hook = DiffusionReplacement(mask, known, sch, generator=gen)
    seen = []
    cond = lambda x, t: (seen.append(float(t[0])), hook(x, t))[1]  # noqa: E731
    x = sample_diffusion(exact_eps(sch), sch, x_t, sampler=DDIM(0.0), nfe=10, t_min=T_MIN, condition=cond)
    assert len(seen) == 10 and abs(seen[-1] - T_MIN) < 1e-12
    assert float((x[:, 0] - 3.0).abs().max()) < 5 * float(sch.sigma(torch.tensor(T_MIN)))


def test_errors():
    sch = LinearVP()
    x = torch.zeros(4, 2, dtype=DT)
    with pytest.raises(TypeError, match="flow-matching samplers go to sample_flow"):
        sample_diffusion(exact_eps(sch), sch, x, sampler=FlowEuler())
    with pytest.raises(TypeError, match="diffusion samplers go to sample_diffusion"):
        sample_flow(ot_velocity, x, sampler=DDIM())
    with pytest.raises(ValueError, match="returned shape"):
        sample_flow(lambda x, t: x[:, :1], x, nfe=2)
    with pytest.raises(ValueError, match="allows none"):
        sample_flow(ot_velocity, x, sampler=FlowHeun(), nfe=1)
    with pytest.raises(ValueError, match="strictly downwards"):
        sample_diffusion(exact_eps(sch), sch, x, time_grid=[0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="NaN"):
        sample_flow(ot_velocity, torch.full((2, 2), float("nan")), nfe=2)
