"""Per-variable (and per-level) normalisation statistics, area-weighted, stored on the dataset."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sciflow.data.era5.grid import area_weights
from sciflow.data.era5.layout import ERA5FormatError


def normalization_stats(ds: xr.Dataset) -> xr.Dataset:
    """Store area-weighted mean and standard deviation of every variable in its attrs.

    Statistics are over ``time, [member,] lat, lon`` (per pressure level when present) and are
    written as ``attrs["norm_mean"]``/``attrs["norm_std"]`` (one value per level, in level order),
    so a checkpoint plus its dataset reproduce the preprocessing. Returns a new dataset.
    """
    w = area_weights(ds["lat"])
    out = ds.copy()
    for var in ds.data_vars:
        da = ds[var]
        dims = [d for d in da.dims if d != "level"]
        mean = da.weighted(w).mean(dims) if "lat" in da.dims else da.mean(dims)
        var_ = ((da - mean) ** 2).weighted(w).mean(dims) if "lat" in da.dims else ((da - mean) ** 2).mean(dims)
        m, s = (np.atleast_1d(np.asarray(mean.values, dtype=np.float64)),
                np.atleast_1d(np.sqrt(np.asarray(var_.values, dtype=np.float64))))
        if (s == 0).any():
            raise ERA5FormatError(
                f"{ds.attrs.get('source', '<dataset>')}: variable {var!r} is constant; cannot normalise")
        out[var].attrs.update(norm_mean=m, norm_std=s)
    out.attrs["normalization"] = "area-weighted mean/std over time, member, lat, lon (per level)"
    return out


def _stats(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    if "norm_mean" not in da.attrs:
        raise ValueError(f"variable {da.name!r} has no norm_mean/norm_std attrs: call normalization_stats first")
    m, s = np.atleast_1d(da.attrs["norm_mean"]), np.atleast_1d(da.attrs["norm_std"])
    if "level" in da.dims:
        return xr.DataArray(m, dims="level"), xr.DataArray(s, dims="level")
    return xr.DataArray(m[0]), xr.DataArray(s[0])


def normalize(ds: xr.Dataset) -> xr.Dataset:
    """``(x − mean) / std`` per variable (and level) from the attrs of :func:`normalization_stats`."""
    out = ds.copy()
    for var in ds.data_vars:
        m, s = _stats(ds[var])
        out[var] = ((ds[var] - m) / s).assign_attrs(ds[var].attrs)
    return out


def denormalize(ds: xr.Dataset) -> xr.Dataset:
    """Inverse of :func:`normalize`."""
    out = ds.copy()
    for var in ds.data_vars:
        m, s = _stats(ds[var])
        out[var] = (ds[var] * s + m).assign_attrs(ds[var].attrs)
    return out


