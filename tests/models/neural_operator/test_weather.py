"""ERA5 / WeatherBench-2 trajectory forecasting: time splits without leakage, baselines, weighted scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.models.neural_operator.weather import (climatology_trajectory, era5_forecast_data,
                                                    lat_weighted_crps, lat_weighted_rmse_per_lead,
                                                    persistence_forecast)

T0 = np.datetime64("2020-01-01T00:00", "ns")


def _wb2_store(path, n_hours: int = 120):
    """A tiny WeatherBench-2-layout zarr: dims (time, level, longitude, latitude), long names.
    geopotential = hours since T0 + level; temperature = -hours + level / 100 + latitude."""
    hours = np.arange(n_hours)
    lat = np.array([-10.0, 0.0, 10.0, 20.0])
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    level = np.array([500, 850])
    shape = (n_hours, 2, 4, 4)
    h = hours[:, None, None, None] * np.ones(shape)
    z = h + level[None, :, None, None]
    t = -h + level[None, :, None, None] / 100 + lat[None, None, None, :]
    ds = xr.Dataset(
        {"geopotential": (("time", "level", "longitude", "latitude"), z.astype(np.float32)),
         "temperature": (("time", "level", "longitude", "latitude"), t.astype(np.float32))},
        coords={"time": T0 + hours.astype("timedelta64[h]"), "level": level, "longitude": lon, "latitude": lat})
    ds.to_zarr(path, mode="w")
    return path


def test_wb2_zarr_windows_split_by_time_without_leakage(tmp_path):
    store = _wb2_store(tmp_path / "wb2.zarr")
    d = era5_forecast_data(store, ["geopotential@500", "temperature@850"], test_start="2020-01-04T00",
                           window=6, history=2, train_stride=1)
    assert d.channels == ["geopotential@500", "temperature@850"]
    assert d.train.values.shape == (72 - 6 + 1, 6, 2, 4, 4)  # every start in the 72 training hours
    assert d.test.values.shape == (8, 6, 2, 4, 4)  # 48 test hours, non-overlapping windows of 6
    torch.testing.assert_close(d.train.times, torch.arange(-1.0, 5.0))  # hours from the last history step
    # the data encode their own valid time: z500 = hours + 500
    train_hours = d.train.values[:, :, 0] - 500
    test_hours = d.test.values[:, :, 0] - 500
    assert float(train_hours.max()) < 72 <= float(test_hours.min())  # no test hour in training
    assert torch.all(train_hours.diff(dim=1) == 1) and torch.all(test_hours.diff(dim=1) == 1)
    torch.testing.assert_close(test_hours[:, 0, 0, 0], torch.arange(72.0, 120.0, 6))
    # valid_times agrees with the data, and the levels are the requested ones
    vt = d.valid_times(d.test_init)
    hours_vt = (vt - T0) / np.timedelta64(1, "h")
    np.testing.assert_allclose(hours_vt, test_hours[:, :, 0, 0].numpy())
    expected_t850 = -test_hours + 8.5 + d.lat.reshape(1, 1, -1, 1)
    torch.testing.assert_close(d.test.values[:, :, 1], expected_t850)
    assert d.lat.tolist() == [-10.0, 0.0, 10.0, 20.0]


def test_bad_requests_raise_clear_errors(tmp_path):
    store = _wb2_store(tmp_path / "wb2.zarr", n_hours=30)
    with pytest.raises(ValueError, match="fewer than one window"):
        era5_forecast_data(store, ["geopotential@500"], test_start="2020-01-01T20", window=12, history=2)
    with pytest.raises(ValueError, match="history"):
        era5_forecast_data(store, ["geopotential@500"], test_start="2020-01-01T12", window=4, history=4)
    with pytest.raises(ValueError, match="not in the file"):
        era5_forecast_data(store, ["geopotential@700"], test_start="2020-01-01T12", window=4, history=1)


def _diurnal(days: int = 6) -> xr.Dataset:
    """2 m temperature with a pure diurnal cycle: 280 + 5 sin(2 pi h / 24) + lat / 10."""
    hours = np.arange(24 * days)
    lat = np.array([50.0, 52.0, 54.0])
    lon = np.array([-2.0, 0.0])
    t2m = 280 + 5 * np.sin(2 * np.pi * hours / 24)[:, None, None] + lat[None, :, None] / 10 + 0 * lon
    return xr.Dataset({"t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32))},
                      coords={"time": T0 + hours.astype("timedelta64[h]"), "latitude": lat, "longitude": lon})


def test_baselines_persistence_and_climatology():
    d = era5_forecast_data(_diurnal(), ["2m_temperature"], test_start="2020-01-05", window=24, history=6)
    truth = d.test.values
    hourly = climatology_trajectory(d, d.test_init, by="hour", like=d.test)
    mean = climatology_trajectory(d, d.test_init, by=None, like=d.test)
    pers = persistence_forecast(d.test, d.history)
    H = d.history
    assert float(lat_weighted_rmse_per_lead(hourly[:, H:], truth[:, H:], d.lat).max()) < 1e-4
    # the time-mean climatology misses the whole diurnal cycle: RMSE = 5 / sqrt(2) over full days
    rmse_mean = lat_weighted_rmse_per_lead(mean[:, H:], truth[:, H:], d.lat)
    assert abs(float((rmse_mean**2).mean().sqrt()) - 5 / math.sqrt(2)) < 0.3
    # persistence is exact at the last history step and its error grows like |sin| of the lead
    torch.testing.assert_close(pers[:, :H], truth[:, :H])
    assert torch.equal(pers[:, H], truth[:, H - 1])
    rmse_pers = lat_weighted_rmse_per_lead(pers[:, H:], truth[:, H:], d.lat)[:, 0]
    assert float(rmse_pers[0]) < float(rmse_pers[5]) and float(rmse_pers.max()) > 5


def test_lat_weighted_rmse_and_crps_match_hand_computation():
    lat = torch.tensor([0.0, 60.0])  # cos = 1, 1/2 -> weights (mean one) 4/3, 2/3
    truth = torch.zeros(2, 1, 1, 2, 3)
    fc = truth.clone()
    fc[0, 0, 0, 0] = 1.0  # errors 1 on the equator row,
    fc[0, 0, 0, 1] = 2.0  # 2 on the 60° row, forecast 2 perfect
    # forecast 1: (1/6) * (3 * 4/3 * 1 + 3 * 2/3 * 4) = 2 -> RMSE sqrt(2); mean over forecasts
    rmse = lat_weighted_rmse_per_lead(fc, truth, lat)
    torch.testing.assert_close(rmse, torch.tensor([[math.sqrt(2) / 2]]))
    # a one-member ensemble's CRPS is the weighted MAE: (1/12) (3 * 4/3 * 1 + 3 * 2/3 * 2) = 2/3
    crps = lat_weighted_crps(fc[None], truth, lat)
    torch.testing.assert_close(crps, torch.tensor([[2.0 / 3.0]]))
    # two members at y -+ 1: E|X - y| - E|X - X'| / 2 = 1 - 1/2 everywhere
    ens = torch.stack([truth - 1, truth + 1])
    torch.testing.assert_close(lat_weighted_crps(ens, truth, lat), torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="n_samples"):
        lat_weighted_crps(fc, truth, lat)
