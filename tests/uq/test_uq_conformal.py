"""Split conformal: held-out coverage within ±2% of 1 - alpha over repeated random splits."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.uq.base import Predictor
from sciflow.uq.conformal import AbsoluteResidual, NormalizedResidual, QuantileScore, SplitConformal, conformal_quantile
from sciflow.uq.heads import PointForecaster
from sciflow.uq.prediction import Prediction
from sciflow.uq.sampling import SamplingPredictor
from sciflow.uq.scores import interval_coverage, interval_width


def _data(n, g, horizon=1):
    x = torch.rand(n, generator=g, dtype=torch.float64) * 6 - 3
    noise = 0.1 + 0.3 * x.abs()
    t = torch.arange(1, horizon + 1, dtype=torch.float64)
    y = (torch.sin(x)[:, None] * t
         + noise[:, None] * t.sqrt() * torch.randn(n, horizon, generator=g, dtype=torch.float64))
    return x, y


class _Fixed(Predictor):
    """An imperfect, over-confident Gaussian predictor: mean 0.8 sin(x), std 0.5 x the truth's."""

    def __init__(self, x):
        self.x = x

    def predict(self, batch, *, generator=None):
        idx = batch
        x = self.x[idx]
        mean = 0.8 * torch.sin(x)[:, None].expand(-1, 1)
        var = (0.5 * (0.1 + 0.3 * x.abs()))[:, None] ** 2
        return Prediction.from_gaussian(mean, var, alpha=0.1)


@pytest.mark.parametrize("score", [AbsoluteResidual(), NormalizedResidual(), QuantileScore()])
@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_split_conformal_coverage_over_repeated_splits(score, alpha):
    g = torch.Generator().manual_seed(1)
    n, n_cal, reps = 10000, 4000, 100
    x, y = _data(n, g)
    base = _Fixed(x)
    covs, base_covs = [], []
    for _ in range(reps):
        perm = torch.randperm(n, generator=g)
        cal, test = perm[:n_cal], perm[n_cal:]
        cp = SplitConformal(base, alpha, score)
        pc = base.predict(cal)
        cp.calibrate_scores(score.score(pc, y[cal]))
        pt = cp.predict(test)
        covs.append(interval_coverage(pt.lower, pt.upper, y[test]).item())
        bp = base.predict(test)
        base_covs.append(interval_coverage(bp.lower, bp.upper, y[test]).item())
    covs = torch.tensor(covs)
    # mean coverage in [1-alpha, 1-alpha + 1/(n+1)] up to MC error, well within ±2 %
    assert abs(covs.mean().item() - (1 - alpha)) < 0.01
    sd = math.sqrt(alpha * (1 - alpha) * (1 / (n - n_cal) + 1 / (n_cal + 2)))
    assert (covs - (1 - alpha)).abs().max().item() < 5 * sd + 0.005
    assert (covs - (1 - alpha)).abs().lt(0.02).float().mean().item() > 0.9
    # the base intervals were over-confident: conformal fixed a real miscalibration
    assert torch.tensor(base_covs).mean().item() < 1 - alpha - 0.15


def test_normalized_score_adapts_width_to_noise():
    g = torch.Generator().manual_seed(2)
    x, y = _data(4000, g)
    base = _Fixed(x)
    cal, test = torch.arange(2000), torch.arange(2000, 4000)
    widths = {}
    for name, score in (("abs", AbsoluteResidual()), ("norm", NormalizedResidual())):
        cp = SplitConformal(base, 0.1, score)
        cp.calibrate_scores(score.score(base.predict(cal), y[cal]))
        p = cp.predict(test)
        quiet = x[test].abs() < 1
        widths[name] = (interval_width(p.lower[quiet], p.upper[quiet]).item(),
                        interval_coverage(p.lower[quiet], p.upper[quiet], y[test][quiet]).item())
    # normalised intervals are narrower where the noise is small, and still cover there
    assert widths["norm"][0] < 0.6 * widths["abs"][0]
    assert widths["norm"][1] > 0.85 and widths["abs"][1] > 0.97


def test_per_horizon_intervals_for_multistep_forecast():
    g = torch.Generator().manual_seed(3)
    H, alpha = 4, 0.1
    x, y = _data(6000, g, horizon=H)
    # forecast field (batch, time, space=3) with noise growing with horizon
    yf = y[:, :, None] + 0.05 * torch.randn(6000, H, 3, generator=g, dtype=torch.float64)
    mean = (0.8 * torch.sin(x))[:, None, None] * torch.arange(1, H + 1, dtype=torch.float64)[None, :, None]
    mean = mean.expand(-1, -1, 3)
    pooled_q = {}
    for sep, name in (((1,), "per_horizon"), ((), "pooled")):
        cp = SplitConformal(_Fixed(x), alpha, AbsoluteResidual(), separate_dims=sep)
        cp.calibrate_scores((yf[:3000] - mean[:3000]).abs())
        pred = cp.wrap(Prediction(mean[3000:]))
        cov_h = interval_coverage(pred.lower, pred.upper, yf[3000:], dim=(0, 2))
        pooled_q[name] = (cp.q.reshape(-1), cov_h)
    q_h, cov_h = pooled_q["per_horizon"]
    assert q_h.shape == (H,) and bool((q_h.diff() > 0).all())  # wider with lead time
    assert (cov_h - (1 - alpha)).abs().max().item() < 0.02
    # one quantile pooled over horizons under-covers the late horizons and over-covers early ones
    _, cov_p = pooled_q["pooled"]
    assert cov_p[0].item() > 1 - alpha + 0.04 and cov_p[-1].item() < 1 - alpha - 0.04


def test_conformal_around_a_point_model_through_the_protocol():
    g = torch.Generator().manual_seed(4)
    x, y = _data(2000, g)
    values = torch.stack([x[:, None], y], 1).float()  # (batch, 2, 1)
    batches = [TrajectoryBatch(values[i:i + 250], torch.tensor([0.0, 1.0])) for i in range(0, 2000, 250)]
    net = torch.nn.Linear(1, 1)  # deliberately poor point model
    model = PointForecaster(net, horizon=1)
    cp = SplitConformal(SamplingPredictor(model), 0.1, AbsoluteResidual()).calibrate(batches[:4])
    covs = [interval_coverage(*(lambda p: (p.lower, p.upper))(cp.predict(b)), b.values[:, 1:]).item()
            for b in batches[4:]]
    assert abs(sum(covs) / len(covs) - 0.9) < 0.03
    with pytest.raises(ValueError, match="spread"):
        SplitConformal(SamplingPredictor(model), 0.1, NormalizedResidual()).calibrate(batches[:1])


def test_quantile_rank_and_errors():
    s = torch.arange(1.0, 20.0)  # n = 19 scores 1..19
    assert conformal_quantile(s, 0.1).item() == 18.0  # ceil(20 * 0.9) = 18
    assert math.isinf(conformal_quantile(s[:5], 0.1).item())
    with pytest.raises(RuntimeError, match="calibrate"):
        SplitConformal(_Fixed(torch.zeros(3)), 0.1).predict(torch.arange(3))
    with pytest.raises(ValueError, match="alpha"):
        SplitConformal(_Fixed(torch.zeros(3)), 1.5)
