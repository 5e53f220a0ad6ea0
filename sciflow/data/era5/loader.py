"""``open_era5``: any supported source in the canonical layout (see :mod:`sciflow.data.era5`)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from sciflow.data.era5.formats import _open_raw
from sciflow.data.era5.layout import _DIM_ALIASES, _LICENCE, ERA5FormatError, Region, canonical_name


def _canonicalise(ds: xr.Dataset, name: str) -> xr.Dataset:
    rename: dict[str, str] = {}
    for k in list(ds.dims) + list(ds.coords):
        if k in _DIM_ALIASES and _DIM_ALIASES[k] != k:
            rename[k] = _DIM_ALIASES[k]
    # GRIB: 'time' is the analysis time, 'valid_time' = time + step; keep the analysis time
    if "time" in ds.variables and "valid_time" in rename:
        rename.pop("valid_time")
    ds = ds.rename(rename)
    for var in list(ds.data_vars):
        long = canonical_name(var)
        if long != var:
            if long in ds.variables:
                raise ERA5FormatError(f"{name}: both {var!r} and {long!r} present (ambiguous variable)")
            ds = ds.rename({var: long})
            ds[long].attrs.setdefault("short_name", var)
    for dim in ("lat", "lon"):
        if dim not in ds.dims:
            raise ERA5FormatError(f"{name}: no {dim} dimension (dims {dict(ds.sizes)}); need a regular lat-lon grid")
    ds = ds.assign_coords(lat=ds["lat"].astype(np.float64), lon=ds["lon"].astype(np.float64))
    if "step" in ds.dims and ds.sizes["step"] == 1:
        ds = ds.isel(step=0)
    elif "step" in ds.dims:
        ds = _flatten_steps(ds, name)
    if "time" not in ds.dims:
        if "time" not in ds.coords:
            raise ERA5FormatError(f"{name}: no time coordinate")
        ds = ds.expand_dims("time")
    # scalar leftovers of GRIB (surface, step, valid_time...) are not needed downstream
    drop = [c for c in ds.coords if c not in ds.dims and c not in ("time",)]
    ds = ds.drop_vars(drop)
    if "level" in ds.dims:  # hPa, ascending (WeatherBench 2 order; GRIB lists 850 before 500)
        ds = ds.assign_coords(level=ds["level"].astype(np.float64)).sortby("level")
        ds["level"].attrs.update(units="hPa", long_name="pressure level")
    return ds


def _flatten_steps(ds: xr.Dataset, name: str) -> xr.Dataset:
    """ERA5 accumulations in GRIB (e.g. ``tp``) come as base ``time`` × forecast ``step``; lay them
    out on one axis of valid times ``time + step``."""
    if "time" not in ds.dims:
        if "time" not in ds.coords:
            raise ERA5FormatError(f"{name}: forecast 'step' dimension without a base time")
        ds = ds.expand_dims("time")
    valid = (ds["time"] + ds["step"]).transpose("time", "step").values.reshape(-1)
    ds = ds.drop_vars([c for c in ("valid_time",) if c in ds.variables])
    flat = ds.stack(_t=("time", "step")).drop_vars(["_t", "time", "step"])
    flat = flat.assign_coords(time=("_t", valid)).swap_dims({"_t": "time"})
    return flat.transpose("time", ...)


def _check_time(ds: xr.Dataset, name: str) -> None:
    t = ds["time"].values
    if t.size > 1:
        d = np.diff(t)
        if (d == np.zeros_like(d)).any():
            raise ERA5FormatError(f"{name}: duplicated time stamps")
        if (d < np.zeros_like(d)).any():
            i = int(np.argmax(d < np.zeros_like(d)))
            raise ERA5FormatError(f"{name}: time is not monotonic increasing (at index {i + 1}: {t[i]} -> {t[i + 1]})")


def to_longitude_range(ds: xr.Dataset, start: float = -180.0) -> xr.Dataset:
    """Express longitudes in ``[start, start + 360)`` and sort them (``start`` = -180 or 0 usually)."""
    lon = ds["lon"]
    new = ((lon - start) % 360.0) + start
    return ds.assign_coords(lon=new).sortby("lon")


def _select_region(ds: xr.Dataset, region: Region, name: str) -> xr.Dataset:
    """Select a box; the result's longitudes increase contiguously from the box's western edge."""
    ds = ds.sel(lat=slice(region.lat_min, region.lat_max))
    if region.lon_max - region.lon_min < 360:
        lon = ds["lon"].values % 360.0
        a, b = region.lon_min % 360.0, region.lon_max % 360.0
        keep = ((lon >= a) & (lon <= b)) if a <= b else ((lon >= a) | (lon <= b))
        ds = ds.isel(lon=np.nonzero(keep)[0])
        if ds.sizes["lon"]:
            ds = to_longitude_range(ds, a if a <= b else a - 360.0)
    if ds.sizes["lat"] == 0 or ds.sizes["lon"] == 0:
        raise ERA5FormatError(f"{name}: region {region} selects no grid points")
    return ds


def _select_time(ds: xr.Dataset, time: Any, name: str) -> xr.Dataset:
    if isinstance(time, slice):
        out = ds.sel(time=time)
    elif isinstance(time, tuple) and len(time) == 2:
        out = ds.sel(time=slice(*time))
    else:
        wanted = np.asarray(time, dtype="datetime64[ns]").reshape(-1)
        missing = np.setdiff1d(wanted, ds["time"].values)
        if missing.size:
            raise ERA5FormatError(f"{name}: time(s) {missing[:3]} not in the file")
        out = ds.sel(time=wanted)
    if out.sizes["time"] == 0:
        t = ds["time"].values
        raise ERA5FormatError(f"{name}: time selection {time!r} is empty (file covers {t[0]} … {t[-1]})")
    return out


def _open_many(sources: Sequence[Any], chunks: Mapping[str, int] | None) -> tuple[xr.Dataset, str]:
    """Several files (e.g. one CDS download per month or per variable) combined by coordinates."""
    if not sources:
        raise ValueError("open_era5: empty list of sources")
    parts, names = [], []
    for src in sources:
        raw, nm = _open_raw(src, chunks)
        part = _canonicalise(raw, nm)
        _check_time(part, nm)
        parts.append(part)
        names.append(nm)
    starts = [p["time"].values[0] for p in parts]
    order = np.argsort(np.asarray(starts), kind="stable")
    name = f"{names[order[0]]} (+{len(names) - 1} more)" if len(names) > 1 else names[0]
    try:
        # overlapping variables must agree (no_conflicts); holes from the outer join become NaN
        ds = xr.combine_by_coords([parts[i] for i in order], compat="no_conflicts", combine_attrs="drop_conflicts",
                                  data_vars="all", join="outer")
    except ValueError as e:
        raise ERA5FormatError(f"{name}: files do not combine into one grid/time axis: {e}") from e
    # files that do not tile (a gap in a variable) leave NaN holes: check_finite reports them
    return ds, name


def open_era5(
    source: str | os.PathLike | Any,
    variables: Iterable[str] | None = None,
    levels: Sequence[float] | None = None,
    region: Region | None = None,
    time: slice | tuple | Sequence | None = None,
    *,
    longitude_start: float | None = None,
    chunks: Mapping[str, int] | None = None,
    check_finite: bool = True,
) -> xr.Dataset:
    """Open ERA5 data from a WeatherBench-2 zarr store, CDS NetCDF (3 or 4) or GRIB file.

    Args:
        source: path to a file or zarr directory, a zarr URL (``gs://…``, via fsspec), a zarr store
            object, an ``xr.Dataset``, or a list
            of files (combined by their coordinates: consecutive periods and/or other variables).
        variables: short or long names (``"z"`` or ``"geopotential"``); default all.
        levels: pressure levels in hPa to keep (variables without levels are unaffected).
        region: latitude–longitude box; default global.
        time: ``slice``/``(start, end)`` (inclusive) or a list of time stamps.
        longitude_start: re-express longitudes in ``[start, start+360)`` (e.g. -180); default keep.
        chunks: dask chunks; zarr stores are always opened lazily (default ``{}``: the store's chunks).
        check_finite: raise if the selection contains NaN/inf (reads the selected data once).

    Returns:
        ``xr.Dataset`` with long-name variables of dims ``(time, [member,] lat, lon[, level])``,
        latitude ascending; ``attrs["source"]`` names the origin.
    """
    if isinstance(variables, str):
        variables = [variables]
    if levels is not None and np.ndim(levels) == 0:
        levels = [levels]  # type: ignore[list-item]
    if isinstance(source, (list, tuple)):
        ds, name = _open_many(source, chunks)
    else:
        raw, name = _open_raw(source, chunks)
        ds = _canonicalise(raw, name)
    _check_time(ds, name)
    if variables is not None:
        wanted = [canonical_name(v) for v in variables]
        missing = [v for v, w in zip(variables, wanted) if w not in ds.data_vars]
        if missing:
            raise ERA5FormatError(
                f"{name}: missing variable(s) {missing}; the file has {sorted(ds.data_vars)}")
        ds = ds[wanted]
    if levels is not None:
        if "level" not in ds.dims:
            raise ERA5FormatError(f"{name}: levels {list(levels)} requested but the data has no pressure levels")
        lv = np.asarray(levels, dtype=np.float64)
        absent = [float(x) for x in lv if x not in ds["level"].values]
        if absent:
            raise ERA5FormatError(f"{name}: level(s) {absent} hPa not in the file (has {ds['level'].values.tolist()})")
        ds = ds.sel(level=lv)
    ds = ds.sortby("lat")
    if time is not None:
        ds = _select_time(ds, time, name)
    if longitude_start is not None:
        ds = to_longitude_range(ds, longitude_start)
    if region is not None:
        ds = _select_region(ds, region, name)
    order = [d for d in ("time", "member", "lat", "lon", "level")]
    ds = ds.transpose(*[d for d in order if d in ds.dims], ...)
    for var in ds.data_vars:
        extra = set(ds[var].dims) - set(order)
        if extra:
            raise ERA5FormatError(f"{name}: variable {var!r} has unexpected dims {sorted(extra)}")
    if check_finite:
        for var in ds.data_vars:
            bad = ds[var].isnull().any()
            if bool(bad.compute() if hasattr(bad, "compute") else bad):
                raise ERA5FormatError(f"{name}: variable {var!r} contains NaN (missing values or unreadable chunks)")
    ds.attrs["source"] = name
    ds.attrs.setdefault("licence", _LICENCE)
    return ds


