"""Mutation guards for the CLI pipeline and its scores: sample splits without leakage, windows with
the right stride and relative times, and ``uq_metrics`` scored on the forecast steps only with
per-lead axes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sciflow.cli.evaluation import uq_metrics
from sciflow.cli.pipeline import split_samples, windows
from sciflow.config.schema import ConfigError
from sciflow.data.batches import TrajectoryBatch


def _batch(n=10, t=6, t0=0.0):
    values = torch.arange(n * t, dtype=torch.float32).reshape(n, t, 1)
    return TrajectoryBatch(values=values, times=t0 + 0.5 * torch.arange(t, dtype=torch.float32))


def test_split_samples_disjoint_and_sizes():
    """Kills: val slice one too long (a trajectory in both val and train) / floor instead of max(1, ...)."""
    b = _batch(n=10)
    tr, va, te = split_samples(b, 0.2, 0.04, seed=3)
    ids = [set(x.values[:, 0, 0].div(6).long().tolist()) for x in (tr, va, te)]
    assert [len(s) for s in ids] == [7, 2, 1]
    assert set().union(*ids) == set(range(10))


def test_split_samples_rejects_empty_train():
    """Kills: `n - n_val - n_test < 1` relaxed to `< 0` (an empty training split)."""
    with pytest.raises(ConfigError, match="4 trajectories cannot be split"):
        split_samples(_batch(n=4), 0.5, 0.5, seed=0)


def test_windows_stride_and_relative_times():
    """Kills: stride ignored / absolute instead of relative window times / `window >= T` rejection."""
    b = _batch(n=2, t=7, t0=3.0)
    w = windows(b, 3, 2)
    assert w.values.shape == (6, 3, 1)
    assert w.values[:3, 0, 0].tolist() == [0.0, 2.0, 4.0]
    assert w.values[3, :, 0].tolist() == [7.0, 8.0, 9.0]
    assert torch.equal(w.times, torch.tensor([0.0, 0.5, 1.0]))
    assert windows(b, 7, 1).values.shape == (2, 7, 1)
    with pytest.raises(ConfigError, match="data.window = 8 exceeds the 7 time steps"):
        windows(b, 8, 1)


def _pred(mean, lower=None, upper=None, samples=None):
    return SimpleNamespace(mean=mean, lower=lower, upper=upper, samples=samples)


def test_uq_metrics_forecast_steps_only_per_lead():
    """Kills: given steps scored (`[:, g:]` dropped or off by one) / per-lead mean over the wrong axes."""
    truth = torch.zeros(3, 4, 2)
    mean = torch.zeros(3, 4, 2)
    mean[:, 0] = 100.0                   # the given step: never scored
    mean[:, 1] = 1.0
    mean[:, 2] = 2.0
    mean[:, 3] = torch.tensor([3.0, 0.0]).expand(3, 2)  # per lead: mean over batch and state
    out = uq_metrics(_pred(mean), truth, 0.1, given=1)
    assert out["rmse_per_lead"] == pytest.approx([1.0, 2.0, (4.5) ** 0.5])
    assert out["rmse"] == pytest.approx(((2 * 1 + 2 * 4 + 9) / 6) ** 0.5)
    out2 = uq_metrics(_pred(mean), truth, 0.1, given=2)
    assert out2["rmse_per_lead"] == pytest.approx([2.0, 4.5 ** 0.5])


def test_uq_metrics_coverage_per_lead_and_width():
    """Kills: coverage over the given steps / per-lead coverage over the wrong axes / `<=` made `<`."""
    truth = torch.zeros(2, 3, 3)
    lo = torch.full_like(truth, -1.0)
    hi = torch.full_like(truth, 1.0)
    lo[:, 0] = 5.0                       # given step outside its interval: not scored
    lo[:, 2, 0] = 0.0                    # truth on the lower edge: inside
    hi[:, 2, 1] = 0.0                    # truth on the upper edge: inside
    hi[:, 2, 2] = -0.5                   # outside
    out = uq_metrics(_pred(truth.clone(), lo, hi), truth, 0.2, given=1)
    assert out["coverage_per_lead"] == pytest.approx([1.0, 2 / 3])
    assert out["coverage"] == pytest.approx(10 / 12)
    assert out["mean_interval_width"] == pytest.approx(17 / 12)
    assert out["nominal_coverage"] == pytest.approx(0.8)
