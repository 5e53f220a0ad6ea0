"""Every score against its reference implementation (properscoring, scipy, POT, plain numpy) to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from sciflow.uq import distances as D
from sciflow.uq import scores as S

properscoring = pytest.importorskip("properscoring")
ot = pytest.importorskip("ot")

TOL = dict(rtol=1e-6, atol=1e-8)


@pytest.fixture
def g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _ens(g, m=9, shape=(4, 5)):
    return torch.randn(m, *shape, generator=g, dtype=torch.float64) * 1.3 + 0.2, \
        torch.randn(*shape, generator=g, dtype=torch.float64)


def test_crps_ensemble_matches_properscoring(g):
    x, y = _ens(g)
    ref = properscoring.crps_ensemble(y.numpy(), np.moveaxis(x.numpy(), 0, -1))
    np.testing.assert_allclose(S.crps_ensemble(x, y, dim=()).numpy(), ref, **TOL)
    np.testing.assert_allclose(S.crps_ensemble(x, y).item(), ref.mean(), **TOL)


def test_fair_crps_matches_pairwise_definition_and_is_unbiased(g):
    x, y = _ens(g, m=5)
    xn, yn = x.numpy(), y.numpy()
    m = xn.shape[0]
    pair = np.abs(xn[:, None] - xn[None]).sum((0, 1)) / (m * (m - 1))
    ref = np.abs(xn - yn).mean(0) - 0.5 * pair
    np.testing.assert_allclose(S.crps_ensemble(x, y, fair=True, dim=()).numpy(), ref, **TOL)
    # unbiasedness: the fair CRPS of 3-member ensembles from N(0,1) averages to the Gaussian CRPS
    ens = torch.randn(3, 200000, generator=g, dtype=torch.float64)
    y0 = torch.full((200000,), 0.7, dtype=torch.float64)
    exact = S.crps_gaussian(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                            torch.tensor([0.7], dtype=torch.float64)).item()
    assert abs(S.crps_ensemble(ens, y0, fair=True).item() - exact) < 0.01
    assert S.crps_ensemble(ens, y0, fair=False).item() - exact > 0.05  # the biased form is not


def test_crps_gaussian_matches_properscoring(g):
    mu, y = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    sd = torch.rand(50, generator=g, dtype=torch.float64) + 0.1
    ref = properscoring.crps_gaussian(y.numpy(), mu.numpy(), sd.numpy())
    np.testing.assert_allclose(S.crps_gaussian(mu, sd, y, dim=()).numpy(), ref, **TOL)


def test_crps_is_differentiable(g):
    x, y = _ens(g)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: S.crps_ensemble(t, y, fair=True), (x,))


def test_gaussian_nll_matches_scipy(g):
    mu, y = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    var = torch.rand(30, generator=g, dtype=torch.float64) + 0.05
    ref = -st.norm.logpdf(y.numpy(), mu.numpy(), np.sqrt(var.numpy()))
    np.testing.assert_allclose(S.gaussian_nll(mu, var, y, dim=()).numpy(), ref, **TOL)


def test_energy_score_matches_definition_and_reduces_to_crps(g):
    x, y = _ens(g, m=6, shape=(3, 4))
    xn, yn = x.numpy(), y.numpy()
    skill = np.linalg.norm(xn - yn, axis=-1).mean(0)
    spread = np.linalg.norm(xn[:, None] - xn[None], axis=-1).mean((0, 1))
    np.testing.assert_allclose(S.energy_score(x, y, dim=()).numpy(), skill - 0.5 * spread, **TOL)
    # one-dimensional events: the energy score is the CRPS
    np.testing.assert_allclose(S.energy_score(x[..., None], y[..., None], dim=()).numpy(),
                               S.crps_ensemble(x, y, dim=()).numpy(), **TOL)
    # area weights inside the norm, and names
    w = torch.rand(4, generator=g, dtype=torch.float64)
    ref_w = np.sqrt((w.numpy() * (xn - yn) ** 2).sum(-1)).mean(0) - 0.5 * np.sqrt(
        (w.numpy() * (xn[:, None] - xn[None]) ** 2).sum(-1)).mean((0, 1))
    got = S.energy_score(x, y, weights=w, event_dims="lon", names=("batch", "lon"), dim=())
    np.testing.assert_allclose(got.numpy(), ref_w, **TOL)


def test_variogram_score_matches_definition(g):
    x, y = _ens(g, m=7, shape=(2, 5))
    xn, yn = x.numpy(), y.numpy()
    vy = np.abs(yn[:, :, None] - yn[:, None, :]) ** 0.5
    vx = (np.abs(xn[:, :, :, None] - xn[:, :, None, :]) ** 0.5).mean(0)
    ref = ((vy - vx) ** 2).sum((-1, -2))
    np.testing.assert_allclose(S.variogram_score(x, y, dim=()).numpy(), ref, **TOL)


def test_intervals_coverage_width_score(g):
    y = torch.randn(1000, generator=g, dtype=torch.float64)
    lo, hi = torch.full_like(y, -1.0), torch.full_like(y, 1.0)
    cov = ((y.numpy() >= -1) & (y.numpy() <= 1)).mean()
    np.testing.assert_allclose(S.interval_coverage(lo, hi, y).item(), cov, **TOL)
    assert S.interval_width(lo, hi).item() == pytest.approx(2.0)
    # an empty (crossed) interval counts as width 0, not -2
    assert S.interval_width(torch.tensor([-1.0, 1.0]), torch.tensor([1.0, -1.0])).item() == pytest.approx(1.0)
    a = 0.2
    yn = y.numpy()
    ref = 2 + 2 / a * np.clip(-1 - yn, 0, None) + 2 / a * np.clip(yn - 1, 0, None)
    np.testing.assert_allclose(S.interval_score(lo, hi, y, a).item(), ref.mean(), **TOL)


def test_rank_histogram_pit_and_calibration(g):
    x, y = _ens(g, m=9, shape=(500,))
    ranks = (x.numpy() < y.numpy()).sum(0)
    np.testing.assert_array_equal(S.rank_histogram(x, y).numpy(), np.bincount(ranks, minlength=10))
    np.testing.assert_allclose(S.pit(x, y).numpy(), (ranks + 0.5) / 10, **TOL)
    # calibrated Gaussian PIT -> small calibration error; over-confident -> large
    z = torch.randn(20000, generator=g, dtype=torch.float64)
    good = S.pit_gaussian(torch.zeros_like(z), torch.ones_like(z), z)
    bad = S.pit_gaussian(torch.zeros_like(z), 0.5 * torch.ones_like(z), z)
    np.testing.assert_allclose(good.numpy(), st.norm.cdf(z.numpy()), **TOL)
    assert S.calibration_error(good).item() < 1e-4
    assert S.calibration_error(bad).item() > 1e-2
    lv, obs = S.reliability(good, 9)
    ref = [(good.numpy() <= p).mean() for p in lv.numpy()]
    np.testing.assert_allclose(obs.numpy(), ref, **TOL)


def test_spread_skill_ratio(g):
    x, y = _ens(g, m=8, shape=(3, 6))
    xn, yn = x.numpy(), y.numpy()
    ref = np.sqrt(9 / 8 * xn.var(0, ddof=1).mean()) / np.sqrt(((xn.mean(0) - yn) ** 2).mean())
    np.testing.assert_allclose(S.spread_skill_ratio(x, y).item(), ref, **TOL)
    # members and truth exchangeable -> ratio ~ 1
    xs = torch.randn(11, 20000, generator=g, dtype=torch.float64)
    assert abs(S.spread_skill_ratio(xs[1:], xs[0]).item() - 1) < 0.03


def test_area_weighted_rmse_and_acc(g):
    lat = torch.linspace(-80, 80, 9, dtype=torch.float64)
    w = S.latitude_weights(lat)
    np.testing.assert_allclose(w.numpy(), np.cos(np.deg2rad(lat.numpy())) / np.cos(np.deg2rad(lat.numpy())).mean(),
                               **TOL)
    f = torch.randn(2, 9, 12, generator=g, dtype=torch.float64)
    o = torch.randn(2, 9, 12, generator=g, dtype=torch.float64)
    c = torch.randn(9, 12, generator=g, dtype=torch.float64) * 0.1
    W = np.broadcast_to(w.numpy()[:, None], (2, 9, 12))
    fn, on, cn = f.numpy(), o.numpy(), c.numpy()
    ref_rmse = np.sqrt((W * (fn - on) ** 2).sum((1, 2)) / W.sum((1, 2)))
    got = S.rmse(f, o, weights=w[:, None], dim=("lat", "lon"), names=("time", "lat", "lon"))
    np.testing.assert_allclose(got.numpy(), ref_rmse, **TOL)
    fa, oa = fn - cn, on - cn
    ref_acc = (W * fa * oa).sum((1, 2)) / np.sqrt((W * fa**2).sum((1, 2)) * (W * oa**2).sum((1, 2)))
    np.testing.assert_allclose(S.acc(f, o, c, weights=w[:, None], dim=(1, 2)).numpy(), ref_acc, **TOL)
    assert S.acc(o, o, c).item() == pytest.approx(1.0)


def test_bad_input_errors(g):
    x, y = _ens(g)
    with pytest.raises(ValueError, match="n_samples"):
        S.crps_ensemble(x[:, :2], y)
    with pytest.raises(ValueError, match="NaN"):
        S.crps_ensemble(x, y * float("nan"))
    with pytest.raises(ValueError, match="names"):
        S.rmse(x[0], y, dim="lat")
    with pytest.raises(ValueError, match="broadcast"):
        S.rmse(x[0], y, weights=torch.ones(7, dtype=torch.float64))


# ---------------------------------------------------------------- distances

def test_exact_wasserstein_matches_pot(g):
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 3, generator=g, dtype=torch.float64) + 0.5
    M1 = ot.dist(x.numpy(), y.numpy(), metric="euclidean")
    M2 = ot.dist(x.numpy(), y.numpy(), metric="sqeuclidean")
    a, b = np.full(40, 1 / 40), np.full(40, 1 / 40)
    np.testing.assert_allclose(D.wasserstein_exact(x, y, 1).item(), ot.emd2(a, b, M1), **TOL)
    np.testing.assert_allclose(D.wasserstein_exact(x, y, 2).item(), math.sqrt(ot.emd2(a, b, M2)), **TOL)
    # unequal sizes go through the linear programme
    z = y[:25]
    M = ot.dist(x.numpy(), z.numpy(), metric="euclidean")
    np.testing.assert_allclose(D.wasserstein_exact(x, z, 1).item(),
                               ot.emd2(a, np.full(25, 1 / 25), M), **TOL)


def test_one_dimensional_wasserstein_matches_scipy_and_pot(g):
    u = torch.randn(37, generator=g, dtype=torch.float64)
    v = torch.randn(23, generator=g, dtype=torch.float64) * 2
    np.testing.assert_allclose(D.wasserstein_1d(u, v, 1).item(), st.wasserstein_distance(u.numpy(), v.numpy()), **TOL)
    ref2 = ot.wasserstein_1d(u.numpy(), v.numpy(), p=2)  # returns W_2^2
    np.testing.assert_allclose(D.wasserstein_1d(u, v, 2).item() ** 2, ref2, **TOL)
    np.testing.assert_allclose(D.wasserstein(u, v, 1).item(), st.wasserstein_distance(u.numpy(), v.numpy()), **TOL)


def test_sliced_wasserstein_matches_pot_with_same_directions(g):
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    y = torch.randn(50, 4, generator=g, dtype=torch.float64) + 1.0
    got = D.sliced_wasserstein(x, y, 2, n_projections=32, generator=torch.Generator().manual_seed(3))
    theta = torch.randn(32, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theta = (theta / theta.norm(dim=1, keepdim=True)).numpy()
    ref = np.mean([ot.wasserstein_1d(x.numpy() @ t, y.numpy() @ t, p=2) for t in theta])
    np.testing.assert_allclose(got.item(), math.sqrt(ref), **TOL)
    # sliced W2 of a pure shift mu: E[(theta.mu)^2] = |mu|^2/d
    big = torch.randn(500, 4, generator=g, dtype=torch.float64)
    shift = torch.tensor([2.0, 0, 0, 0], dtype=torch.float64)
    sw = D.sliced_wasserstein(big, big + shift, 2, n_projections=4000, generator=torch.Generator().manual_seed(1))
    assert sw.item() == pytest.approx(2.0 / 2.0, rel=0.05)


def test_mmd_matches_numpy(g):
    x = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64) + 0.3
    h = np.array([0.5, 1.0, 2.0])

    def k(a, b):
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return np.exp(-d2[..., None] / (2 * h**2)).sum(-1)

    xn, yn = x.numpy(), y.numpy()
    kxx, kyy, kxy = k(xn, xn), k(yn, yn), k(xn, yn)
    ub = (kxx.sum() - np.trace(kxx)) / (30 * 29) + (kyy.sum() - np.trace(kyy)) / (20 * 19) - 2 * kxy.mean()
    np.testing.assert_allclose(D.mmd(x, y, bandwidths=h.tolist()).item(), ub, **TOL)
    np.testing.assert_allclose(D.mmd(x, y, bandwidths=h.tolist(), unbiased=False).item(),
                               kxx.mean() + kyy.mean() - 2 * kxy.mean(), **TOL)


def test_energy_distance_matches_scipy(g):
    u = torch.randn(40, generator=g, dtype=torch.float64)
    v = torch.randn(30, generator=g, dtype=torch.float64) + 0.4
    np.testing.assert_allclose(D.energy_distance(u, v).item(), st.energy_distance(u.numpy(), v.numpy()), **TOL)


def test_distances_are_differentiable(g):
    x = torch.randn(12, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(12, 2, generator=g, dtype=torch.float64)
    for f in (lambda a: D.wasserstein_exact(a, y, 2), lambda a: D.mmd(a, y, bandwidths=[1.0]),
              lambda a: D.energy_distance(a, y)):
        assert torch.autograd.gradcheck(f, (x,))


def test_population_metrics_and_their_mean_over_populations(g):
    """Two equal-size point sets shifted by a constant vector c: W1 = W2 = |c| exactly (the identity
    assignment is optimal for a translation), energy distance > 0; the batch mean weighs every
    population once, and mismatched batches are refused."""
    x = torch.randn(2, 30, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([[[0.3, 0.4]], [[1.2, -0.5]]], dtype=torch.float64)  # |c| = 0.5 and 1.3
    one = D.population_metrics(x[0], x[0] + shift[0])
    assert one["W1"] == pytest.approx(0.5, rel=1e-9) and one["W2"] == pytest.approx(0.5, rel=1e-9)
    assert one["energy"] > 0 and set(one) == {"W1", "W2", "MMD", "energy"}
    mean = D.mean_population_metrics(x, x + shift)
    assert mean["W2"] == pytest.approx(0.9, rel=1e-9)
    second = D.population_metrics(x[1], x[1] + shift[1])
    assert mean["energy"] == pytest.approx((one["energy"] + second["energy"]) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="same non-zero batch"):
        D.mean_population_metrics(x, x[:1])
