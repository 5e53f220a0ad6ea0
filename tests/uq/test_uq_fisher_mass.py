"""Fisher-divergence mass matrices (Seyboldt, Carlson & Carpenter 2026): exact on Gaussian targets,
low rank from fewer draws than weights, and HMC sampling with them (NUTS: ``test_uq_hmc_mass.py``)."""

from __future__ import annotations

import pytest
import torch

from sciflow.uq import _fisher_mass
from sciflow.uq._fisher_mass import fisher_diagonal, fisher_low_rank, spd_mean
from sciflow.uq._mass import DenseMass, DiagonalMass, LowRankMass
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior
from sciflow.uq.diagnostics import ess_basic
from sciflow.uq.hmc import HMC
from tests.uq.test_uq_hmc import _LinReg
from tests.uq.test_uq_hmc_mass import _correlated, _whitened_eigenvalues

F64 = torch.float64


def _dense(mass, D: int) -> torch.Tensor:
    """The full M^-1 of every chain, column by column through ``velocity``."""
    eye = torch.eye(D, dtype=F64)
    return torch.stack([mass.velocity(eye[j].expand(*mass.scale.shape[:-1], D)) for j in range(D)], -1)


def _gaussian_window(cov: torch.Tensor, n: int, chains: int = 2, seed: int = 0):
    """Exact draws of N(3, cov) and the scores -cov^-1 (x - 3) at them: ``(chains, n, D)`` each."""
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(cov)
    x = torch.randn(chains, n, cov.shape[0], generator=g, dtype=F64) @ L.T
    return x + 3.0, -x @ torch.cholesky_inverse(L)


def _correlated_cov(D: int = 10, seed: int = 0) -> torch.Tensor:
    """Scales 1..30 and correlations with eigenvalues 1e-2..1e2: condition number ~1e7."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    s = torch.logspace(0, 1.5, D, dtype=F64)
    return s[:, None] * ((Q * torch.logspace(-2, 2, D, dtype=F64)) @ Q.T) * s[None]


def test_spd_mean_solves_sigma_b_sigma_equals_a():
    a, b = torch.diag(torch.tensor([1.0, 4.0, 8.0], dtype=F64)), torch.diag(torch.tensor([1.0, 1.0, 0.5], dtype=F64))
    assert torch.allclose(spd_mean(a, b), torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=F64)))
    g = torch.Generator().manual_seed(1)
    m = torch.randn(3, 6, 6, generator=g, dtype=F64)
    a, b = m @ m.mT + 0.1 * torch.eye(6, dtype=F64), m.mT @ m + torch.eye(6, dtype=F64)
    s = spd_mean(a, b)
    assert torch.allclose(s @ b @ s, a, atol=1e-9) and torch.allclose(s, s.mT, atol=1e-12)
    assert (torch.linalg.eigvalsh(s) > 0).all()


def test_fisher_diagonal_is_exact_for_independent_gaussians_from_few_draws():
    v = torch.logspace(-3, 3, 7, dtype=F64)
    x, g = _gaussian_window(torch.diag(v), n=8)
    # scores -(x - mu)/v: var(score) = var(x)/v^2 exactly, so sqrt(var x / var score) = v for any window
    assert torch.allclose(fisher_diagonal(x, g).inverse, v.expand(2, 7), rtol=1e-10)
    stan = DiagonalMass.from_window(x).inverse  # the sample variances of 8 draws: off by tens of percent
    assert ((stan / v).log().abs().max()) > 0.3


def test_fisher_low_rank_recovers_a_correlated_gaussian(monkeypatch):
    cov = _correlated_cov()
    x, g = _gaussian_window(cov, n=200)
    mass = fisher_low_rank(x, g)
    assert mass.basis.shape[-1] <= 10 and torch.allclose(mass.basis.mT @ mass.basis, torch.eye(
        mass.basis.shape[-1], dtype=F64).expand(2, -1, -1), atol=1e-10)
    full = _dense(mass, 10)
    assert torch.allclose(full.diagonal(dim1=1, dim2=2), mass.inverse)
    for c in range(2):  # directions with variance ratio inside [1/2, 2] are left at the diagonal
        ev = _whitened_eigenvalues(full[c], cov)
        assert ev.min() > 0.45 and ev.max() < 2.2, ev
    ev = _whitened_eigenvalues(fisher_diagonal(x, g).inverse[0], cov)
    assert ev.max() / ev.min() > 1000  # no diagonal matrix undoes these correlations
    # without the cut-off and the regulariser, the minimiser from n > D draws is the covariance itself
    monkeypatch.setattr(_fisher_mass, "CUTOFF", 1.0)
    monkeypatch.setattr(_fisher_mass, "GAMMA", 0.0)
    exact = _dense(fisher_low_rank(x, g), 10)
    assert torch.allclose(exact, cov.expand(2, -1, -1), rtol=1e-6, atol=1e-9 * float(cov.abs().max()))


def test_fisher_low_rank_learns_the_dominant_directions_from_fewer_draws_than_weights():
    D, n = 300, 50
    g = torch.Generator().manual_seed(0)
    V, _ = torch.linalg.qr(torch.randn(D, 3, generator=g, dtype=F64))
    s = torch.logspace(-1, 1, D, dtype=F64)
    cov = s[:, None] * (torch.eye(D, dtype=F64) + V @ torch.diag(torch.tensor([1e3, 1e2, 30.0], dtype=F64)) @ V.T) \
        * s[None]
    x, sc = _gaussian_window(cov, n=n, chains=1)
    mass = fisher_low_rank(x, sc)
    assert mass.basis.shape[-1] <= 2 * n

    def cond(inv_mass):
        ev = _whitened_eigenvalues(inv_mass, cov)
        return float(ev.max() / ev.min())

    low_rank = cond(_dense(mass, D)[0])
    assert low_rank < cond(fisher_diagonal(x, sc).inverse[0]) / 5
    assert low_rank < cond(DiagonalMass.from_window(x).inverse[0]) / 10
    assert low_rank < cond(DenseMass.from_window(x).inverse[0]) / 1000  # 50 draws of 300 weights: singular


def test_low_rank_mass_operations():
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(2, 6, 3, generator=g, dtype=F64))
    lam = torch.tensor([[5.0, 0.1, 1.0], [0.3, 2.5, 1.0]], dtype=F64)  # the last direction of each is padding
    scale = torch.rand(2, 6, generator=g, dtype=F64) + 0.5
    mass = LowRankMass(scale, U, lam)
    eye = torch.eye(6, dtype=F64)
    ref = scale[:, :, None] * (eye + U @ torch.diag_embed(lam - 1) @ U.mT) * scale[:, None, :]
    assert torch.allclose(_dense(mass, 6), ref)
    assert torch.allclose(mass.inverse, ref.diagonal(dim1=1, dim2=2))
    q = torch.randn(2, 6, generator=g, dtype=F64)
    assert torch.allclose(mass.kinetic(q), 0.5 * torch.einsum("ci,cij,cj->c", q, ref, q))
    assert torch.allclose(mass.drift(q, 0.2, q), q + 0.2 * (ref @ q[..., None])[..., 0])
    # momentum = A z with A A^T = M = (M^-1)^-1
    A = torch.stack([mass.momentum(eye[j].expand(2, 6)) for j in range(6)], -1)
    assert torch.allclose(A @ A.mT @ ref, eye.expand(2, 6, 6), atol=1e-12)
    one = mass.chain(1)
    assert torch.allclose(one.kinetic(q[1]), mass.kinetic(q)[1]) and torch.allclose(one.momentum(q[1]),
                                                                                     mass.momentum(q)[1])
    ident = LowRankMass.identity(q)
    assert torch.equal(ident.velocity(q), q) and torch.equal(ident.momentum(q), q)


def test_short_or_stuck_windows_give_finite_unit_scales():
    x, g = _gaussian_window(torch.eye(4, dtype=F64), n=2)
    for estimate in (fisher_diagonal, fisher_low_rank):
        assert torch.equal(estimate(x, g).inverse, torch.ones(2, 4, dtype=F64))  # too few draws: identity
    x, g = _gaussian_window(torch.eye(4, dtype=F64), n=30)
    x[1], g[1] = x[1, :1].expand(30, 4), g[1, :1].expand(30, 4)  # chain 1 rejected every proposal
    for estimate in (fisher_diagonal, fisher_low_rank):
        inv = estimate(x, g).inverse
        assert torch.isfinite(inv).all() and torch.allclose(inv[1], torch.ones(4, dtype=F64))


@pytest.mark.parametrize("kind", ["low_rank", "fisher_diag"])
def test_hmc_with_a_fisher_mass_matrix(kind):
    batch, mean, cov = _correlated()
    runs = {}
    for k in (kind, "diag"):
        torch.manual_seed(0)
        hmc = HMC(_LinReg(4).double(), GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
        runs[k] = hmc.run(n_samples=250, n_warmup=300, n_chains=4, n_leapfrog=4, mass_matrix=k,
                          generator=torch.Generator().manual_seed(1))
    res, diag = runs[kind], runs["diag"]
    assert res.inv_mass.shape == (4, 5) and res.divergences.sum() == 0
    draws = res.samples.reshape(-1, 5)
    ess = ess_basic(res.samples).clamp(max=draws.shape[0])
    assert ((draws.mean(0) - mean).abs() / (cov.diagonal().sqrt() / ess.sqrt())).max() < 4
    if kind == "low_rank":  # undoes the shared factor as the dense matrix does
        assert res.rhat.max() < 1.1 and res.ess_bulk.min() > 20 * diag.ess_bulk.min()
        assert torch.allclose(draws.std(0), cov.diagonal().sqrt(), rtol=0.2)
    else:  # a diagonal matrix, however estimated, crawls along the ridge like Stan's
        assert res.ess_bulk.min() < 5 * diag.ess_bulk.min()
