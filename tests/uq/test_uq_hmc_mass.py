"""Dense, low-rank and diagonal mass matrices of HMC/NUTS on a strongly correlated conjugate posterior."""

from __future__ import annotations

import warnings

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.uq._mass import DenseMass, DiagonalMass
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior
from sciflow.uq.diagnostics import ess_basic
from sciflow.uq.hmc import HMC
from sciflow.uq.nuts import NUTS
from tests.uq.test_uq_hmc import _LinReg


def _correlated(n=40, d=4, rho=0.99, sigma=0.5, seed=0):
    """Bayesian linear regression on inputs that share one factor (correlation ``rho``, offset 1):
    the posterior's correlation matrix has condition number ~500, which a diagonal mass matrix
    cannot undo."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64)
    X = rho**0.5 * z + (1 - rho) ** 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0
    w = torch.randn(d + 1, generator=g, dtype=torch.float64)
    y = X @ w[:d] + w[d] + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    batch = TrajectoryBatch(y[:, None, None], torch.zeros(1, dtype=torch.float64), condition=X)
    Phi = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    cov = torch.linalg.inv(Phi.T @ Phi / sigma**2 + torch.eye(d + 1, dtype=torch.float64))
    return batch, cov @ Phi.T @ y / sigma**2, cov


def _whitened_eigenvalues(inv_mass, cov):
    """Eigenvalues of L^-1 M^-1 L^-T (cov = L L^T): all 1 when M^-1 is the posterior covariance."""
    Li = torch.linalg.inv(torch.linalg.cholesky(cov))
    full = inv_mass if inv_mass.dim() == 2 else torch.diag(inv_mass)
    return torch.linalg.eigvalsh(Li @ full @ Li.T)


def test_dense_mass_learns_the_posterior_covariance_and_mixes_where_diagonal_does_not():
    batch, mean, cov = _correlated()
    runs = {}
    for kind in ("diag", "dense"):
        torch.manual_seed(0)
        hmc = HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
        runs[kind] = hmc.run(n_samples=250, n_warmup=300, n_chains=4, n_leapfrog=4, mass_matrix=kind,
                             generator=torch.Generator().manual_seed(1))
    dense, diag = runs["dense"], runs["diag"]
    assert dense.inv_mass.shape == (4, 5, 5) and diag.inv_mass.shape == (4, 5)
    # the adapted dense M^-1 (from one window of ~225 correlated draws) is the posterior covariance
    # up to a factor 3 in every direction of every chain; the diagonal one is >100x off between
    # the shared factor and its complement
    for c in range(4):
        ev = _whitened_eigenvalues(dense.inv_mass[c], cov)
        assert ev.min() > 1 / 3 and ev.max() < 3, ev
    ev = _whitened_eigenvalues(diag.inv_mass[0], cov)
    assert ev.max() / ev.min() > 100
    # dense draws: the conjugate posterior within 4 Monte-Carlo standard errors
    draws = dense.samples.reshape(-1, 5)
    sd = cov.diagonal().sqrt()
    ess = ess_basic(dense.samples).clamp(max=draws.shape[0])
    assert ((draws.mean(0) - mean).abs() / (sd / ess.sqrt())).max() < 4
    dev = dense.samples - dense.samples.mean((0, 1))
    prod = (dev[..., :, None] * dev[..., None, :]).flatten(-2)
    se = prod.flatten(0, 1).std(0) / ess_basic(prod).clamp(max=draws.shape[0]).sqrt()
    assert ((prod.flatten(0, 1).mean(0) - cov.flatten()).abs() / se).max() < 5  # the worst of 25
    assert dense.rhat.max() < 1.1 and dense.divergences.sum() == 0
    # same gradients, same seeds: the diagonal chains crawl along the ridge
    assert diag.rhat.max() > 1.3
    assert dense.ess_bulk.min() > 20 * diag.ess_bulk.min()
    assert dense.step_size.mean() > 3 * diag.step_size.mean()


@pytest.mark.parametrize("correlated", ["dense", "low_rank"])
def test_nuts_with_a_correlated_mass_matrix_needs_shorter_trees(correlated):
    batch, mean, cov = _correlated()
    depth = {}
    for kind in ("diag", correlated):
        torch.manual_seed(0)
        nuts = NUTS(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = nuts.run(n_samples=30, n_warmup=80, n_chains=1, max_tree_depth=6, mass_matrix=kind,
                           generator=torch.Generator().manual_seed(0))
        sampled = nuts.tree_depths[-30:]
        depth[kind] = sum(sampled) / len(sampled)
    # ~2^5 leapfrog steps per transition along the ridge with a diagonal matrix, ~2^2.5 with a dense or
    # low-rank one
    assert depth[correlated] + 1.5 < depth["diag"], depth
    draws = res.samples.reshape(-1, 5)
    ess = ess_basic(res.samples).clamp(max=30)
    assert ((draws.mean(0) - mean).abs() / (cov.diagonal().sqrt() / ess.sqrt())).max() < 5


def test_mass_matrix_operations():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    sigma = A @ A.transpose(1, 2) + 0.5 * torch.eye(3, dtype=torch.float64)  # M^-1 per chain
    dense = DenseMass(sigma)
    # p = momentum(z) ~ N(0, M): its covariance is the inverse of M^-1
    z = torch.randn(2, 200_000, 3, generator=g, dtype=torch.float64)
    p = dense.momentum(z.transpose(0, 1)).transpose(0, 1)  # (chains, n, D) through (n, chains, D)
    emp = p.transpose(1, 2) @ p / p.shape[1]
    assert torch.allclose(emp @ sigma, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=0.03)
    q = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(dense.kinetic(q), 0.5 * torch.einsum("ci,cij,cj->c", q, sigma, q))
    assert torch.allclose(dense.drift(q, 0.1, q), q + 0.1 * (sigma @ q[..., None])[..., 0])
    # float32 weights: the factor is taken in float64 and handed back in the weights' dtype
    f32 = DenseMass(sigma.float())
    assert f32.cholesky.dtype == torch.float32 and torch.allclose(f32.cholesky.double(), dense.cholesky, atol=1e-5)
    one = dense.chain(1)
    assert torch.allclose(one.kinetic(q[1]), dense.kinetic(q)[1])
    # a dense matrix of a diagonal covariance acts as the diagonal one
    v = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.1
    dm, dd = DiagonalMass(v), DenseMass(torch.diag_embed(v))
    assert torch.allclose(dm.kinetic(q), dd.kinetic(q)) and torch.allclose(dm.momentum(q), dd.momentum(q))
    assert torch.allclose(dm.drift(q, 0.3, q), dd.drift(q, 0.3, q))
    # window estimates: Stan's shrinkage of the sample (co)variance
    w = torch.randn(2, 50, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.1], dtype=torch.float64)
    full = DenseMass.from_window(w).inverse
    assert torch.allclose(full.diagonal(dim1=1, dim2=2), DiagonalMass.from_window(w).inverse)
    cov = torch.stack([torch.cov(c.T) for c in w])
    assert torch.allclose(full, (50 / 55) * cov + 1e-3 * (5 / 55) * torch.eye(3, dtype=torch.float64))


def test_unknown_mass_matrix_is_refused():
    batch, _, _ = _correlated()
    hmc = HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    with pytest.raises(ValueError, match="mass_matrix must be one of"):
        hmc.run(n_samples=4, n_warmup=0, mass_matrix="full")


def test_a_dense_mass_matrix_too_large_to_hold_is_refused(monkeypatch):
    from sciflow.uq import _mass

    batch, _, _ = _correlated()
    monkeypatch.setattr(_mass, "DENSE_MAX_DIM", 4)  # the model has D = 5 weights
    hmc = HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    with pytest.raises(ValueError, match=r"mass_matrix='dense' over D = 5 weights .* use mass_matrix='low_rank'"):
        hmc.run(n_samples=4, n_warmup=0, mass_matrix="dense")
    hmc.run(n_samples=4, n_warmup=0, mass_matrix="diag")


def test_the_window_keeps_gradients_only_for_the_estimators_that_read_them(monkeypatch):
    """Stan's estimators read the window's draws only: no gradients are held for them (half the
    warm-up memory); the Fisher ones get the gradient at every draw."""
    from sciflow.uq import _adaptation

    batch, _, _ = _correlated()
    seen = {}
    for kind, adaptation in list(_adaptation.MASS_MATRICES.items()):
        def estimate(draws, grads, _kind=kind, _inner=adaptation.estimate):
            seen.setdefault(_kind, []).append(None if grads is None else tuple(grads.shape))
            assert grads is None or grads.shape == draws.shape
            return _inner(draws, grads)
        monkeypatch.setitem(_adaptation.MASS_MATRICES, kind, adaptation._replace(estimate=estimate))
        HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch]).run(
            n_samples=4, n_warmup=300, n_chains=2, n_leapfrog=2, mass_matrix=kind,
            generator=torch.Generator().manual_seed(0))
    assert seen["diag"] == seen["dense"] == [None] * 3
    assert seen["fisher_diag"] == seen["low_rank"] == [(2, 25, 5), (2, 50, 5), (2, 100, 5)]


@pytest.mark.parametrize("jitter", [1.0, -0.1])
def test_a_step_jitter_outside_0_1_is_refused(jitter):
    batch, _, _ = _correlated()
    hmc = HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    with pytest.raises(ValueError, match=r"step_jitter must be in \[0, 1\)"):
        hmc.run(n_samples=4, n_warmup=0, step_jitter=jitter)


def test_nuts_does_not_jitter_its_step_size_unless_asked(monkeypatch):
    class Stop(Exception):
        pass

    seen = []

    def spy(self, *args, **kwargs):  # HMC.run as NUTS calls it: record the jitter, stop there
        seen.append(kwargs["step_jitter"])
        raise Stop

    monkeypatch.setattr(HMC, "run", spy)
    batch, _, _ = _correlated()
    nuts = NUTS(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    for kw in ({}, {"step_jitter": 0.3}):
        with pytest.raises(Stop):
            nuts.run(n_samples=4, n_warmup=0, **kw)
    assert seen == [0.0, 0.3]
