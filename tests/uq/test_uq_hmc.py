"""HMC on conjugate Bayesian linear regression vs the analytic posterior; MCMC diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior, LossLikelihood
from sciflow.uq.diagnostics import ess_basic, ess_bulk, ess_tail, rhat, split_rhat
from sciflow.uq._adaptation import warmup_windows
from sciflow.uq.hmc import HMC


class _LinReg(SciflowModel):
    """y = X w + b; X travels in ``condition`` (batch, d), y in ``values`` (batch, 1, 1)."""

    batch_type = TrajectoryBatch

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, 1)

    def loss(self, batch):
        return LossOutput(((self.lin(batch.condition)[:, :, None] - batch.values) ** 2).mean())

    def sample(self, batch, n_samples=1, *, generator=None):
        out = self.lin(batch.condition)[:, :, None]
        return out.unsqueeze(0).expand(n_samples, *out.shape)


def _problem(n=40, d=3, sigma=0.5, s=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d + 1, generator=g, dtype=torch.float64)
    y = X @ w[:d] + w[d] + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    batch = TrajectoryBatch(y[:, None, None], torch.zeros(1, dtype=torch.float64), condition=X)
    Phi = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)  # parameter order: weight, bias
    cov = torch.linalg.inv(Phi.T @ Phi / sigma**2 + torch.eye(d + 1, dtype=torch.float64) / s**2)
    mean = cov @ Phi.T @ y / sigma**2
    return batch, mean, cov


@pytest.mark.parametrize("jitter", [{}, {"step_jitter": 0.5, "length_jitter": 0.0}], ids=["length", "step"])
def test_hmc_matches_conjugate_posterior(jitter):
    """The default (2-6 leapfrog steps drawn per transition), or 4 steps with the step size
    jittered by ±50 %."""
    batch, mean, cov = _problem()
    torch.manual_seed(0)
    model = _LinReg(3).double()
    hmc = HMC(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    res = hmc.run(n_samples=300, n_warmup=200, n_chains=4, n_leapfrog=4,
                  generator=torch.Generator().manual_seed(1), **jitter)
    draws = res.samples.reshape(-1, 4)
    ess = ess_basic(res.samples)
    sd = cov.diagonal().sqrt()
    # posterior mean within 4 Monte-Carlo standard errors
    assert ((draws.mean(0) - mean).abs() / (sd / ess.sqrt())).max() < 4
    # posterior variance within 4 MC standard errors (var of a variance estimate ~ 2 s^4 / ESS)
    # (its ESS is that of the squared deviations: antithetic HMC draws help the mean, not this)
    ess_sq = ess_basic((res.samples - res.samples.mean((0, 1))) ** 2).clamp(max=draws.shape[0])
    rel = (draws.var(0) / cov.diagonal() - 1).abs()
    assert (rel / (2 / ess_sq).sqrt()).max() < 4
    # the full covariance (correlations of the design) within 4 MC standard errors, each from the
    # ESS of its centred products (a fixed tolerance was at the mercy of the CPU's floating-point
    # path: one machine's chain drew the bias variance 31 % off, 2.1 MC errors)
    dev = res.samples - res.samples.mean((0, 1))
    prod = dev[..., :, None] * dev[..., None, :]  # (chain, draw, 4, 4)
    ess_prod = ess_basic(prod.flatten(-2)).reshape(4, 4).clamp(max=draws.shape[0])
    se = prod.flatten(0, 1).std(0) / ess_prod.sqrt()
    assert ((prod.flatten(0, 1).mean(0) - cov).abs() / se).max() < 4
    assert res.rhat.max() < 1.05
    assert res.ess_bulk.min() > 200 and res.ess_tail.min() > 100
    s = res.summary()
    assert 0.6 < s["accept_rate"] <= 1 and s["divergences"] == 0
    # the adapted inverse mass tracks the posterior variances
    assert ((res.inv_mass.mean(0) / cov.diagonal()).log().abs() < math.log(2.0)).all()


def test_hmc_predictive_and_loss_likelihood_agree_with_posterior():
    batch, mean, cov = _problem(seed=3)
    model = _LinReg(3).double()
    # Gibbs likelihood from the model's mean-squared loss: -n MSE / (2 sigma^2) = Gaussian loglik + const
    lik = LossLikelihood(n_data=40, temperature=2 * 0.5**2)
    res = HMC(model, GaussianPrior(1.0), lik, [batch]).run(
        n_samples=200, n_warmup=150, n_chains=4, n_leapfrog=4, generator=torch.Generator().manual_seed(2))
    draws = res.samples.reshape(-1, 4)
    ess = ess_basic(res.samples)
    assert ((draws.mean(0) - mean).abs() / (cov.diagonal().sqrt() / ess.sqrt())).max() < 4
    # posterior predictive at the data: mean X m, variance x^T S x + sigma^2
    hmc = HMC(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    hmc.result = res
    pred = hmc.predict(batch, generator=torch.Generator().manual_seed(0))
    Phi = torch.cat([batch.condition, torch.ones(40, 1, dtype=torch.float64)], 1)
    pv = (Phi @ cov * Phi).sum(1) + 0.25
    assert ((pred.samples.var(0).reshape(-1) / pv) - 1).abs().mean() < 0.1
    gibbs = HMC(model, GaussianPrior(1.0), lik, [batch])
    gibbs.result = res
    with pytest.raises(TypeError, match="explicit Likelihood"):
        gibbs.predict(batch)


def test_rhat_and_ess_on_known_chains():
    g = torch.Generator().manual_seed(0)
    iid = torch.randn(4, 1000, 3, generator=g, dtype=torch.float64)
    assert rhat(iid).max() < 1.01
    assert ((ess_bulk(iid) / 4000 - 1).abs() < 0.15).all()
    # AR(1) with phi: ESS = N (1 - phi) / (1 + phi)
    phi = 0.6
    x = torch.zeros(4, 4000, 2, dtype=torch.float64)
    e = torch.randn(4, 4000, 2, generator=g, dtype=torch.float64)
    for t in range(1, 4000):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    expected = 16000 * (1 - phi) / (1 + phi)
    assert ((ess_basic(x) / expected - 1).abs() < 0.2).all()
    assert ((ess_bulk(x) / expected - 1).abs() < 0.2).all()
    # quantile indicators of an AR(1) decorrelate faster than the chain itself
    assert ((ess_tail(x) > 0.8 * expected) & (ess_tail(x) < 16000)).all()
    # chains stuck at different places are flagged
    shifted = iid + torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)[:, None, None]
    assert rhat(shifted).min() > 1.05 and split_rhat(shifted).min() > 1.05
    # a chain that drifts within itself is caught by splitting
    drift = iid + torch.linspace(0, 3, 1000, dtype=torch.float64)[None, :, None]
    assert split_rhat(drift).min() > 1.1
    # a chain with the right location but wrong scale is caught by the folded R-hat
    scaled = iid * torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=torch.float64)[:, None, None]
    assert rhat(scaled).min() > 1.05


def test_trajectory_lengths_are_uniform_around_n_leapfrog():
    from sciflow.uq.nuts import NUTS

    g = torch.Generator().manual_seed(0)
    assert HMC._lengths(5, 8, 0.0, g) == [8] * 5
    n = torch.tensor(HMC._lengths(20000, 8, 0.5, g))
    assert int(n.min()) == 4 and int(n.max()) == 12 and abs(float(n.double().mean()) - 8) < 0.05
    counts = torch.bincount(n)[4:]
    assert float(counts.min()) > 0.9 * 20000 / 9                  # every length in 4..12 about equally often
    assert HMC._lengths(100, 1, 0.9, g) == [1] * 100             # never below one step
    batch, _, _ = _problem()
    hmc = HMC(_LinReg(3).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    with pytest.raises(ValueError, match="length_jitter must be in"):
        hmc.run(n_samples=4, n_warmup=0, length_jitter=1.0)
    with pytest.raises(ValueError, match="length_jitter does not apply"):
        NUTS(_LinReg(3).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch]).run(
            n_samples=4, n_warmup=0, length_jitter=0.5)


def test_warmup_windows_follow_stan():
    init, term, ends = warmup_windows(1000)
    assert (init, term) == (75, 50)
    assert ends == [100, 150, 250, 450, 950]
    init, term, ends = warmup_windows(100)
    assert init == 15 and term == 10 and ends[-1] == 90


def test_hmc_input_errors():
    batch, _, _ = _problem()
    model = _LinReg(3).double()
    with pytest.raises(TypeError, match="Prior"):
        HMC(model, 1.0, GaussianLikelihood(0.5), [batch])
    with pytest.raises(ValueError, match="frozen"):
        HMC(model, GaussianPrior(), GaussianLikelihood(0.5), [batch], frozen=["nope"])
    with pytest.raises(RuntimeError, match="run"):
        HMC(model, GaussianPrior(), GaussianLikelihood(0.5), [batch]).predict(batch)
    with pytest.raises(ValueError, match="positive"):
        GaussianLikelihood(0.0)


def test_nuts_matches_conjugate_posterior():
    from sciflow.uq.nuts import NUTS

    batch, mean, cov = _problem(n=30, d=1, seed=5)
    model = _LinReg(1).double()
    nuts = NUTS(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    res = nuts.run(n_samples=250, n_warmup=150, n_chains=2, max_tree_depth=6,
                   generator=torch.Generator().manual_seed(0))
    draws = res.samples.reshape(-1, 2)
    ess = ess_basic(res.samples).clamp(max=draws.shape[0])
    sd = cov.diagonal().sqrt()
    assert ((draws.mean(0) - mean).abs() / (sd / ess.sqrt())).max() < 4
    ess_sq = ess_basic((res.samples - res.samples.mean((0, 1))) ** 2).clamp(max=draws.shape[0])
    assert ((draws.var(0) / cov.diagonal() - 1).abs() / (2 / ess_sq).sqrt()).max() < 4
    assert res.rhat.max() < 1.05 and res.divergences.sum() == 0
    # trajectories adapt their length: shallow trees on this well-conditioned target
    assert 1 <= sum(nuts.tree_depths) / len(nuts.tree_depths) <= 4
    assert len(nuts.tree_depths) == 2 * (150 + 250) and nuts.max_depth_fraction == 0


def test_nuts_reports_trajectories_cut_at_the_depth_limit():
    """One doubling (two leapfrog steps at most) cannot reach a U-turn at the adapted step size:
    nearly every transition stops at the limit, which is counted and warned about."""
    from sciflow.uq.nuts import NUTS

    batch, _, _ = _problem(n=30, d=1, seed=5)
    nuts = NUTS(_LinReg(1).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    with pytest.warns(RuntimeWarning, match=r"post-warm-up transitions .* reached max_tree_depth=1"):
        nuts.run(n_samples=50, n_warmup=50, n_chains=2, max_tree_depth=1, generator=torch.Generator().manual_seed(0))
    assert nuts.max_depth_fraction > 0.5


def test_nuts_short_run_is_on_target():
    from sciflow.uq.nuts import NUTS

    batch, mean, cov = _problem(n=30, d=1, seed=6)
    nuts = NUTS(_LinReg(1).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    res = nuts.run(n_samples=60, n_warmup=40, n_chains=1, max_tree_depth=5,
                   generator=torch.Generator().manual_seed(1))
    draws = res.samples.reshape(-1, 2)
    ess = ess_basic(res.samples).clamp(max=60)
    assert ((draws.mean(0) - mean).abs() / (cov.diagonal().sqrt() / ess.sqrt())).max() < 5
    assert 0.3 < (draws.var(0) / cov.diagonal()).min() and (draws.var(0) / cov.diagonal()).max() < 3
    with pytest.raises(ValueError, match="tree_depth"):
        nuts.run(n_samples=4, n_warmup=0, max_tree_depth=0)


def test_prior_and_likelihood_densities_match_scipy():
    import numpy as np
    import scipy.stats as st

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 5, generator=g, dtype=torch.float64)
    scale = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    ref = st.norm.logpdf(theta.numpy(), 0, scale.numpy()).sum(-1)
    np.testing.assert_allclose(GaussianPrior(scale).log_prob(theta).numpy(), ref, rtol=1e-10)
    pred = torch.randn(4, 6, 2, generator=g, dtype=torch.float64)  # (chains, *event)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    ref = st.norm.logpdf(y.numpy(), pred.numpy(), 0.3).sum((1, 2))
    np.testing.assert_allclose(GaussianLikelihood(0.3).log_prob(pred, y).numpy(), ref, rtol=1e-10)
    with pytest.raises(ValueError, match="does not end"):
        GaussianLikelihood(0.3).log_prob(pred, y[:, :1])
