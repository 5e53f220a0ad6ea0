"""Mutation-audit guards for the LangevinFlow family (session 11 audit): properties the other
tests left unchecked. Each docstring names the mutants it kills.

The sequential-VAE objective is evaluated by hand on a tiny model (the LFADS-like baseline, whose
decoder has no noise of its own): replaying torch's global stream gives the coordinated-dropout
mask and the reparameterisation draw, the likelihoods come from ``scipy.stats`` and the KL from
``torch.distributions``; the metrics are checked against their definitions evaluated with scipy /
numpy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.langevin_flow import Config, GRUSequentialVAE, bits_per_spike, rate_r2
from sciflow.models.langevin_flow.metrics import ridge_fit

SMALL = dict(obs_dim=10, input_dim=7, n_forward=2, latent_dim=4, encoder_hidden=8, generator_hidden=8,
             dropout=0.0, kl_weight=0.7, kl_ramp_steps=4, coordinated_dropout=0.3)


def _data(likelihood: str, B=3, T=9, N=10) -> TrajectoryBatch:
    g = torch.Generator().manual_seed(0)
    if likelihood == "poisson":
        x = torch.poisson(torch.full((B, T, N), 1.5, dtype=torch.float64), generator=g)
    else:
        x = torch.randn(B, T, N, generator=g, dtype=torch.float64)
    return TrajectoryBatch(values=x, times=torch.arange(T, dtype=torch.float64))


@pytest.mark.parametrize("likelihood", ["poisson", "gaussian"])
def test_negative_elbo_with_coordinated_dropout_equals_hand_evaluation(likelihood):
    """Training-mode loss ``= Σ_M -log p(x | s) / |M| + β KL(q(s_0|x) || N(0, I)) / (B T N)`` with
    ``M`` the dropped held-in entries plus all held-out channels and forward bins, the encoder fed
    ``x ⊙ keep / (1 - p)`` with the forward bins zeroed, ``s_0 = μ + exp(½ log σ²) ξ`` and
    ``β = w · step / ramp``. Kills: ``lgamma(k)`` for ``log k!``, a Gaussian constant without
    ``2π``, the KL with ``σ`` in place of ``σ²``, reparameterisation by the variance, dropout
    without ``1/(1-p)``, scoring the kept instead of the dropped entries, forward bins shown to
    the encoder."""
    cfg = Config(likelihood=likelihood, observation_std="channel", **SMALL)
    m = GRUSequentialVAE(cfg).double().train()
    if likelihood == "gaussian":
        with torch.no_grad():
            m.log_std.copy_(torch.linspace(-0.5, 0.4, cfg.obs_dim, dtype=torch.float64))
    m.train_step.fill_(1)
    batch = _data(likelihood)
    x = batch.values
    B, T, N = x.shape
    p, n_in, n_fw = cfg.coordinated_dropout, cfg.input_dim, cfg.n_forward
    torch.manual_seed(5)
    out = m.loss(batch)

    torch.manual_seed(5)
    inp = x[..., :n_in].clone()
    inp[:, T - n_fw:] = 0.0                                   # forward bins hidden from the encoder
    keep = (torch.rand(inp.shape) >= p).to(x.dtype)           # the loss draws the mask first, in float32
    with torch.no_grad():
        h, mean, logvar = m.encoder(inp * keep / (1 - p))
        xi = torch.randn_like(mean)
        params = m.decode(h, mean + torch.exp(0.5 * logvar) * xi)
    score = torch.ones_like(x)
    score[..., :n_in] = 1 - keep
    score[:, T - n_fw:] = 1.0
    xn, pn = x.numpy(), params.numpy()
    if likelihood == "poisson":
        nll_elem = -stats.poisson.logpmf(xn, np.exp(pn))
    else:
        nll_elem = -stats.norm.logpdf(xn, loc=pn, scale=np.exp(m.log_std.detach().numpy()))
    nll = float((nll_elem * score.numpy()).sum() / score.sum())
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    kl = float(torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1).mean()) / (T * N)
    beta = cfg.kl_weight * 1 / cfg.kl_ramp_steps
    assert out.terms["nll"].item() == pytest.approx(nll, rel=1e-10)
    assert out.terms["kl"].item() == pytest.approx(kl, rel=1e-10)
    assert out.total.item() == pytest.approx(nll + beta * kl, rel=1e-10)


def test_kl_warmup_saturates_at_the_kl_weight():
    """``β = kl_weight · min(1, step / ramp)``: half-way it is half the weight; after the ramp it
    stays at the weight. Kills a ramp without the cap."""
    cfg = Config(**SMALL)
    m = GRUSequentialVAE(cfg)
    for step, frac in [(0, 0.0), (2, 0.5), (4, 1.0), (12, 1.0)]:
        m.train_step.fill_(step)
        assert float(m.kl_beta) == pytest.approx(cfg.kl_weight * frac, rel=1e-6)


def test_bits_per_spike_is_the_poisson_log_likelihood_gain_in_bits():
    """NLB bits/spike ``= (log p(k | λ) - log p(k | λ̄_n)) / (n_sp ln 2)`` with ``λ̄_n`` each
    neuron's mean count, evaluated with ``scipy.stats.poisson``. Kills a result in nats and a null
    rate pooled over neurons."""
    g = torch.Generator().manual_seed(1)
    base = torch.tensor([0.3, 1.0, 2.5, 4.0], dtype=torch.float64)
    rates = base * torch.exp(0.4 * torch.randn(20, 6, 4, generator=g, dtype=torch.float64))
    counts = torch.poisson(rates, generator=g)
    k, r = counts.reshape(-1, 4).numpy(), rates.reshape(-1, 4).numpy()
    null = np.broadcast_to(k.mean(0, keepdims=True), k.shape)
    expected = (stats.poisson.logpmf(k, r).sum() - stats.poisson.logpmf(k, null).sum()) / (k.sum() * math.log(2))
    assert float(bits_per_spike(rates, counts)) == pytest.approx(expected, rel=1e-10)


def test_rate_r2_is_one_minus_residual_over_total_sum_of_squares_of_the_truth():
    """``R²_n = 1 - Σ (p - t)² / Σ (t - t̄_n)²`` per neuron (``t̄_n`` the *true* rates' mean), averaged
    uniformly or pooled (variance-weighted), evaluated with numpy on predictions with a bias, so
    that the means of prediction and truth differ. Kills ``SS_tot`` about the predicted mean."""
    g = np.random.default_rng(3)
    true = g.gamma(2.0, 1.0, size=(5, 12, 4))
    pred = 0.8 * true + 0.5 + 0.2 * g.standard_normal(true.shape)
    t, p = true.reshape(-1, 4), pred.reshape(-1, 4)
    ss_res, ss_tot = ((p - t) ** 2).sum(0), ((t - t.mean(0)) ** 2).sum(0)
    got = rate_r2(torch.from_numpy(pred), torch.from_numpy(true))
    assert float(got) == pytest.approx(float(np.mean(1 - ss_res / ss_tot)), rel=1e-12)
    got_vw = rate_r2(torch.from_numpy(pred), torch.from_numpy(true), variance_weighted=True)
    assert float(got_vw) == pytest.approx(float(1 - ss_res.sum() / ss_tot.sum()), rel=1e-12)


def test_ridge_fit_solves_the_augmented_least_squares_problem():
    """``ridge_fit`` minimises ``|y - x W - b|² + α |W|²`` with an unpenalised intercept: the same
    minimiser as least squares on ``[x, 1; √α I, 0]`` (numpy ``lstsq``). Kills a wrong intercept sign."""
    g = np.random.default_rng(0)
    x = g.standard_normal((40, 3)) + np.array([1.0, -2.0, 0.5])
    y = x @ g.standard_normal((3, 2)) + np.array([3.0, -1.0]) + 0.1 * g.standard_normal((40, 2))
    alpha = 0.7
    a = np.block([[x, np.ones((40, 1))], [math.sqrt(alpha) * np.eye(3), np.zeros((3, 1))]])
    rhs = np.vstack([y, np.zeros((3, 2))])
    sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
    w, b = ridge_fit(torch.from_numpy(x), torch.from_numpy(y), alpha)
    np.testing.assert_allclose(w.numpy(), sol[:3], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), sol[3], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scheme", ["official", "baoab"])
@pytest.mark.parametrize("j", [3, 7])
def test_external_force_of_a_bin_acts_from_that_bin_on(scheme, j):
    """``dv = (-∇U + u_t - γ v) dt``: the force ``u_j`` of bin ``j`` enters the step that produces bin
    ``j`` (its velocity changes at bin ``j``) and never an earlier bin; in particular the last bin's
    force is used. Kills reading ``u_{t-1}`` in the step to bin ``t``."""
    from sciflow.models.langevin_flow import CoupledOscillatorPotential, LangevinLatent
    from sciflow.models.langevin_flow.dynamics import SCHEMES

    pot = CoupledOscillatorPotential(4, 2, 3, stiffness=1.0).double()
    dyn = LangevinLatent(pot, SCHEMES[scheme](), dt=0.1, gamma=0.0, temperature=0.0)
    T = 8
    z0 = torch.tensor([[1.0, -0.5, 0.2, 0.3]], dtype=torch.float64)
    v0 = torch.zeros_like(z0)
    u = torch.zeros(1, T, 4, dtype=torch.float64)
    with torch.no_grad():
        z_ref, v_ref = dyn(z0, v0, T, u)
        u[:, j] = 1.0
        z, v = dyn(z0, v0, T, u)
    torch.testing.assert_close(z[:, :j], z_ref[:, :j], rtol=0, atol=0)
    torch.testing.assert_close(v[:, :j], v_ref[:, :j], rtol=0, atol=0)
    assert (v[:, j] - v_ref[:, j]).abs().min() > 1e-3
