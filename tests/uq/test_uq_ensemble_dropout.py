"""Deep ensembles and MC dropout on heteroscedastic 1-D data beat a single deterministic model."""

from __future__ import annotations

import warnings

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.nn.mlp import MLP
from sciflow.uq.ensemble import DeepEnsemble, build_members
from sciflow.uq.heads import GaussianForecaster, PointForecaster, beta_nll_loss, gaussian_nll_loss
from sciflow.uq.mc_dropout import MCDropout
from sciflow.uq.prediction import Prediction
from sciflow.uq.sampling import SamplingPredictor
from sciflow.uq.scores import gaussian_nll, interval_coverage

T01 = torch.tensor([0.0, 1.0])


def _batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g) * 6 - 3
    y = torch.sin(x) + (0.05 + 0.25 * x.abs()) * torch.randn(n, generator=g)
    return TrajectoryBatch(torch.stack([x, y], 1)[:, :, None], T01)


def _fit(model, batch, steps=500, lr=5e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch).total.backward()
        opt.step()
    return model.eval()


def _binned_coverage_error(pred: Prediction, batch: TrajectoryBatch) -> float:
    """Mean |coverage - 0.9| over 6 bins of x: conditional calibration, not just marginal."""
    x, y = batch.values[:, 0, 0], batch.values[:, 1:]
    errs = []
    for lo in range(-3, 3):
        m = (x >= lo) & (x < lo + 1)
        errs.append(abs(interval_coverage(pred.lower[m], pred.upper[m], y[m]).item() - 0.9))
    return sum(errs) / len(errs)


@pytest.fixture(scope="module")
def data():
    return _batch(256, 0), _batch(3000, 1)


@pytest.fixture(scope="module")
def baseline(data):
    train, test = data
    torch.manual_seed(0)
    point = _fit(PointForecaster(MLP(1, 1, width=32, depth=2)), train)
    with torch.no_grad():
        sigma2 = point.loss(train).total  # homoscedastic noise variance from training residuals
        mean = point.sample(test, 1)[0]
    pred = Prediction.from_gaussian(mean, sigma2.expand_as(mean), 0.1)
    y = test.values[:, 1:]
    return {"nll": gaussian_nll(pred.mean, pred.variance, y).item(),
            "cov_err": _binned_coverage_error(pred, test)}


def test_deep_ensemble_beats_single_model(data, baseline):
    train, test = data
    ens = DeepEnsemble.fit(lambda: GaussianForecaster(MLP(1, 2, width=32, depth=2), beta=0.5),
                           [train], n_members=4, steps=500, lr=5e-3, seed=0)
    assert ens.vectorised
    assert ens.loss_history[-1] < ens.loss_history[0] - 0.3
    pred = ens.predict(test)
    y = test.values[:, 1:]
    nll = gaussian_nll(pred.mean, pred.variance, y).item()
    assert nll < baseline["nll"] - 0.15
    assert _binned_coverage_error(pred, test) < 0.5 * baseline["cov_err"]
    assert abs(interval_coverage(pred.lower, pred.upper, y).item() - 0.9) < 0.04


def test_mc_dropout_beats_single_model(data, baseline):
    train, test = data
    torch.manual_seed(1)
    model = _fit(GaussianForecaster(MLP(1, 2, width=64, depth=2, dropout=0.1), beta=0.5), train, steps=600)
    pred = MCDropout(model, n_passes=64).predict(test, generator=torch.Generator().manual_seed(0))
    y = test.values[:, 1:]
    assert pred.samples.shape == (64, 3000, 1, 1)
    nll = gaussian_nll(pred.mean, pred.variance, y).item()
    assert nll < baseline["nll"] - 0.15
    assert _binned_coverage_error(pred, test) < 0.5 * baseline["cov_err"]


def test_mc_dropout_passes_differ_and_model_mode_is_restored():
    torch.manual_seed(0)
    model = PointForecaster(MLP(1, 1, width=16, depth=2, dropout=0.5)).eval()
    b = _batch(8, 3)
    pred = MCDropout(model, n_passes=10, chunk_size=3).predict(b)
    assert pred.samples.shape == (10, 8, 1, 1)
    assert pred.samples.std(0).min().item() > 0  # each pass saw its own masks
    assert not model.training and not any(m.training for m in model.modules())
    # agrees with the slow loop definition in distribution: mean over many passes -> same expectation
    with pytest.raises(ValueError, match="no dropout"):
        MCDropout(PointForecaster(MLP(1, 1)), n_passes=4)


def test_vectorised_training_equals_sequential():
    b = _batch(64, 5)
    factory = lambda: GaussianForecaster(MLP(1, 2, width=8, depth=2))  # noqa: E731
    vec = DeepEnsemble.fit(factory, [b], n_members=3, steps=20, lr=1e-2, seed=7, vectorise=True)
    seq = DeepEnsemble.fit(factory, [b], n_members=3, steps=20, lr=1e-2, seed=7, vectorise=False)
    assert vec.vectorised and not seq.vectorised
    for mv, ms in zip(vec.members, seq.members):
        for pv, ps in zip(mv.parameters(), ms.parameters()):
            torch.testing.assert_close(pv, ps, rtol=1e-4, atol=1e-5)
    # members differ (different initialisations)
    p0, p1 = (next(m.parameters()) for m in vec.members[:2])
    assert (p0 - p1).abs().max() > 1e-3


class _NotVmappable(PointForecaster):
    def loss(self, batch):
        out = super().loss(batch)
        if out.total.item() > -1:  # .item() is not allowed under vmap
            return out
        return out


def test_ensemble_falls_back_to_sequential_with_a_warning():
    b = _batch(32, 6)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ens = DeepEnsemble.fit(lambda: _NotVmappable(MLP(1, 1, width=8, depth=1)), [b], n_members=2, steps=5)
    assert not ens.vectorised
    assert any("sequentially" in str(x.message) for x in w)
    assert ens.predict(b).samples.shape == (2, 32, 1, 1)


def test_mixture_moments_are_exact():
    members = build_members(lambda: GaussianForecaster(MLP(1, 2, width=8, depth=1)), 3, seed=0)
    b = _batch(16, 2)
    ens = DeepEnsemble(members, n_samples_per_member=4000)
    pred = ens.predict(b, generator=torch.Generator().manual_seed(0))
    mus, vs = zip(*[m.predict_mean_var(b) for m in members])
    mu, v = torch.stack(mus), torch.stack(vs)
    torch.testing.assert_close(pred.mean, mu.mean(0))
    torch.testing.assert_close(pred.variance, (v + mu**2).mean(0) - mu.mean(0) ** 2)
    # the samples come from the same mixture
    assert (pred.samples.var(0) / pred.variance - 1).abs().max() < 0.1


def test_beta_nll_gradients():
    mean = torch.zeros(5, requires_grad=True)
    var = torch.full((5,), 4.0, requires_grad=True)
    y = torch.arange(5.0)
    (g0,) = torch.autograd.grad(beta_nll_loss(mean, var, y, 0.0), mean)
    (g1,) = torch.autograd.grad(beta_nll_loss(mean, var, y, 1.0), mean)
    (gm,) = torch.autograd.grad(((mean - y) ** 2).mean() / 2, mean)
    torch.testing.assert_close(g1, gm)  # beta = 1: the MSE gradient for the mean
    torch.testing.assert_close(g0, gm / 4)  # beta = 0: the NLL gradient, scaled by 1/var
    torch.testing.assert_close(beta_nll_loss(mean, var, y, 0.0), gaussian_nll_loss(mean, var, y))


def test_sampling_predictor_point_and_gaussian():
    b = _batch(10, 4)
    point = PointForecaster(MLP(1, 1, width=4, depth=1))
    p = SamplingPredictor(point, n_samples=50).predict(b)
    assert p.samples.shape == (1, 10, 1, 1)  # deterministic: one draw
    gm = GaussianForecaster(MLP(1, 2, width=4, depth=1))
    pg = SamplingPredictor(gm, n_samples=50, alpha=0.2).predict(b)
    assert pg.samples.shape == (50, 10, 1, 1) and pg.variance is not None
    z = 1.2815515655446004
    torch.testing.assert_close(pg.upper - pg.mean, z * pg.variance.sqrt())


def test_evaluating_restores_every_module_mode_even_after_an_error():
    from sciflow.uq.base import evaluating

    model = MLP(1, 1, width=4, depth=1, dropout=0.5).train()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())
    with pytest.raises(RuntimeError, match="inside"):
        with evaluating(model):
            raise RuntimeError("inside")
    assert all(m.training for m in model.modules())
