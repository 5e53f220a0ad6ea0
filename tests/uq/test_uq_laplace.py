"""Last-layer Laplace: the closed-form Bayesian linear regression it reduces to on fixed features,
MacKay's prior precision at the evidence maximum, draws with the analytic variance, coverage and
extrapolation on a trained MLP, a residual head, and the models and heads it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.uq import LastLayerLaplace, PointForecaster
from sciflow.uq.scores import interval_coverage

DT = torch.float64


def batch_of(x, y):
    """Regression x -> y as a TrajectoryBatch: values (n, 2, d) (x padded with zeros to y's width)."""
    x = torch.cat([x, torch.zeros(x.shape[0], y.shape[1] - x.shape[1], dtype=x.dtype)], 1)
    values = torch.stack([x, y], 1)
    return TrajectoryBatch(values=values, times=torch.tensor([0.0, 1.0], dtype=DT))


class Features(nn.Module):
    """Fixed random features then a linear layer: the network is linear in its last layer."""

    def __init__(self, d_in=2, d_out=2, width=12, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(d_in, width, generator=g, dtype=DT) * 2
        self.c = torch.rand(width, generator=g, dtype=DT) * 6
        self.out = nn.Linear(width, d_out).double()

    def features(self, x):
        x = torch.cat([x, torch.zeros(x.shape[0], self.w.shape[0] - x.shape[1], dtype=x.dtype)], 1)
        return torch.cos(x @ self.w + self.c)

    def forward(self, x):
        return self.out(self.features(x))


def test_fixed_features_give_bayesian_linear_regression_exactly():
    """With the last layer set to the ridge solution (the BLR posterior mean), the predictive mean
    and variance are BLR's: phi^T (Phi^T Phi / s2 + lam I)^-1 phi + s2, for every output."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, generator=g, dtype=DT) * 4 - 2
    y = torch.cat([torch.sin(2 * x), torch.cos(x)], 1) + 0.1 * torch.randn(40, 2, generator=g, dtype=DT)
    net = Features()
    lam, s2 = 3.0, 0.01
    phi = torch.cat([net.features(x), torch.ones(40, 1, dtype=DT)], 1)
    H = phi.T @ phi / s2 + lam * torch.eye(13, dtype=DT)
    w = torch.linalg.solve(H, phi.T @ y / s2)                       # (13, 2): BLR posterior means
    with torch.no_grad():
        net.out.weight.copy_(w[:-1].T)
        net.out.bias.copy_(w[-1])
    model = PointForecaster(net)
    lap = LastLayerLaplace(model, prior_precision=lam, observation_noise=s2).fit([batch_of(x, y)])
    xt = torch.linspace(-3, 3, 25, dtype=DT)[:, None]
    pred = lap.predict(batch_of(xt, torch.zeros(25, 2, dtype=DT)))
    pt = torch.cat([net.features(xt), torch.ones(25, 1, dtype=DT)], 1)
    var = (pt @ torch.linalg.solve(H, pt.T)).diagonal() + s2
    torch.testing.assert_close(pred.mean[:, 0], pt @ w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pred.variance[:, 0], var[:, None].expand(-1, 2), rtol=1e-10, atol=1e-14)
    z = 1.6448536269514722
    torch.testing.assert_close(pred.upper - pred.mean, z * pred.variance.sqrt(), rtol=1e-10, atol=1e-14)


def test_prior_precision_maximises_the_evidence():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(60, 1, generator=g, dtype=DT) * 4 - 2
    y = torch.cat([torch.sin(2 * x), x ** 2 / 4], 1) + 0.1 * torch.randn(60, 2, generator=g, dtype=DT)
    net = Features(seed=3)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    lap = LastLayerLaplace(PointForecaster(net), observation_noise=0.01).fit([batch_of(x, y)])
    lam = lap.prior_precision
    best = lap.log_marginal_likelihood()
    for f in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0):
        assert lap.log_marginal_likelihood(lam * f) < best
    # the noise defaults to the training residuals' mean square
    lap2 = LastLayerLaplace(PointForecaster(net)).fit([batch_of(x[:30], y[:30]), batch_of(x[30:], y[30:])])
    with torch.no_grad():
        assert abs(lap2.observation_noise - float(((net(x) - y) ** 2).mean())) < 1e-12


def test_draws_have_the_analytic_moments_and_are_joint_over_the_outputs():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(30, 1, generator=g, dtype=DT) * 2
    y = torch.cat([x, -x], 1) + 0.2 * torch.randn(30, 2, generator=g, dtype=DT)
    lap = LastLayerLaplace(PointForecaster(Features()), prior_precision=1.0, observation_noise=0.04,
                           n_samples=20000).fit([batch_of(x, y)])
    xt = torch.tensor([[0.5], [4.0]], dtype=DT)
    pred = lap.predict(batch_of(xt, torch.zeros(2, 2, dtype=DT)), generator=torch.Generator().manual_seed(0))
    assert pred.samples.shape == (20000, 2, 1, 2)
    rel = (pred.samples.var(0) / pred.variance - 1).abs().max()
    assert rel < 0.05, rel                                           # 20000 draws: ~2 % s.e.
    torch.testing.assert_close(pred.samples.mean(0), pred.mean, rtol=0, atol=4 * float(pred.std.max()) / 141)


def covers_and_widens(lap, xt, yt, far):
    """90 % intervals of ``lap`` cover 0.85-0.95 of ``(xt, yt)`` and the epistemic variance at
    ``x = far`` (outside the training inputs) is over 10x its median at ``xt``."""
    pred = lap.predict(batch_of(xt, yt))
    cov = float(interval_coverage(pred.lower, pred.upper, yt[:, None]))
    assert 0.85 <= cov <= 0.95, cov
    out = lap.predict(batch_of(torch.tensor([[far]], dtype=DT), torch.zeros(1, yt.shape[1], dtype=DT)))
    epi_in = float((pred.variance - lap.observation_noise).median())
    epi_far = float(out.variance.max() - lap.observation_noise)
    assert epi_far > 10 * epi_in, (epi_far, epi_in)


def test_trained_mlp_covers_and_widens_away_from_the_data():
    """An MLP trained on y = sin(3x) + 0.1 e, x in [-1, 1]: 90 % intervals cover held-out points
    at 0.85-0.95 and the epistemic variance is larger outside the training range."""
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    x = torch.rand(400, 1, generator=g, dtype=DT) * 2 - 1
    f = lambda x: torch.sin(3 * x)  # noqa: E731
    y = f(x) + 0.1 * torch.randn(400, 1, generator=g, dtype=DT)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    model = PointForecaster(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    train = batch_of(x, y)
    for _ in range(1500):
        opt.zero_grad()
        model.loss(train).total.backward()
        opt.step()
    lap = LastLayerLaplace(model).fit([train])
    assert lap.layer is net[-1]
    xt = torch.rand(2000, 1, generator=g, dtype=DT) * 2 - 1
    yt = f(xt) + 0.1 * torch.randn(2000, 1, generator=g, dtype=DT)
    covers_and_widens(lap, xt, yt, far=3.0)
    # the noise fitted on held-out data: there the mean predictive variance is the mean squared error
    xv = torch.rand(300, 1, generator=g, dtype=DT) * 2 - 1
    val = batch_of(xv, f(xv) + 0.1 * torch.randn(300, 1, generator=g, dtype=DT))
    lam_before = lap.prior_precision
    lap.fit_noise([val])
    pv = lap.predict(val)
    mse = float(((pv.mean - val.values[:, 1:]) ** 2).mean())
    assert abs(float(pv.variance.mean()) / mse - 1) < 1e-6
    assert lap.prior_precision != lam_before                      # re-tuned for the new noise
    assert 0.85 <= float(interval_coverage(*(lambda p: (p.lower, p.upper))(lap.predict(batch_of(xt, yt))),
                                           yt[:, None])) <= 0.95


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 2).double()

    def forward(self, x):
        return x + self.head(torch.tanh(x.repeat(1, 2)[:, :3]))


class Squashed(Residual):
    def forward(self, x):
        return torch.tanh(self.head(torch.tanh(x.repeat(1, 2)[:, :3])))


def test_residual_heads_are_accepted_and_transformed_heads_refused():
    x = torch.randn(8, 2, dtype=DT)
    b = batch_of(x, x + 0.1)
    lap = LastLayerLaplace(PointForecaster(Residual())).fit([b])
    assert lap.predict(b).mean.shape == (8, 1, 2)
    with pytest.raises(ValueError, match="not the last layer's output"):
        LastLayerLaplace(PointForecaster(Squashed())).fit([b])


@pytest.mark.parametrize("method", ["LastLayerLaplace", "LinearizedLaplace", "SWAG"])
def test_point_network_methods_refuse_other_models(method):
    from sciflow import uq
    cls = getattr(uq, method)
    with pytest.raises(TypeError, match=f"{method} wraps a SciflowModel"):
        cls(nn.Linear(1, 2))
    with pytest.raises(ValueError, match=f"{method} needs a point model"):
        cls(uq.GaussianForecaster(nn.Linear(1, 4)))


def test_bad_use_is_refused_with_clear_errors():
    b = batch_of(torch.randn(4, 1, dtype=DT), torch.randn(4, 2, dtype=DT))
    with pytest.raises(ValueError, match="no nn.Linear"):
        LastLayerLaplace(PointForecaster(nn.Tanh()))
    with pytest.raises(ValueError, match="inside the model"):
        LastLayerLaplace(PointForecaster(Features()), last_layer=nn.Linear(12, 2))
    with pytest.raises(ValueError, match="prior_precision"):
        LastLayerLaplace(PointForecaster(Features()), prior_precision=0.0)
    with pytest.raises(ValueError, match="observation_noise"):
        LastLayerLaplace(PointForecaster(Features()), observation_noise=math.nan)
    lap = LastLayerLaplace(PointForecaster(Features()))
    with pytest.raises(RuntimeError, match="fit"):
        lap.predict(b)
    with pytest.raises(ValueError, match="no batches"):
        lap.fit([])
    with pytest.raises(RuntimeError, match="before fit_noise"):
        lap.fit_noise([b])
