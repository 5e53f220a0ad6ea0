"""Partly missing targets (``IrregularBatch.target_mask``): conformal calibration, the HMC likelihood
and the scores count the observed entries only, whatever fills the missing ones (NaN included)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sciflow.data.batches import IrregularBatch
from sciflow.models.base import SciflowModel
from sciflow.uq.base import Predictor, observed_for
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior
from sciflow.uq.conformal import AbsoluteResidual, SplitConformal, conformal_quantile
from sciflow.uq.evaluate import evaluate, score_prediction
from sciflow.uq.hmc import HMC
from sciflow.uq.prediction import Prediction


def _batch(n=30, horizon=4, channels=2, seed=0, fill=math.nan):
    """Targets ``(n, horizon, channels)``, about a third missing (filled with ``fill``)."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, 5, channels, generator=g, dtype=torch.float64)
    times = torch.linspace(0, 1, 5, dtype=torch.float64).expand(n, 5)
    targets = torch.randn(n, horizon, channels, generator=g, dtype=torch.float64)
    observed = torch.rand(n, horizon, channels, generator=g) > 0.35
    return IrregularBatch(values, times, torch.ones_like(values, dtype=torch.bool),
                          targets=targets.masked_fill(~observed, fill), target_mask=observed)


class _Zero(Predictor):
    """Mean 0, unit Gaussian spread and 16 fixed samples: residuals are the targets themselves."""

    def predict(self, batch, *, generator=None):
        shape = batch.targets.shape
        g = torch.Generator().manual_seed(1)
        samples = torch.randn(16, *shape, generator=g, dtype=torch.float64)
        return Prediction(torch.zeros(shape, dtype=torch.float64), -torch.ones(shape, dtype=torch.float64),
                          torch.ones(shape, dtype=torch.float64), samples, torch.ones(shape, dtype=torch.float64),
                          alpha=0.2)


def test_masked_conformal_quantile_is_each_columns_own() -> None:
    """Column by column, the quantile of the observed scores alone (its own n), inf where too few."""
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(25, 6, generator=g, dtype=torch.float64)
    observed = torch.rand(25, 6, generator=g) > 0.4
    observed[:, 5] = False
    observed[:3, 5] = True  # 3 scores: ceil(4 * 0.9) = 4 > 3 -> inf
    q = conformal_quantile(scores.masked_fill(~observed, 1e9), 0.1, observed)
    for j in range(6):
        col = scores[observed[:, j], j]
        torch.testing.assert_close(q[j], conformal_quantile(col, 0.1), rtol=0, atol=0)
    assert math.isinf(float(q[5]))
    full = torch.ones_like(observed)
    torch.testing.assert_close(conformal_quantile(scores, 0.1, full), conformal_quantile(scores, 0.1))


def test_split_conformal_ignores_missing_calibration_targets() -> None:
    """Calibrated on a batch with NaN in its missing targets: the quantile per (lead, channel) is
    that of the observed |targets| (the residuals of a zero mean), and NaN never reaches it."""
    batch = _batch()
    conf = SplitConformal(_Zero(), 0.2, AbsoluteResidual(), separate_dims=(1, 2)).calibrate([batch])
    m, y = batch.target_mask, batch.targets
    for t in range(y.shape[1]):
        for c in range(y.shape[2]):
            ref = conformal_quantile(y[m[:, t, c], t, c].abs(), 0.2)  # |y - mean|, mean 0
            torch.testing.assert_close(conf.q[t, c], ref, rtol=0, atol=0)
    assert conf.n_calibration == int(m.sum(0).min())
    with pytest.raises(ValueError, match="NaN"):  # the same batch taken as fully observed
        SplitConformal(_Zero(), 0.2, AbsoluteResidual()).calibrate([batch], observed=None)


def test_gaussian_likelihood_counts_observed_entries_with_finite_gradients() -> None:
    batch = _batch(n=6)
    lik = GaussianLikelihood(0.7)
    f = torch.randn(3, *batch.targets.shape, dtype=torch.float64, requires_grad=True)
    lp = lik.log_prob(f, batch.targets, batch.target_mask)
    m, y = batch.target_mask, batch.targets
    ref = torch.stack([torch.distributions.Normal(f[k][m], 0.7).log_prob(y[m]).sum() for k in range(3)])
    torch.testing.assert_close(lp, ref)
    (grad,) = torch.autograd.grad(lp.sum(), f)
    assert torch.isfinite(grad).all() and (grad[:, ~m] == 0).all()
    with pytest.raises(ValueError, match="observed has shape"):
        lik.log_prob(f, batch.targets, batch.target_mask[:, :2])


class _LastValue(SciflowModel):
    """Forecasts every target step as a linear map of the last observed values."""

    batch_type = IrregularBatch

    def __init__(self, channels=2, horizon=4):
        super().__init__()
        self.lin = nn.Linear(channels, channels, dtype=torch.float64)
        self.horizon = horizon

    def loss(self, batch):
        raise NotImplementedError

    def sample(self, batch, n_samples=1, *, generator=None):
        out = self.lin(batch.values[:, -1]).unsqueeze(1).expand(-1, self.horizon, -1)
        return out.unsqueeze(0).expand(n_samples, *out.shape)


def test_hmc_likelihood_leaves_missing_targets_out() -> None:
    """The HMC target density is the same whatever fills the missing targets, and equals the
    prior plus the Gaussian log-likelihood of the observed entries."""
    torch.manual_seed(0)
    model = _LastValue()
    nan_fill, zero_fill = _batch(fill=math.nan), _batch(fill=0.0)
    hmc = HMC(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [nan_fill])
    theta = hmc.flat_parameters().unsqueeze(0) + 0.1 * torch.randn(2, hmc.dim, dtype=torch.float64)
    lp = hmc.log_prob(theta)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, HMC(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [zero_fill]).log_prob(theta))
    m = nan_fill.target_mask
    for c in range(2):
        w, b = theta[c, :4].reshape(2, 2), theta[c, 4:]
        f = (nan_fill.values[:, -1] @ w.T + b).unsqueeze(1).expand(-1, 4, -1)
        ref = GaussianPrior(1.0).log_prob(theta[c]) + torch.distributions.Normal(f[m], 0.5).log_prob(
            nan_fill.targets[m]).sum()
        torch.testing.assert_close(lp[c], ref)


def test_scores_cover_observed_entries_only(tmp_path) -> None:
    """``evaluate`` and ``score_prediction(observed=)`` score the observed entries as a flat set:
    the same numbers as scoring those entries alone; NaN fills are no error."""
    batch = _batch()
    out = evaluate(_Zero(), [batch], out_dir=tmp_path)  # the plots too: of the observed entries
    assert out["plots"] and all(Path(p).is_file() for p in out["plots"])
    pred = _Zero().predict(batch)
    m = batch.target_mask
    flat = Prediction(pred.mean[m], pred.lower[m], pred.upper[m], pred.samples[:, m], pred.variance[m], alpha=0.2)
    ref = score_prediction(flat, batch.targets[m])
    for k in ("rmse", "coverage", "width", "interval_score", "nll", "crps", "calibration_error", "spread_skill"):
        assert out[k] == pytest.approx(ref[k], rel=1e-12), k
    assert out["n"] == 30
    assert out["rmse"] == pytest.approx(float(batch.targets[m].pow(2).mean().sqrt()), rel=1e-12)
    with pytest.raises(ValueError, match="truth contains NaN"):
        score_prediction(pred, batch.targets)


def test_observed_for_reads_the_target_mask_and_checks_its_shape() -> None:
    batch = _batch()
    assert torch.equal(observed_for(batch, batch.targets), batch.target_mask)
    with pytest.raises(ValueError, match="target_mask has shape"):
        observed_for(batch, batch.targets[:, :2])
    full = IrregularBatch(batch.values, batch.times, batch.mask, targets=torch.zeros_like(batch.targets))
    assert observed_for(full, full.targets) is None
