"""Grid operations on canonical ERA5 datasets: latitude (area) weights, conservative coarsening,
regridding."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr


def area_weights(lat: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Latitude weights ``w_j = cos φ_j / Σ_j cos φ_j`` over the ``lat`` axis (sum to one).

    Rasp et al. (2020) eq. 1 uses ``L(j) = cos φ_j / mean_j cos φ_j = N_lat · w_j``.
    """
    lat = xr.DataArray(np.asarray(lat, dtype=np.float64), dims="lat") if not isinstance(lat, xr.DataArray) else lat
    if bool((np.abs(lat) > 90).any()):
        raise ValueError("area_weights: latitudes must lie in [-90, 90] degrees")
    w = np.cos(np.deg2rad(lat.astype(np.float64))).clip(min=0.0)
    return (w / w.sum()).rename("area_weight")


def coarsen(ds: xr.Dataset, factor: int) -> xr.Dataset:
    """Block-average ``factor × factor`` cells with cos-latitude weights (trailing cells trimmed)."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"coarsen: factor must be a positive integer, got {factor}")
    if factor == 1:
        return ds
    w = np.cos(np.deg2rad(ds["lat"].values.astype(np.float64)))
    n_lat = (w.size // factor) * factor
    wda = xr.DataArray(w, dims="lat", coords={"lat": ds["lat"]})
    num = (ds * wda).coarsen(lat=factor, lon=factor, boundary="trim").sum()
    lat_c = ds["lat"].coarsen(lat=factor, boundary="trim").mean().values
    lon_c = ds["lon"].coarsen(lon=factor, boundary="trim").mean().values
    den = xr.DataArray(w[:n_lat].reshape(-1, factor).sum(1) * factor, dims="lat")
    out = (num.assign_coords(lat=lat_c, lon=lon_c) / den.assign_coords(lat=lat_c))
    out.attrs = dict(ds.attrs)
    for v in out.data_vars:
        out[v].attrs = dict(ds[v].attrs)
    return out


def regrid(ds: xr.Dataset, lat: Sequence[float], lon: Sequence[float]) -> xr.Dataset:
    """Bilinear regridding onto ``lat × lon`` (degrees).

    Global grids (longitudes covering 360°) are treated as periodic: target longitudes are taken
    modulo 360 and interpolation wraps across the seam; target latitudes up to one source spacing
    beyond the outermost rows (e.g. the poles of a grid without pole rows) take those rows' values.
    Regional grids raise if a target lies outside them.
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    src_lat = ds["lat"].values.astype(np.float64)
    src_lon = ds["lon"].values.astype(np.float64)
    dlon = float(np.median(np.diff(src_lon))) if src_lon.size > 1 else 360.0
    dlat = float(np.median(np.diff(src_lat))) if src_lat.size > 1 else 180.0
    is_global = abs(src_lon[-1] - src_lon[0] + dlon - 360.0) < 1e-6 * 360.0
    if is_global:
        lo = src_lon[0]
        ds = xr.concat([ds.isel(lon=[-1]).assign_coords(lon=[src_lon[-1] - 360.0]), ds,
                        ds.isel(lon=[0]).assign_coords(lon=[src_lon[0] + 360.0])], dim="lon")
        tgt_lon = ((lon - lo) % 360.0) + lo
    else:
        tgt_lon = lon
        if lon.min() < src_lon[0] or lon.max() > src_lon[-1]:
            raise ValueError(f"regrid: target longitudes [{lon.min()}, {lon.max()}] leave the regional grid "
                             f"[{src_lon[0]}, {src_lon[-1]}]")
    if lat.min() < src_lat[0] - dlat or lat.max() > src_lat[-1] + dlat:
        raise ValueError(f"regrid: target latitudes [{lat.min()}, {lat.max()}] leave the grid "
                         f"[{src_lat[0]}, {src_lat[-1]}] by more than one grid spacing")
    tgt_lat = np.clip(lat, src_lat[0], src_lat[-1])
    out = ds.interp(lat=tgt_lat, lon=tgt_lon).assign_coords(lat=lat, lon=lon)
    out.attrs = dict(ds.attrs)
    return out


