"""Mutation-audit guards for the irregular time-series protocol and loaders: properties the other
time-series tests left unchecked.

* ``stratified_split`` rounds ``f · n_c`` by the largest-remainder (Hamilton) method; the existing
  test used class sizes where every ``f · n_c`` is an integer, so the rounding was never exercised.
  Expected counts are worked out by hand below.
* ``observed_statistics`` is the mean and (``ddof = 1``) standard deviation of the *observed*
  entries only (numpy's ``nanmean``/``nanstd`` on the masked array): the existing tests only
  compared it with itself (normalise, then re-measure).
* ``forecasting_splits`` normalises the targets exactly like the inputs, ``(y − mean) / std``.
* PhysioNet 2012: ``-1`` marks an unknown value on time-series rows too (never a measurement).
* ``bin_nwb_trials``: a bin counts only if it lies entirely inside its trial; the partly covered
  bin at a trial's stop time is NaN padding like the bins after it (the existing test's stop time
  fell on a bin edge, where rounding up and down agree).
* ``read_ts``: a case's length is its *longest* channel (channels of one case may differ in length
  in unequal-length files); shorter channels are NaN-padded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sciflow.data.batches import IrregularBatch
from sciflow.data.timeseries import (forecasting_splits, load_physionet2012, observed_statistics, read_ts,
                                    stratified_split)

from tests.data.timeseries._physionet_fixture import write_physionet2012


def test_stratified_split_sizes_are_largest_remainder_rounding():
    # class 0: n = 11 -> ideal (7.7, 1.65, 1.65): floors (7, 1, 1), the two spare samples go to the
    #   largest remainders .7 (train) and one .65 (val or test)            -> (8, {1, 2})
    # class 1: n = 13 -> (9.1, 1.95, 1.95): floors (9, 1, 1), spares to .95, .95 -> (9, 2, 2)
    # class 2: n = 7  -> (4.9, 1.05, 1.05): floors (4, 1, 1), spare to .9   -> (5, 1, 1)
    labels = np.repeat([0, 1, 2], [11, 13, 7])
    tr, va, te = stratified_split(labels, generator=torch.Generator().manual_seed(0))
    c = [np.bincount(labels[s], minlength=3) for s in (tr, va, te)]
    assert c[0].tolist() == [8, 9, 5]
    assert sorted([c[1][0], c[2][0]]) == [1, 2] and c[1][1] == c[2][1] == 2 and c[1][2] == c[2][2] == 1
    ideal = np.outer([0.7, 0.15, 0.15], [11, 13, 7])
    assert np.abs(np.stack(c) - ideal).max() < 1  # Hamilton rounding never moves a count by >= 1


def test_observed_statistics_are_nanmean_and_nanstd_of_the_observed_entries():
    g = np.random.default_rng(0)
    x = g.normal(5.0, 2.0, (6, 9, 3)) * np.array([1.0, 3.0, 0.5])
    mask = g.random(x.shape) > 0.4
    mask[:, :, 2] &= np.arange(9) < 4  # an unevenly observed channel
    nan = np.where(mask, x, np.nan)
    mean, std = observed_statistics(torch.as_tensor(np.where(mask, x, 0.0)), torch.as_tensor(mask))
    np.testing.assert_allclose(mean.numpy(), np.nanmean(nan, axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), np.nanstd(nan, axis=(0, 1), ddof=1), rtol=1e-12)


def test_forecasting_targets_are_normalised_like_the_inputs():
    g = torch.Generator().manual_seed(1)
    n, T, H, C = 20, 8, 3, 2
    values = 10.0 + 3.0 * torch.randn(n, T, C, generator=g, dtype=torch.float64)
    targets = 10.0 + 3.0 * torch.randn(n, H, C, generator=g, dtype=torch.float64)
    mask = torch.ones(n, T, C, dtype=torch.bool)
    batch = IrregularBatch(values=values, times=torch.arange(T, dtype=torch.float64).expand(n, T).contiguous(),
                           mask=mask, labels=torch.arange(n), targets=targets,
                           target_times=(T + torch.arange(H, dtype=torch.float64)).expand(n, H).contiguous(),
                           target_mask=torch.ones(n, H, C, dtype=torch.bool))
    s = forecasting_splits(batch, seed=0)
    for part in (s.train, s.val, s.test):
        idx = part.labels  # the sample ids travel with the split
        torch.testing.assert_close(part.targets, (targets[idx] - s.mean) / s.std)
        torch.testing.assert_close(part.values, (values[idx] - s.mean) / s.std)
    assert float(s.mean.min()) > 8.0  # a non-trivial mean: dropping it would be visible


def test_physionet2012_minus_one_on_a_time_series_row_is_not_a_measurement(tmp_path: Path) -> None:
    write_physionet2012(tmp_path, n=2, seed=5)
    p = sorted((tmp_path / "set-a").glob("*.txt"))[0]
    before = load_physionet2012(tmp_path / "set-a")
    with p.open("a") as fh:
        fh.write("47:59,HR,-1\n")  # unknown HR at a time with no other measurement
    after = load_physionet2012(tmp_path / "set-a")
    i = list(after.record_ids).index(int(p.stem))
    assert int(after.batch.mask[i].sum()) == int(before.batch.mask[i].sum())
    assert float(after.batch.times[i].max()) < 47.98  # no time point was added for it


def test_ts_case_length_is_its_longest_channel(tmp_path: Path) -> None:
    p = tmp_path / "Ragged_TRAIN.ts"
    p.write_text("@problemName Ragged\n@timeStamps false\n@missing false\n@univariate false\n"
                 "@equalLength false\n@classLabel true a b\n@data\n"
                 "1,2,3:4,5,6,7:a\n8,9:10:b\n")
    d = read_ts(p)
    np.testing.assert_array_equal(d.lengths, [4, 2])
    assert d.values.shape == (2, 4, 2)
    np.testing.assert_array_equal(d.values[0, :, 0], [1, 2, 3, np.nan])
    np.testing.assert_array_equal(d.values[0, :, 1], [4, 5, 6, 7])
    np.testing.assert_array_equal(d.values[1, :, 1], [10, np.nan, np.nan, np.nan])


def test_nwb_bin_cut_by_the_trial_stop_is_padding(tmp_path: Path) -> None:
    import h5py

    from sciflow.data.nlb import bin_nwb_trials

    path = tmp_path / "cut.nwb"
    with h5py.File(path, "w") as f:
        f["units/spike_times"] = np.array([0.005, 0.045, 1.005, 1.045, 1.065])  # one unit
        f["units/spike_times_index"] = np.array([5])
        f["intervals/trials/start_time"] = np.array([0.0, 1.0])
        f["intervals/trials/stop_time"] = np.array([0.1, 1.07])  # trial 1: 3.5 bins of 20 ms
    c = bin_nwb_trials(path, 0.02, duration=0.1)["counts"][:, :, 0]
    assert c[0].tolist() == [1, 0, 1, 0, 0]
    assert c[1, :3].tolist() == [1, 0, 1] and bool(torch.isnan(c[1, 3:]).all())  # bin [60, 80) ms is cut
