"""Mutation-audit guards for the ERA5 loader/grid/windows: properties the other ERA5 tests left unchecked.

* ``coarsen`` puts each coarse cell at the centre of its block (the mean of the fine latitudes and
  longitudes): the latitude weights of every downstream score are computed from these coordinates,
  so an off-by-half-cell coordinate silently re-weights the scores.
* ``regrid`` on a global grid whose longitudes start at -180 (the ``longitude_start=-180``
  layout): targets given in 0–360 notation are wrapped into the source convention.
* ``windows_to_batch`` times are offsets in *hours* from the last history step.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sciflow.data import era5


def _global(lon0: float, dlon: float = 30.0, dlat: float = 30.0) -> xr.Dataset:
    lat = np.arange(-75.0, 76.0, dlat)
    lon = np.arange(lon0, lon0 + 360.0, dlon)
    f = np.cos(np.deg2rad(lat))[:, None] * np.sin(np.deg2rad(lon))[None, :] + 0.01 * lat[:, None]
    time = np.array(["2017-01-01T00"], dtype="datetime64[ns]")
    return xr.Dataset({"f": (("time", "lat", "lon"), f[None])}, coords={"time": time, "lat": lat, "lon": lon})


def test_coarsened_cells_sit_at_the_centre_of_their_blocks():
    ds = _global(0.0, dlon=10.0, dlat=10.0)  # lat -75..75 (16 rows), lon 0..350 (36 columns)
    c = era5.coarsen(ds, 2)
    np.testing.assert_allclose(c["lat"].values, ds["lat"].values.reshape(-1, 2).mean(1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c["lon"].values, ds["lon"].values.reshape(-1, 2).mean(1), rtol=0, atol=1e-12)
    # the block value is the cos-lat weighted mean of its four cells, placed at that centre
    w = np.cos(np.deg2rad(ds["lat"].values))
    blk = (ds["f"].values[0] * w[:, None]).reshape(8, 2, 18, 2).sum((1, 3)) / (w.reshape(8, 2).sum(1)[:, None] * 2)
    np.testing.assert_allclose(c["f"].values[0], blk, rtol=1e-12)


def test_regrid_wraps_targets_onto_a_grid_starting_at_minus_180():
    ds = _global(-180.0)  # lon -180, -150, ..., 150
    tgt_lon = np.array([210.0, 345.0, 0.0, 179.0])  # = -150 (a node), -15 (mid of -30 and 0), 0, 179
    g = era5.regrid(ds, ds["lat"].values, tgt_lon)
    f = ds["f"].isel(time=0)
    expect = np.stack([f.sel(lon=-150.0).values, 0.5 * (f.sel(lon=-30.0) + f.sel(lon=0.0)).values,
                       f.sel(lon=0.0).values,
                       (f.sel(lon=150.0) + (179.0 - 150.0) / 30.0 * (f.sel(lon=-180.0) - f.sel(lon=150.0))).values], -1)
    assert np.isfinite(g["f"].values).all()
    np.testing.assert_allclose(g["f"].isel(time=0).values, expect, rtol=1e-12, atol=1e-12)
    # the same targets on the 0..330 version of the grid give the same values
    h = era5.regrid(era5.to_longitude_range(ds, 0.0), ds["lat"].values, tgt_lon)
    np.testing.assert_allclose(h["f"].values, g["f"].values, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step_hours", [1, 6])
def test_window_batch_times_are_offsets_in_hours(step_hours):
    n_time = 12
    time = np.datetime64("2017-01-01T00", "ns") + np.arange(n_time) * np.timedelta64(step_hours, "h")
    rng = np.random.default_rng(0)
    ds = xr.Dataset({"f": (("time", "lat", "lon"), rng.normal(size=(n_time, 3, 4)))},
                    coords={"time": time, "lat": [-30.0, 0.0, 30.0], "lon": [0.0, 90.0, 180.0, 270.0]})
    w = era5.forecast_windows(ds, history=2, lead=[1, 4])
    batch, names = era5.windows_to_batch(w)
    assert names == ["f"] and w.attrs["time_step_hours"] == step_hours
    np.testing.assert_array_equal(batch.times.numpy(), step_hours * np.array([-1.0, 0.0, 1.0, 4.0]))
    # values: window i holds times i, i+1 (history) and i+2, i+5 (leads)
    np.testing.assert_array_equal(batch.values[3, :, 0].numpy(), ds["f"].values[[3, 4, 5, 8]].astype(np.float32))
