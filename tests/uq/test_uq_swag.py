"""SWAG: the moments it keeps are those of the collected SGD iterates, its draws have the SWAG
covariance, the model ends at the SWA mean, a trained MLP's predictive covers held-out data and
widens away from it, and bad settings are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.uq import SWAG, PointForecaster
from sciflow.uq.scores import interval_coverage

DT = torch.float64


def batch_of(x, y):
    return TrajectoryBatch(values=torch.stack([x, y], 1), times=torch.tensor([0.0, 1.0], dtype=DT))


def regression(n, g, lo=-1.0, hi=1.0):
    x = torch.rand(n, 1, generator=g, dtype=DT) * (hi - lo) + lo
    return x, torch.sin(3 * x) + 0.1 * torch.randn(n, 1, generator=g, dtype=DT)


def mlp(seed=0):
    torch.manual_seed(seed)
    return PointForecaster(nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1)).double())


def test_moments_are_those_of_the_collected_iterates():
    """Replaying the same SGD steps by hand: the SWA mean, the diagonal variance and the last K
    deviations from the running mean (Maddox et al. 2019, Algorithm 1)."""
    g = torch.Generator().manual_seed(0)
    batches = [batch_of(*regression(16, g)) for _ in range(4)]
    ref, model = mlp(), mlp()
    swag = SWAG(model, rank=3).fit(batches, steps=10, lr=0.05, collect_every=2)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    thetas, running = [], []
    for step in range(10):
        opt.zero_grad()
        ref.loss(batches[step % 4]).total.backward()
        opt.step()
        if (step + 1) % 2 == 0:
            thetas.append(torch.cat([p.detach().reshape(-1) for p in ref.parameters()]))
            running.append(torch.stack(thetas).mean(0))
    T = torch.stack(thetas)
    assert swag.n_collected == 5
    torch.testing.assert_close(swag.mean, T.mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(swag.diag, T.var(0, unbiased=False), rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(swag.deviations, T[-3:] - torch.stack(running[-3:]), rtol=1e-10, atol=1e-14)
    # the model ends at the SWA mean
    torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in model.parameters()]), T.mean(0))


def test_draws_have_the_swag_covariance():
    g = torch.Generator().manual_seed(1)
    batches = [batch_of(*regression(8, g)) for _ in range(3)]
    swag = SWAG(mlp(), rank=4).fit(batches, steps=40, lr=0.1, collect_every=2)
    draws = swag.sample_weights(40000, torch.Generator().manual_seed(0))
    D = swag.deviations
    cov = 0.5 * (torch.diag(swag.diag) + D.T @ D / (D.shape[0] - 1))
    emp = torch.cov(draws.T)
    scale = cov.diagonal().max()
    assert float((emp - cov).abs().max() / scale) < 0.05          # 40000 draws: ~1 % s.e.
    assert float((draws.mean(0) - swag.mean).abs().max() / scale.sqrt()) < 0.05


def test_trained_mlp_covers_and_widens_away_from_the_data():
    """Pre-trained with Adam on y = sin(3x) + 0.1 e, x in [-1, 1], then SWAG; noise fitted on
    validation as the benchmark does: 90 % intervals cover held-out points at 0.8-0.97 and the
    draws spread more at x = 3 than inside the data."""
    g = torch.Generator().manual_seed(2)
    train = batch_of(*regression(400, g))
    model = mlp(2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(1000):
        opt.zero_grad()
        model.loss(train).total.backward()
        opt.step()
    chunks = [train.index(torch.arange(i, 400, 4)) for i in range(4)]
    swag = SWAG(model, rank=10, n_samples=64).fit(chunks, steps=200, lr=0.02, collect_every=4)
    val = batch_of(*regression(300, g))
    p = swag.predict(val, generator=torch.Generator().manual_seed(0))
    swag.observation_noise = max(float(((p.mean - val.values[:, 1:]) ** 2).mean() - p.samples.var(0).mean()), 1e-6)
    xt, yt = regression(2000, g)
    pt = swag.predict(batch_of(xt, yt), generator=torch.Generator().manual_seed(1))
    cov = float(interval_coverage(pt.lower, pt.upper, yt[:, None]))
    assert 0.8 <= cov <= 0.97, cov
    swag.observation_noise = 0.0
    inside = swag.predict(batch_of(xt[:200], yt[:200]), generator=torch.Generator().manual_seed(2))
    far = swag.predict(batch_of(torch.full((1, 1), 3.0, dtype=DT), torch.zeros(1, 1, dtype=DT)),
                       generator=torch.Generator().manual_seed(3))
    assert float(far.samples.var(0).max()) > 5 * float(inside.samples.var(0).median())


def test_bad_settings_are_refused():
    """(Other models than point networks: tests/uq/test_uq_laplace.py, for both methods.)"""
    b = batch_of(torch.randn(4, 1, dtype=DT), torch.randn(4, 1, dtype=DT))
    with pytest.raises(ValueError, match="rank must be an integer >= 2"):
        SWAG(mlp(), rank=1)
    with pytest.raises(ValueError, match="observation_noise"):
        SWAG(mlp(), observation_noise=-1.0)
    swag = SWAG(mlp(), rank=5)
    with pytest.raises(RuntimeError, match="fit"):
        swag.predict(b)
    with pytest.raises(ValueError, match="fewer than rank = 5"):
        swag.fit([b], steps=8, lr=0.1, collect_every=2)
    with pytest.raises(ValueError, match="lr must be"):
        swag.fit([b], steps=10, lr=0.0)
    with pytest.raises(ValueError, match="no batches"):
        swag.fit([], steps=10, lr=0.1)
    with pytest.raises(FloatingPointError, match="non-finite at step"):
        SWAG(mlp(), rank=2).fit([b], steps=50, lr=1e6)
    with pytest.raises(ValueError, match="frozen names"):
        SWAG(mlp(), frozen=["nope"])


def test_multiswag_pools_equal_shares_of_draws():
    """MixturePredictor of two SWAGs (MultiSWAG): equal shares of each component's draws, and a
    spread at least that of either component's own draws around the pooled mean."""
    from sciflow.uq import MixturePredictor
    g = torch.Generator().manual_seed(4)
    batches = [batch_of(*regression(16, g)) for _ in range(4)]
    a = SWAG(mlp(1), rank=3, n_samples=40).fit(batches, steps=24, lr=0.05, collect_every=4)
    b = SWAG(mlp(2), rank=3, n_samples=25).fit(batches, steps=24, lr=0.05, collect_every=4)
    test = batch_of(*regression(8, g))
    gen = torch.Generator().manual_seed(0)
    p = MixturePredictor([a, b]).predict(test, generator=gen)
    assert p.samples.shape == (50, 8, 1, 1)
    gen = torch.Generator().manual_seed(0)
    pa, pb = a.predict(test, generator=gen), b.predict(test, generator=gen)
    torch.testing.assert_close(p.samples[:25], pa.samples[:25])
    torch.testing.assert_close(p.samples[25:], pb.samples)
    within = min(float(pa.samples.var(0).mean()), float(pb.samples.var(0).mean()))
    assert float(p.samples.var(0).mean()) >= 0.99 * within
    with pytest.raises(ValueError, match=">= 2 predictors"):
        MixturePredictor([a])
    with pytest.raises(TypeError, match="must be Predictors"):
        MixturePredictor([a, "b"])
