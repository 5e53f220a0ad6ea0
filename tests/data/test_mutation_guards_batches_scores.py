"""Mutation guards for the batch dataclasses, the generator registry and the latitude-weighted scores.

Each test kills one or more mutants of ``sciflow.data.batches`` (validation on construction,
``to``/``index``/``collate`` and their optional fields), ``sciflow.data.registry`` (names ->
generators), ``sciflow.data.latitude`` / ``sciflow.data.weatherbench`` (Rasp et al. 2020 weights,
grid alignment, climatology look-up) and ``sciflow.models.neural_operator.weather`` (fair / biased
ensemble CRPS, Ferro 2014; climatology trajectories and departures). Expected values are analytic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.data import weatherbench as wb
from sciflow.data.batches import IrregularBatch, PopulationBatch, TrajectoryBatch
from sciflow.data.latitude import latitude_weights
from sciflow.models.neural_operator.weather import (climatology_trajectory, departures, era5_forecast_data,
                                                    lat_weighted_crps)

# ------------------------------------------------------------------ batches: validation


def _irregular(**kw) -> IrregularBatch:
    """Three series of four steps and two channels; sample 1 is padded by repeating its last time."""
    values = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)
    times = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 0.5, 0.5], [1.0, 2.0, 4.0, 8.0]])
    mask = torch.ones(3, 4, 2, dtype=torch.bool)
    mask[1, 2:] = False
    args = dict(values=values, times=times, mask=mask)
    args.update(kw)
    return IrregularBatch(**args)


def test_population_target_nan_is_rejected():
    """Kills: the NaN check of ``PopulationBatch.target`` dropped (only ``source`` checked)."""
    source = torch.zeros(2, 3, 2)
    target = torch.zeros(2, 3, 2)
    target[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^PopulationBatch: target contains NaN$"):
        PopulationBatch(source, target=target)


def test_irregular_nan_values_are_rejected_but_repeated_padding_times_are_not():
    """Kills: the NaN check of ``IrregularBatch.values`` dropped; non-decreasing ``>=`` made
    strictly increasing ``>`` (padding repeats the last time); mask dtype check dropped."""
    b = _irregular()
    assert b.times[1].tolist() == [0.0, 0.5, 0.5, 0.5]
    values = b.values.clone()
    values[2, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^IrregularBatch: values contain NaN: encode missing entries in mask$"):
        _irregular(values=values)
    times = b.times.clone()
    times[2, 2] = 1.5
    with pytest.raises(ValueError, match=r"^IrregularBatch: times must be non-decreasing per sample$"):
        _irregular(times=times)
    with pytest.raises(ValueError, match=r"^IrregularBatch: mask must be bool, got torch.float32$"):
        _irregular(mask=b.mask.float())


def test_trajectory_times_validation():
    """Kills: strictly increasing ``>`` relaxed to ``>=``; the condition batch check dropped;
    the time-length check read from ``times.shape[0]`` (wrong for per-sample ``(batch, time)`` grids)."""
    values = torch.zeros(2, 3, 1)
    TrajectoryBatch(values, torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.5, 3.0]]))  # batch 2 != time 3
    with pytest.raises(ValueError, match=r"^TrajectoryBatch: times must be strictly increasing$"):
        TrajectoryBatch(values, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^TrajectoryBatch: condition must share the batch axis of values$"):
        TrajectoryBatch(values, torch.arange(3.0), condition=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"^TrajectoryBatch: times has 4 points but values has 3 time steps$"):
        TrajectoryBatch(values, torch.arange(4.0))


# ------------------------------------------------------------------ batches: to / index / collate


def test_to_casts_floating_fields_only():
    """Kills: ``to(dtype=...)`` casting every tensor (integer labels and the bool mask too)."""
    labels = torch.tensor([2, 0, 1])
    b = _irregular(labels=labels).to("cpu", torch.float64)
    assert b.values.dtype == b.times.dtype == torch.float64
    assert b.labels.dtype == torch.int64 and torch.equal(b.labels, labels)
    assert b.mask.dtype == torch.bool and b.targets is None
    torch.testing.assert_close(b.values, _irregular().values.double(), rtol=0, atol=0)


def test_index_selects_condition_and_keeps_the_shared_time_grid():
    """Kills: ``condition`` left out of ``TrajectoryBatch._batched`` (not sliced by ``index`` nor
    concatenated by ``collate``); ``index`` slicing every tensor, the shared ``(time,)`` grid too."""
    values = torch.arange(4 * 4 * 1, dtype=torch.float32).reshape(4, 4, 1)
    times = torch.tensor([0.0, 1.0, 2.0, 5.0])
    cond = torch.tensor([[10.0], [11.0], [12.0], [13.0]])
    b = TrajectoryBatch(values, times, condition=cond)
    sub = b.index([3, 1])
    assert torch.equal(sub.values, values[[3, 1]]) and torch.equal(sub.condition, cond[[3, 1]])
    assert torch.equal(sub.times, times) and len(sub) == 2
    both = TrajectoryBatch.collate([b.index([0]), b.index([2])])
    assert torch.equal(both.condition, cond[[0, 2]]) and torch.equal(both.times, times)


def test_per_sample_times_travel_with_their_samples_after_to():
    """Kills: per-sample ``(batch, time)`` grids not added to ``_batched``; ``_unchecked`` not
    copying ``_batched`` (after ``to`` the class default drops ``times`` from what ``index`` slices)."""
    times = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.1, 0.2], [5.0, 6.0, 9.0]])
    b = TrajectoryBatch(torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(0)), times)
    for moved in (b, b.to("cpu", torch.float64)):
        sub = moved.index([2, 0])
        torch.testing.assert_close(sub.times, times[[2, 0]].to(sub.times.dtype), rtol=0, atol=0)
        assert sub.values.shape == (2, 3, 2)


def test_collate_concatenates_batched_fields_and_shares_the_grid():
    """Kills: ``collate`` concatenating the shared time grid as well; ``torch.stack`` instead of
    ``torch.cat`` (an extra axis instead of a longer batch)."""
    times = torch.tensor([0.0, 0.5, 2.0])
    items = [TrajectoryBatch(torch.full((1, 3, 2), float(i)), times) for i in range(3)]
    out = TrajectoryBatch.collate(items + [TrajectoryBatch(torch.full((2, 3, 2), 7.0), times)])
    assert out.values.shape == (5, 3, 2) and torch.equal(out.times, times)
    assert out.values[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 7.0, 7.0]


def test_index_and_collate_carry_every_optional_irregular_field():
    """Kills: ``target_mask`` left out of ``IrregularBatch._batched`` (targets sliced, their mask not)."""
    tmask = torch.tensor([[True, False], [False, False], [True, True]])
    b = _irregular(labels=torch.tensor([0, 1, 2]), targets=torch.arange(6.0).reshape(3, 2),
                   target_times=torch.tensor([[4.0, 5.0], [1.0, 2.0], [9.0, 10.0]]), target_mask=tmask)
    sub = b.index(torch.tensor([2, 0]))
    assert sub.labels.tolist() == [2, 0] and sub.targets.tolist() == [[4.0, 5.0], [0.0, 1.0]]
    assert sub.target_times.tolist() == [[9.0, 10.0], [4.0, 5.0]]
    assert sub.target_mask.tolist() == [[True, True], [True, False]]
    back = IrregularBatch.collate([b.index([i]) for i in range(3)])
    for name in ("values", "times", "mask", "labels", "targets", "target_times", "target_mask"):
        assert torch.equal(getattr(back, name), getattr(b, name)), name


# ------------------------------------------------------------------ registry


def test_registry_names_reach_their_equations():
    """Kills: ``allen-cahn`` and ``kuramoto-sivashinsky`` swapped (same keyword signature, both
    valid datasets); the ``lorenz`` alias pointing at Lorenz-96 instead of Lorenz-63."""
    from sciflow.data.registry import GENERATORS

    kw = dict(nx=32, nt=2, t_final=0.02, dt=1e-2, initial_condition="grf")
    ac = GENERATORS["allen-cahn"](n=1, seed=0, **kw)
    ks = GENERATORS["kuramoto-sivashinsky"](n=1, seed=0, **kw)
    assert ac.attrs["generator"] == "sciflow.data.pdes.allen_cahn.generate"
    assert ac.attrs["equation"].startswith("u_t = eps u_xx + a (u - u^3)")
    assert ks.attrs["generator"] == "sciflow.data.pdes.kuramoto_sivashinsky.generate"
    assert "gamma u_xxxx" in ks.attrs["equation"]
    assert GENERATORS["lorenz"] is GENERATORS["lorenz63"]
    assert GENERATORS["lorenz63"].__name__ == "generate_lorenz63"


# ------------------------------------------------------------------ latitude weights, WeatherBench


def test_float32_pole_weights_are_exactly_zero_never_negative():
    """Kills: ``clamp_min(0)`` dropped (in float32, cos(deg2rad(±90)) = -4.4e-8 < 0)."""
    w = latitude_weights(torch.tensor([-90.0, 0.0, 90.0], dtype=torch.float32))
    assert w.dtype == torch.float32 and w.tolist() == [0.0, 3.0, 0.0]


def test_forecast_on_a_shifted_grid_is_refused():
    """Kills: the coordinate comparison in ``_check_aligned`` dropped (xarray would then align
    forecast and truth by their common latitudes and score a subset silently)."""
    lat, lon = np.array([-30.0, 0.0, 30.0]), np.array([0.0, 90.0, 180.0, 270.0])
    time = np.datetime64("2018-01-01") + np.arange(2) * np.timedelta64(1, "D")
    truth = xr.DataArray(np.zeros((2, 3, 4)), dims=("time", "lat", "lon"),
                         coords={"time": time, "lat": lat, "lon": lon})
    shifted = truth.assign_coords(lat=lat + 30.0) + 1.0
    with pytest.raises(ValueError, match="forecast and truth are on different lat grids"):
        wb.lat_weighted_rmse(shifted, truth)
    with pytest.raises(ValueError, match="forecast and truth are on different lon grids"):
        wb.lat_weighted_acc(truth.assign_coords(lon=lon + 1.0), truth, truth.mean("time"))


def test_climatology_forecast_needs_only_the_requested_groups():
    """Kills: the missing-group check with its arguments swapped (climatology groups not asked
    for reported as missing; the groups really missing not reported)."""
    time = np.datetime64("2017-01-01") + np.arange(8) * np.timedelta64(6, "h")
    da = xr.DataArray((np.arange(8.0) % 4)[:, None, None] * np.ones((8, 2, 2)), dims=("time", "lat", "lon"),
                      coords={"time": time, "lat": [0.0, 10.0], "lon": [0.0, 1.0]})
    clim = wb.climatology(da, by="hour")
    noon = [np.datetime64("2018-05-01T12"), np.datetime64("2018-05-02T12")]
    fc = wb.climatology_forecast(clim, noon, by="hour")
    np.testing.assert_array_equal(fc.values, np.full((2, 2, 2), 2.0))
    with pytest.raises(ValueError, match=r"^climatology has no entry for hour \[3, 9\]$"):
        wb.climatology_forecast(clim, [np.datetime64("2018-05-01T03"), np.datetime64("2018-05-01T09"),
                                       np.datetime64("2018-05-01T12")], by="hour")


# ------------------------------------------------------------------ ensemble CRPS (weather.py)


def test_lat_weighted_crps_fair_and_biased_closed_forms():
    """Kills: ``fair`` not forwarded to ``crps_ensemble``; the fair factor ``m/(m-1)`` replaced by
    ``(m-1)/m``.

    Members ``y + {0, 1, 3}``: E|X-y| = 4/3, (1/m²) Σ|x_i - x_j| = 12/9, so the biased CRPS is
    4/3 - 2/3 = 2/3 and the fair one 4/3 - (3/2)(2/3) = 1/3. At 60° the offsets are doubled
    (CRPS doubled); weights 4/3, 2/3 give the latitude mean (4/3 c + 2/3 · 2c) / 2 = 4/3 c.
    """
    lat = torch.tensor([0.0, 60.0], dtype=torch.float64)
    truth = torch.randn(2, 3, 2, 2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0], dtype=torch.float64).reshape(2, 1)
    offsets = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64).reshape(3, 1, 1, 1, 1, 1)
    samples = truth + offsets * scale
    expected = torch.full((3, 2), 1.0, dtype=torch.float64) * 4 / 3
    torch.testing.assert_close(lat_weighted_crps(samples, truth, lat), expected * 2 / 3)
    torch.testing.assert_close(lat_weighted_crps(samples, truth, lat, fair=True), expected / 3)


# ------------------------------------------------------------------ climatology trajectories (weather.py)


T0 = np.datetime64("2020-01-01T00:00", "ns")


def _trend_days(days: int = 6) -> xr.Dataset:
    """t2m = 280 + 5 sin(2 pi h / 24) + 2 * day + lat / 10: hour-of-day climatology over the four
    training days is 280 + 5 sin(2 pi h / 24) + 3 + lat / 10, so a day-k step departs by 2k - 3."""
    hours = np.arange(24 * days)
    lat, lon = np.array([50.0, 52.0, 54.0]), np.array([-2.0, 0.0])
    series = 280 + 5 * np.sin(2 * np.pi * hours / 24) + 2.0 * (hours // 24)
    t2m = series[:, None, None] + lat[None, :, None] / 10 + np.zeros_like(lon)
    return xr.Dataset({"t2m": (("time", "latitude", "longitude"), t2m)},
                      coords={"time": T0 + hours.astype("timedelta64[h]"), "latitude": lat, "longitude": lon})


def test_climatology_trajectory_copies_history_only_and_departures_are_exact():
    """Kills: the history/forecast split of ``climatology_trajectory(like=...)`` off by one (the
    first forecast step copied from the truth)."""
    d = era5_forecast_data(_trend_days(), ["2m_temperature"], test_start="2020-01-05", window=12, history=3,
                           dtype=torch.float64)
    H = d.history
    clim = climatology_trajectory(d, d.test_init, by="hour")
    mixed = climatology_trajectory(d, d.test_init, by="hour", like=d.test)
    assert torch.equal(mixed[:, :H], d.test.values[:, :H]) and torch.equal(mixed[:, H:], clim[:, H:])
    day = torch.as_tensor((d.valid_times(d.test_init) - T0) // np.timedelta64(24, "h")).double()
    expected = (2 * day - 3)[:, :, None, None, None].expand_as(d.test.values)
    torch.testing.assert_close(d.test.values - clim, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(departures(d, d.test, d.test_init).values, expected, rtol=0, atol=1e-9)


def test_batch_to_host_is_a_blocking_copy(monkeypatch) -> None:
    """``to("cpu")`` must not ask for a non-blocking copy (a device-to-host one may be read before
    it lands); copies to an accelerator may be asynchronous."""
    from sciflow.data.batches import TrajectoryBatch

    seen = []
    real = torch.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("non_blocking", False))
        return real(self, *args, **kwargs)

    b = TrajectoryBatch(torch.randn(2, 3, 1), torch.arange(3.0))
    monkeypatch.setattr(torch.Tensor, "to", spy)
    b.to("cpu")
    assert seen and not any(seen)
    seen.clear()
    b.to("meta")
    assert seen and all(seen)
