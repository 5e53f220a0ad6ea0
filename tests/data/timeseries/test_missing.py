"""The missing-value protocol: exact drop counts, uniformity, stratification, normalisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sciflow.data.timeseries import (
    classification_splits,
    drop_values,
    load_uea,
    lorenz_forecasting_splits,
    lorenz_interpolation_splits,
    observed_statistics,
    read_ts,
    stratified_split,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ts"
needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason="aeon (test extra) not installed")


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.7])
def test_drop_removes_exactly_floor_rate_times_length_per_channel(rate: float) -> None:
    lengths = np.array([10, 7, 3, 10])
    x = np.random.default_rng(0).normal(size=(4, 10, 3))
    x[np.arange(10)[None, :] >= lengths[:, None]] = np.nan
    y = drop_values(x, lengths, rate, generator=_g(0))
    dropped = np.isnan(y) & ~np.isnan(x)
    np.testing.assert_array_equal(dropped.sum(axis=1), np.floor(rate * lengths)[:, None].repeat(3, 1))
    np.testing.assert_array_equal(y[~np.isnan(y)], x[~np.isnan(y)])  # kept values untouched
    # channels are dropped independently (different patterns), rows when per_channel=False
    assert not all((dropped[0, :, 0] == dropped[0, :, c]).all() for c in (1, 2))
    rows = np.isnan(drop_values(x, lengths, rate, generator=_g(0), per_channel=False)) & ~np.isnan(x)
    assert (rows == rows[..., :1]).all()


def test_drop_positions_are_uniform_and_seeded() -> None:
    x = np.zeros((4000, 20, 1))
    y = drop_values(x, np.full(4000, 20), 0.3, generator=_g(1))
    freq = np.isnan(y).mean(axis=(0, 2))  # each position dropped with probability 6/20
    assert np.abs(freq - 0.3).max() < 4 * np.sqrt(0.3 * 0.7 / 4000)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(drop_values(x, np.full(4000, 20), 0.3, generator=_g(1))))
    assert not (np.isnan(y) == np.isnan(drop_values(x, np.full(4000, 20), 0.3, generator=_g(2)))).all()
    with pytest.raises(ValueError, match="missing_rate must be in"):
        drop_values(x, np.full(4000, 20), 1.0, generator=_g(0))


def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [40, 20, 100])
    tr, va, te = stratified_split(labels, generator=_g(0))
    assert np.intersect1d(tr, va).size == np.intersect1d(tr, te).size == np.intersect1d(va, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(160))
    np.testing.assert_array_equal(np.bincount(labels[tr]), [28, 14, 70])
    np.testing.assert_array_equal(np.bincount(labels[va]), [6, 3, 15])
    np.testing.assert_array_equal(np.bincount(labels[te]), [6, 3, 15])
    assert not np.array_equal(tr, stratified_split(labels, generator=_g(1))[0])


def test_classification_splits_on_fixture_normalise_with_observed_training_statistics() -> None:
    d = read_ts(FIX / "Equal_TRAIN.ts")
    s = classification_splits(d, missing_rate=0.0, seed=3, fractions=(0.5, 0.25, 0.25))
    assert (s.info["n_train"], s.info["n_val"], s.info["n_test"]) == (2, 1, 1)
    for b in (s.train, s.val, s.test):
        assert not torch.isnan(b.values).any() and (b.values[~b.mask] == 0).all()
        torch.testing.assert_close(b.times[0], torch.tensor([0, 1 / 3, 2 / 3, 1.0]))
    mean, std = observed_statistics(s.train.values, s.train.mask)
    torch.testing.assert_close(mean, torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(std, torch.ones(2))
    # the validation case is one raw case of the file, normalised with the training statistics
    raw = torch.as_tensor(d.values, dtype=torch.float32)
    expect = torch.where(torch.isnan(raw), torch.zeros_like(raw), (raw - s.mean) / s.std)
    hits = [k for k in range(4) if torch.allclose(expect[k], s.val.values[0], atol=1e-6)]
    assert len(hits) == 1 and torch.equal(s.val.mask[0], ~torch.isnan(raw[hits[0]]))


@needs_aeon
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_basic_motions_protocol(rate: float) -> None:
    s = classification_splits(load_uea("BasicMotions"), missing_rate=rate, seed=0)
    assert (s.info["n_train"], s.info["n_val"], s.info["n_test"]) == (56, 12, 12)
    assert torch.bincount(s.train.labels).tolist() == [14] * 4 and torch.bincount(s.test.labels).tolist() == [3] * 4
    for b in (s.train, s.val, s.test):  # exactly 50 of 100 points per channel remain at rate 0.5
        assert (b.mask.sum(dim=1) == round(100 * (1 - rate))).all()
    m, sd = observed_statistics(s.train.values, s.train.mask)
    torch.testing.assert_close(m, torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(sd, torch.ones(6), atol=1e-5, rtol=0)
    # different seeds: different removals and splits; same seed: identical
    t = classification_splits(load_uea("BasicMotions"), missing_rate=rate, seed=0)
    assert torch.equal(t.train.values, s.train.values)


@needs_aeon
def test_unequal_lengths_pad_with_repeated_last_time_and_no_observation() -> None:
    d = load_uea("JapaneseVowels")
    s = classification_splits(d, missing_rate=0.3, seed=1)
    b = s.train
    L = (b.mask.any(dim=2).cumsum(1) > 0).sum(1)  # upper bound of the valid length
    short = int(torch.argmin(L))
    n = int(b.mask[short].any(dim=1).nonzero().max()) + 1
    assert (~b.mask[short, n:]).all() and (b.times[short, n:] == b.times[short, n - 1]).all()
    assert (b.times.diff(dim=1) >= 0).all() and float(b.times.max()) <= 1.0


def test_lorenz_forecasting_split_targets_follow_inputs() -> None:
    s = lorenz_forecasting_splits(20, n_time=60, dt=0.02, n_obs=20, n_target=5, missing_rate=0.3, seed=0,
                                  rtol=1e-6, atol=1e-6)
    assert s.train.values.shape[1:] == (15, 3) and s.train.targets.shape[1:] == (5, 3)
    assert len(s.train) + len(s.val) + len(s.test) == 20
    assert (s.train.target_times[:, 0] > s.train.times[:, -1]).all()
    kept = s.train.mask.sum(dim=1)  # 6 of the 20 points of each channel are missing, some in the target part
    assert ((kept >= 15 - 6) & (kept <= 15)).all() and (kept < 15).any()
    frac = float(torch.cat([s.train.mask, s.val.mask, s.test.mask]).float().mean())
    assert abs(frac - 0.7) < 0.1
    # targets are the noiseless state in the training units: mean over train targets is O(1)
    assert float(s.train.targets.abs().mean()) < 3.0


def test_lorenz_interpolation_targets_lie_inside_the_window_and_interleave() -> None:
    s = lorenz_interpolation_splits(20, n_time=60, dt=0.02, n_obs=20, n_target=4, seed=0, rtol=1e-6, atol=1e-6)
    f = lorenz_forecasting_splits(20, n_time=60, dt=0.02, n_obs=20, n_target=4, seed=0, rtol=1e-6, atol=1e-6)
    assert s.info["task"] == "interpolation" and f.info["task"] == "forecasting"
    b = s.train
    assert b.values.shape[1:] == (16, 3) and b.targets.shape[1:] == (4, 3)
    # every target time is strictly inside the observation window and between two kept observations
    assert (b.target_times > b.times[:, :1]).all() and (b.target_times < b.times[:, -1:]).all()
    all_t = torch.cat([b.times, b.target_times], 1).sort(dim=1).values
    assert (all_t.diff(dim=1) > 0).all()  # no time is both input and target
    # the same trajectories as the forecasting split: its inputs and targets, rearranged (held-out
    # positions 3, 7, 12, 16 of 20 observations); the noiseless state is normalised the same way
    torch.testing.assert_close(all_t, torch.cat([f.train.times, f.train.target_times], 1))
    assert torch.equal(b.target_times, all_t[:, [3, 7, 12, 16]])
    with pytest.raises(ValueError, match="n_target must be in"):
        lorenz_interpolation_splits(8, n_time=30, n_obs=10, n_target=9)


def test_real_time_stamps_are_kept_and_index_time_needs_no_stamps() -> None:
    d = read_ts(FIX / "Stamped.ts")
    s = classification_splits(d, seed=0, time="real")  # one case per class: both go to train
    b = s.train
    assert len(b) == 2 and len(s.test) == 0
    torch.testing.assert_close(b.times, torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 1.5, 1.5]]))
    assert b.mask[1].tolist() == [[True, False], [False, True], [False, False], [False, False]]
    with pytest.raises(ValueError, match="time-stamped"):
        classification_splits(read_ts(FIX / "Unequal.ts"), seed=0, time="real")
