"""A synthetic ERA5 source for the tests of runs split by time (``tests/test_cli_era5.py``,
``tests/test_cli_online_conformal.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

T0 = np.datetime64("2019-03-01T00:00", "ns")


def era5_nc(path: Path, days: int = 7) -> Path:
    """CDS-style NetCDF (short names, ``latitude`` descending): t2m = 280 + hours/10 + lat/100, so
    every value encodes its own valid time."""
    hours = np.arange(24 * days)
    lat = np.array([56.0, 53.0, 50.0])
    lon = np.array([-4.0, -2.0, 0.0, 2.0])
    t2m = 280 + hours[:, None, None] / 10 + lat[None, :, None] / 100 + 0 * lon
    xr.Dataset({"t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32))},
               coords={"time": T0 + hours.astype("timedelta64[h]"), "latitude": lat,
                       "longitude": lon}).to_netcdf(path)
    return path
