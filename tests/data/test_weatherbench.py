"""WeatherBench baselines and metrics (sciflow.data.weatherbench), checked by hand.

The published WeatherBench skill (Rasp et al. 2020: Z500 persistence 936/1033 m²/s² at 3/5 days,
climatology 1075; T850 persistence 4.23/4.56 K, climatology 5.51 K) needs the 5.625° 2017–2018
ERA5 archive, which is not available offline: those numbers are NOT checked here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.data import era5, weatherbench as wb

LAT = np.array([-60.0, 0.0, 30.0])
LON = np.array([0.0, 120.0, 240.0, 300.0])


def _truth(n_time: int = 5) -> xr.DataArray:
    rng = np.random.default_rng(1)
    time = np.datetime64("2018-01-01T00") + np.arange(n_time) * np.timedelta64(1, "D")
    return xr.DataArray(rng.normal(0, 3, (n_time, 3, 4)), dims=("time", "lat", "lon"),
                        coords={"time": time, "lat": LAT, "lon": LON}, name="t")


def _rmse_by_hand(f: np.ndarray, t: np.ndarray) -> float:
    L = np.cos(np.deg2rad(LAT)) / np.cos(np.deg2rad(LAT)).mean()  # Rasp et al. 2020, eq. 1
    per_time = []
    for i in range(f.shape[0]):
        s = 0.0
        for j in range(f.shape[1]):
            for k in range(f.shape[2]):
                s += L[j] * (f[i, j, k] - t[i, j, k]) ** 2
        per_time.append(np.sqrt(s / (f.shape[1] * f.shape[2])))
    return float(np.mean(per_time))


def test_persistence_rmse_by_hand():
    truth = _truth()
    lead = 2
    f = wb.persistence(truth, lead)
    assert (f["time"].values == truth["time"].values[lead:]).all()
    t = truth.isel(time=slice(lead, None))
    expected = _rmse_by_hand(truth.values[:-lead], truth.values[lead:])
    assert float(wb.lat_weighted_rmse(f, t)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="lead"):
        wb.persistence(truth, 5)


def test_climatology_rmse_and_acc_by_hand():
    train, test = _truth(8).isel(time=slice(0, 6)), _truth(8).isel(time=slice(6, None))
    clim = wb.climatology(train)
    np.testing.assert_allclose(clim.values, train.values.mean(0))
    fc = wb.climatology_forecast(clim, test["time"].values)
    assert float(wb.lat_weighted_rmse(fc, test)) == pytest.approx(
        _rmse_by_hand(np.broadcast_to(clim.values, test.shape), test.values), rel=1e-12)
    # ACC (eq. 2) for a persistence-like forecast, by hand
    f = test + 0.5 * np.sin(np.arange(test.size)).reshape(test.shape)
    L = np.cos(np.deg2rad(LAT)) / np.cos(np.deg2rad(LAT)).mean()
    accs = []
    for i in range(test.sizes["time"]):
        fa, ta = f.values[i] - clim.values, test.values[i] - clim.values
        accs.append((L[:, None] * fa * ta).sum() / np.sqrt((L[:, None] * fa**2).sum() * (L[:, None] * ta**2).sum()))
    assert float(wb.lat_weighted_acc(f, test, clim)) == pytest.approx(np.mean(accs), rel=1e-12)
    assert float(wb.lat_weighted_acc(test, test, clim)) == pytest.approx(1.0, rel=1e-12)


def test_rmse_of_constant_error_and_weighting():
    truth = _truth()
    assert float(wb.lat_weighted_rmse(truth + 2.0, truth)) == pytest.approx(2.0, rel=1e-12)
    # an error only at the equator counts more than the same error at 60°
    e_eq, e_60 = truth.copy(), truth.copy()
    e_eq.loc[{"lat": 0.0}] += 1.0
    e_60.loc[{"lat": -60.0}] += 1.0
    assert float(wb.lat_weighted_rmse(e_eq, truth)) == pytest.approx(np.sqrt(1 / np.cos(np.deg2rad(LAT)).sum() / 1))
    assert float(wb.lat_weighted_rmse(e_60, truth)) == pytest.approx(np.sqrt(0.5 / np.cos(np.deg2rad(LAT)).sum()))


def test_seasonal_climatology_groups():
    time = np.datetime64("2017-01-01") + np.arange(48) * np.timedelta64(6, "h")
    da = xr.DataArray(np.arange(48.0)[:, None, None] % 4 * np.ones((48, 3, 4)), dims=("time", "lat", "lon"),
                      coords={"time": time, "lat": LAT, "lon": LON})
    clim = wb.climatology(da, by="hour")
    assert clim["hour"].values.tolist() == [0, 6, 12, 18] and clim.sel(hour=12).values.mean() == 2.0
    fc = wb.climatology_forecast(clim, time[:5], by="hour")
    np.testing.assert_array_equal(fc.values, da.values[:5])
    with pytest.raises(ValueError, match="no entry for hour"):
        wb.climatology_forecast(clim, [np.datetime64("2017-01-01T03")], by="hour")


def test_baselines_on_real_era5_members(shared_reference):
    """12 h persistence of Z500/T850 on the ERA5 ensemble sample: finite, ordered sensibly.

    Persistence error at 12 h must be well below the spread of the field itself and above zero;
    T850 error is a few K, Z500 error a few hundred m²/s² (the WeatherBench 3-day values are 936 and
    4.23; 12 h errors are smaller)."""
    ds = era5.open_era5(shared_reference / "era5" / "era5_z_t_members_2017.grib", levels=[500, 850]).isel(member=0)
    z, t = ds["geopotential"].sel(level=500.0), ds["temperature"].sel(level=850.0)
    rz = float(wb.lat_weighted_rmse(wb.persistence(z, 1), z.isel(time=slice(1, None))))
    rt = float(wb.lat_weighted_rmse(wb.persistence(t, 1), t.isel(time=slice(1, None))))
    assert 50 < rz < 936 and 0.3 < rt < 4.23
    clim = wb.climatology(z)
    assert float(wb.lat_weighted_rmse(wb.climatology_forecast(clim, z["time"].values), z)) < float(z.std())


def test_tensor_rmse_matches_xarray():
    import torch

    truth = _truth()
    f = truth + np.random.default_rng(3).normal(0, 1, truth.shape)
    per_time = np.sqrt(wb.lat_weighted_mse(f, truth)).values
    got = wb.lat_weighted_rmse_tensor(torch.tensor(f.values), torch.tensor(truth.values), torch.tensor(LAT))
    np.testing.assert_allclose(got.numpy(), per_time, rtol=1e-12)
    assert float(got.mean()) == pytest.approx(float(wb.lat_weighted_rmse(f, truth)), rel=1e-12)
    with pytest.raises(ValueError, match="lat of length"):
        wb.lat_weighted_rmse_tensor(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(4))


def test_latitude_weights_single_definition_and_errors():
    from sciflow.data.latitude import latitude_weights
    from sciflow.uq import scores

    assert scores.latitude_weights is latitude_weights
    lat = torch.tensor([-90.0, -45.0, 0.0, 45.0, 90.0], dtype=torch.float64)
    w = latitude_weights(lat)
    assert torch.allclose(w.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert (abs(w[0]) < 1e-12 and abs(w[-1]) < 1e-12
            and torch.isclose(w[2] / w[1], torch.tensor(2 ** 0.5, dtype=torch.float64)))
    with pytest.raises(ValueError, match="NaN"):
        latitude_weights(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="all zero"):
        latitude_weights(torch.tensor([90.0, -90.0]))
