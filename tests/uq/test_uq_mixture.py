"""Gaussian mixtures of predictors: exact quantiles, moments and intervals (MoLA, MultiSWAG)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import optimize, stats

from sciflow.uq import MixturePredictor, Prediction, Predictor
from sciflow.uq.mixture import gaussian_mixture_quantile


def _scipy_quantile(mu, sd, q):
    def cdf(y):
        return sum(stats.norm.cdf(y, m, s) if s > 0 else float(y >= m) for m, s in zip(mu, sd)) / len(mu) - q
    return optimize.brentq(cdf, min(mu) - 20 * max(sd), max(mu) + 20 * max(sd), xtol=1e-13)


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 0.95])
def test_mixture_quantile_matches_root_finding_on_the_cdf(q) -> None:
    mu, sd = [-2.0, 0.5, 3.0], [0.3, 1.5, 0.7]
    got = gaussian_mixture_quantile(torch.tensor(mu)[:, None], torch.tensor(sd)[:, None], q)
    assert got.shape == (1,)
    assert abs(float(got) - _scipy_quantile(mu, sd, q)) < 1e-5  # float32 output
    got64 = gaussian_mixture_quantile(torch.tensor(mu, dtype=torch.float64), torch.tensor(sd, dtype=torch.float64), q)
    assert abs(float(got64) - _scipy_quantile(mu, sd, q)) < 1e-12


def test_one_component_is_its_gaussian_and_a_point_mass_is_a_step() -> None:
    m, s = torch.tensor([[1.0, -3.0]], dtype=torch.float64), torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    z = stats.norm.ppf(0.9)
    torch.testing.assert_close(gaussian_mixture_quantile(m, s, 0.9), (m + z * s)[0], rtol=0, atol=1e-12)
    # half the mass at 0 (sigma = 0), half N(10, 1): every quantile below 1/2 is 0
    pm = gaussian_mixture_quantile(torch.tensor([0.0, 10.0], dtype=torch.float64),
                                   torch.tensor([0.0, 1.0], dtype=torch.float64), 0.3)
    assert abs(float(pm)) < 1e-12
    with pytest.raises(ValueError, match="q must be"):
        gaussian_mixture_quantile(m, s, 1.0)
    with pytest.raises(ValueError, match="one shape"):
        gaussian_mixture_quantile(m, s[:, :1], 0.5)


class _Gaussian(Predictor):
    def __init__(self, mean, var, n_samples=None, alpha=0.1):
        self.mean, self.var, self.n, self.alpha = torch.as_tensor(mean), torch.as_tensor(var), n_samples, alpha

    def predict(self, batch, *, generator=None):
        samples = None if self.n is None else \
            self.mean + self.var.sqrt() * torch.randn(self.n, *self.mean.shape, generator=generator)
        return Prediction.from_gaussian(self.mean, self.var, self.alpha, samples=samples)


def test_gaussian_components_give_the_exact_mixture() -> None:
    """Two well separated modes: the law of total variance, and an interval holding exactly
    1 - alpha of the mixture's mass (the moment-matched Gaussian's holds 0.99 here)."""
    a, b = _Gaussian([-3.0, 0.0], [0.25, 1.0], 400), _Gaussian([3.0, 0.5], [0.25, 4.0], 500)
    p = MixturePredictor([a, b], alpha=0.1).predict(None, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.mean, torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(p.variance, torch.tensor([0.25 + 9.0, 2.5 + 0.0625]))
    assert p.samples is not None and p.samples.shape == (800, 2)  # 400 from each
    mu, sd = [[-3.0, 3.0], [0.0, 0.5]], [[0.5, 0.5], [1.0, 2.0]]
    for j in range(2):
        mass = sum(stats.norm.cdf(float(p.upper[j]), m, s) - stats.norm.cdf(float(p.lower[j]), m, s)
                   for m, s in zip(mu[j], sd[j])) / 2
        assert abs(mass - 0.9) < 1e-5
        lo_cdf = sum(stats.norm.cdf(float(p.lower[j]), m, s) for m, s in zip(mu[j], sd[j])) / 2
        assert abs(lo_cdf - 0.05) < 1e-5
    z = stats.norm.ppf(0.95)
    mm = sum(stats.norm.cdf(z * math.sqrt(9.25), m, 0.5) - stats.norm.cdf(-z * math.sqrt(9.25), m, 0.5)
             for m in (-3.0, 3.0)) / 2
    assert mm > 0.98  # what a moment-matched interval would have covered


def test_gaussian_components_without_draws_still_mix_and_others_need_draws() -> None:
    p = MixturePredictor([_Gaussian([0.0], [1.0]), _Gaussian([2.0], [1.0])]).predict(None)
    assert p.samples is None and float(p.variance) == pytest.approx(2.0)

    class _Draws(Predictor):
        def predict(self, batch, *, generator=None):
            return Prediction.from_samples(torch.zeros(3, 1))

    class _Mean(Predictor):
        def predict(self, batch, *, generator=None):
            return Prediction(mean=torch.zeros(1))

    assert MixturePredictor([_Draws(), _Draws()]).predict(None).samples.shape == (6, 1)
    with pytest.raises(ValueError, match="gave no predictive draws"):
        MixturePredictor([_Draws(), _Mean()]).predict(None)
