"""Function-space MCMC diagnostics (Izmailov et al. 2021): R-hat/ESS of a network's predictions,
which a weight-space permutation of hidden units leaves unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior, LossLikelihood
from sciflow.uq.diagnostics import convergence_diagnostics, ess_bulk, ess_tail, rhat
from sciflow.uq.hmc import HMC, HMCResult


class _TanhNet(SciflowModel):
    """y = w2 . tanh(W1 x + b1) + b2 with two hidden units; x in ``condition`` (batch, 1), y in
    ``values`` (batch, 1, 1). Swapping the two hidden units leaves the function unchanged."""

    batch_type = TrajectoryBatch

    def __init__(self, hidden: int = 2):
        super().__init__()
        self.inner, self.outer = nn.Linear(1, hidden), nn.Linear(hidden, 1)

    def forward(self, x):
        return self.outer(torch.tanh(self.inner(x)))

    def loss(self, batch):
        return LossOutput(((self(batch.condition)[:, :, None] - batch.values) ** 2).mean())

    def sample(self, batch, n_samples=1, *, generator=None):
        out = self(batch.condition)[:, :, None]
        return out.unsqueeze(0).expand(n_samples, *out.shape)


# flat parameter order: inner.weight (2), inner.bias (2), outer.weight (2), outer.bias (1)
_THETA = torch.tensor([2.0, -1.5, 0.5, 1.0, 1.2, -0.8, 0.1], dtype=torch.float64)
_SWAP = [1, 0, 3, 2, 5, 4, 6]  # the same network with its hidden units exchanged


def _batch(n=24, sigma=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-2, 2, n, dtype=torch.float64)[:, None]
    model = _TanhNet().double()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(_THETA, model.parameters())
        y = model(x) + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return TrajectoryBatch(y[:, :, None], torch.zeros(1, dtype=torch.float64), condition=x)


def _with_draws(samples: torch.Tensor, likelihood=None) -> HMC:
    """An HMC predictor whose 'run' produced the given ``(chains, draws, 7)`` weights."""
    batch = _batch()
    hmc = HMC(_TanhNet().double(), GaussianPrior(1.0), likelihood or GaussianLikelihood(0.05), [batch])
    w = convergence_diagnostics(samples)
    c = samples.shape[0]
    lp = hmc.log_prob(samples.reshape(-1, 7)).reshape(c, -1)
    hmc.result = HMCResult(samples, lp, torch.ones(c), torch.ones(c), torch.ones(c, 7), torch.zeros(c),
                           w.rhat, w.ess_bulk, w.ess_tail)
    return hmc


def _iid_draws(chains=4, n=400, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return _THETA + scale * torch.randn(chains, n, 7, generator=g, dtype=torch.float64)


def _held_out():
    x = torch.linspace(-2.5, 2.5, 16, dtype=torch.float64)[:, None]
    return TrajectoryBatch(torch.zeros(16, 1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                           condition=x)


def test_iid_chains_have_function_rhat_one():
    hmc = _with_draws(_iid_draws())
    diag = hmc.function_diagnostics(_held_out())
    assert diag.rhat.shape == (16, 1, 1)  # one value per output, shaped like a prediction
    s = diag.summary()
    assert s["median_rhat"] < 1.01 and s["max_rhat"] < 1.03
    # iid draws: ESS close to the 1600 draws (bulk within MC noise; 5 %/95 % indicators too)
    assert 0.7 * 1600 < s["min_ess_bulk"] and s["median_ess_bulk"] < 1.3 * 1600
    assert s["min_ess_tail"] > 0.6 * 1600
    assert s["n_undefined"] == 0 and s["n_chains"] == 4 and s["n_draws"] == 400
    assert s["frac_rhat_above"] == 0.0
    # the weights are iid as well
    assert hmc.result.summary()["max_rhat"] < 1.03 and hmc.result.summary()["rhat_log_prob"] < 1.03


def test_chains_in_different_modes_have_large_function_rhat():
    draws = _iid_draws()
    other = _THETA.clone()
    other[4:6] *= -0.5  # a different function (output weights shrunk and flipped)
    draws[2:] += other - _THETA
    s = _with_draws(draws).function_diagnostics(_held_out()).summary()
    assert s["median_rhat"] > 1.5 and s["frac_rhat_above"] > 0.9  # (rank-normalised R-hat is bounded)
    assert s["min_ess_bulk"] < 20  # 4 chains in two clusters: a handful of effective draws


def test_permuted_hidden_units_fool_weight_rhat_not_function_rhat():
    draws = _iid_draws()
    draws[2:] = draws[2:, :, _SWAP]  # chains 2, 3 sit in the permuted copy of the same mode
    hmc = _with_draws(draws)
    weights = hmc.result.summary()
    assert weights["max_rhat"] > 1.5 and weights["median_rhat"] > 1.5  # 6 of the 7 weights moved
    assert hmc.result.rhat[6] < 1.03  # the output bias is not permuted
    # the likelihood is invariant, so the log posterior mixes, and so do the predictions
    assert weights["rhat_log_prob"] < 1.03
    s = hmc.function_diagnostics(_held_out()).summary()
    assert s["median_rhat"] < 1.01 and s["max_rhat"] < 1.03
    # function draws are exactly those of the unpermuted chains
    f = hmc.function_draws(_held_out())
    g = _with_draws(_iid_draws()).function_draws(_held_out())
    torch.testing.assert_close(f, g)


def test_convergence_diagnostics_chunking_and_constants():
    g = torch.Generator().manual_seed(1)
    draws = torch.randn(3, 50, 4, 5, generator=g, dtype=torch.float64)
    draws[:, :, 0, 0] = 2.0  # a fixed output: R-hat undefined, left out of the summary
    draws[:, :, 1, 1] = torch.arange(3.0, dtype=torch.float64)[:, None]  # stuck chains: R-hat = inf
    d = convergence_diagnostics(draws, max_elements=3 * 50 * 3)  # 7 chunks of <= 3 quantities
    assert d.rhat.shape == (4, 5)
    ok = torch.ones(4, 5, dtype=torch.bool)
    ok[0, 0] = ok[1, 1] = False
    torch.testing.assert_close(d.rhat[ok], rhat(draws)[ok])
    torch.testing.assert_close(d.ess_bulk[ok], ess_bulk(draws)[ok])
    torch.testing.assert_close(d.ess_tail[ok], ess_tail(draws)[ok])
    assert torch.isnan(d.rhat[0, 0]) and torch.isinf(d.rhat[1, 1])
    s = d.summary()
    assert s["n_undefined"] == 1 and s["n_quantities"] == 20 and s["max_rhat"] == float("inf")
    with pytest.raises(ValueError, match="NaN"):
        convergence_diagnostics(torch.full((2, 10, 3), float("nan")))
    with pytest.raises(ValueError, match="4 draws"):
        convergence_diagnostics(torch.zeros(2, 3, 3))


def test_function_diagnostics_with_loss_likelihood_and_before_run():
    batch = _batch()
    lik = LossLikelihood(n_data=24, temperature=2 * 0.05**2)
    hmc = HMC(_TanhNet().double(), GaussianPrior(1.0), lik, [batch])
    with pytest.raises(RuntimeError, match="run"):
        hmc.function_diagnostics(_held_out())
    # a Gibbs likelihood has no predictive noise, but the network's predictions exist
    hmc = _with_draws(_iid_draws(n=50), likelihood=lik)
    assert hmc.function_draws(_held_out()).shape == (4, 50, 16, 1, 1)
    assert hmc.function_diagnostics(_held_out()).summary()["max_rhat"] < 1.1


def test_rank_normalisation_averages_ties_like_scipy():
    """Rejected MCMC transitions repeat a draw: ties must get their average rank (vectorised)."""
    import numpy as np
    import scipy.stats as st

    from sciflow.uq.diagnostics import _rank_normalize

    g = torch.Generator().manual_seed(2)
    tied = torch.randint(0, 5, (4, 30, 7), generator=g).to(torch.float64)
    free = torch.randn(4, 30, 7, generator=g, dtype=torch.float64)
    for x in (tied, free):
        flat = x.reshape(120, 7).numpy()
        ref = st.norm.ppf((st.rankdata(flat, axis=0) - 0.375) / 120.25)
        np.testing.assert_allclose(_rank_normalize(x).reshape(120, 7).numpy(), ref, rtol=0, atol=1e-12)
    # the tail ESS's quantiles (one sort, no torch.quantile size limit) follow torch.quantile's rule
    from sciflow.uq.diagnostics import _pooled_quantile, _sort_pooled

    flat = free.reshape(120, 7)
    for q in (0.05, 0.5, 0.95):
        torch.testing.assert_close(_pooled_quantile(_sort_pooled(flat), q), torch.quantile(flat, q, dim=0),
                                   rtol=0, atol=1e-14)
