from __future__ import annotations

import pytest
import scipy.stats as st
import torch

from sciflow.uq.prediction import Prediction


def test_from_samples_quantiles_and_std():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(20001, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    p = Prediction.from_samples(s, alpha=0.2)
    torch.testing.assert_close(p.lower, torch.quantile(s, 0.1, dim=0))
    z = st.norm.ppf(0.9)
    torch.testing.assert_close(p.upper, torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) * z, atol=0.05, rtol=0)
    torch.testing.assert_close(p.std, s.std(0))


def test_from_gaussian_interval_is_exact():
    m, v = torch.zeros(4, dtype=torch.float64), torch.full((4,), 4.0, dtype=torch.float64)
    p = Prediction.from_gaussian(m, v, alpha=0.05)
    torch.testing.assert_close(p.upper, torch.full((4,), 2 * st.norm.ppf(0.975), dtype=torch.float64))
    torch.testing.assert_close(p.std, torch.full((4,), 2.0, dtype=torch.float64))
    # the Gaussian matched to a central interval recovers sigma exactly (the interval's only density)
    torch.testing.assert_close(p.interval_std, torch.full((4,), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="interval_std needs lower/upper"):
        Prediction(m).interval_std


def test_validation_errors():
    with pytest.raises(ValueError, match="lower"):
        Prediction(torch.zeros(3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="samples"):
        Prediction(torch.zeros(3), samples=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="both"):
        Prediction(torch.zeros(3), lower=torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        Prediction.from_samples(torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="std"):
        Prediction(torch.zeros(3)).std
