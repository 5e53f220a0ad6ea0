"""ERA5 reanalysis: one loader for WeatherBench-2 zarr stores, CDS NetCDF and GRIB, plus the
preprocessing a forecasting model needs (regridding, area weights, normalisation, time windows,
splits by time).

:func:`open_era5` returns a dataset in one canonical layout whatever the source:

* data variables carry the WeatherBench-2 long names (``geopotential``, ``temperature``,
  ``2m_temperature``, ...); ERA5/GRIB short names (``z``, ``t``, ``t2m``/``2t``, ...) are accepted
  everywhere a name is asked for (:data:`VARIABLES`);
* dims are ``time, [member,] lat, lon[, level]`` (``level`` in hPa, ``member`` for ensembles such as
  the ERA5 EDA), latitude ascending, ``time`` strictly increasing;
* longitudes keep the source convention unless ``longitude_start`` asks for ``[start, start + 360)``
  (``-180`` or ``0``).

Zarr stores open lazily with dask; NetCDF-3 (scipy), NetCDF-4/HDF5 (h5netcdf) and GRIB (cfgrib)
are recognised from the file's first bytes, not its suffix. Bad input raises
:class:`ERA5FormatError` (a ``ValueError``) naming the file and the problem: truncated or corrupt
file, missing variable or level, unexpected dims, non-monotonic or duplicated time, NaNs.

Latitude weighting follows WeatherBench (Rasp et al. 2020, eq. 1): ``L(j) = cos φ_j / Σ cos φ``
(here normalised to sum to one over latitude; Rasp et al. normalise to mean one, the same weighting).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import xarray as xr

from sciflow.data.batches import TrajectoryBatch

# canonical (WeatherBench 2 / CDS long) name -> accepted short names (ERA5 GRIB / CDS NetCDF)
VARIABLES: dict[str, tuple[str, ...]] = {
    "geopotential": ("z",),
    "temperature": ("t",),
    "u_component_of_wind": ("u",),
    "v_component_of_wind": ("v",),
    "vertical_velocity": ("w",),
    "specific_humidity": ("q",),
    "relative_humidity": ("r",),
    "2m_temperature": ("t2m", "2t"),
    "2m_dewpoint_temperature": ("d2m", "2d"),
    "10m_u_component_of_wind": ("u10", "10u"),
    "10m_v_component_of_wind": ("v10", "10v"),
    "mean_sea_level_pressure": ("msl",),
    "surface_pressure": ("sp",),
    "total_precipitation": ("tp",),
    "total_cloud_cover": ("tcc",),
    "sea_surface_temperature": ("sst",),
    "toa_incident_solar_radiation": ("tisr",),
    "land_sea_mask": ("lsm",),
    "geopotential_at_surface": ("z_sfc", "orography"),
}
_ALIASES: dict[str, str] = {}
for _long, _shorts in VARIABLES.items():
    _ALIASES[_long] = _long
    for _s in _shorts:
        _ALIASES[_s] = _long

# source dim/coord names -> canonical
_DIM_ALIASES: dict[str, str] = {
    "latitude": "lat", "lat": "lat",
    "longitude": "lon", "lon": "lon",
    "level": "level", "isobaricInhPa": "level", "pressure_level": "level", "plev": "level",
    "number": "member", "member": "member", "realization": "member", "ensemble_member": "member",
    "time": "time", "valid_time": "time",
}
#: bundled sample files (ERA5 t/z at 500/850 hPa, 2007-01-01 12Z, 1°; see LICENSE.md there)
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "era5"

_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb2")


_LICENCE = ("ERA5: Contains modified Copernicus Climate Change Service information "
            "(C3S ERA5 licence; attribution required)")


def _version() -> str:
    import sciflow

    return sciflow.__version__


class ERA5FormatError(ValueError):
    """An ERA5 source that cannot be used as asked; the message names the file and the problem."""


def canonical_name(name: str) -> str:
    """WeatherBench-2 long name for a short or long ERA5 variable name (``"t2m"`` → ``"2m_temperature"``).

    Unknown names are returned unchanged (user variables pass through).
    """
    return _ALIASES.get(name, _ALIASES.get(name.lower(), name))


@dataclass(frozen=True)
class Region:
    """A latitude–longitude box in degrees; inclusive bounds.

    ``lon_min > lon_max`` means the box crosses the longitude seam (e.g. ``lon_min=350, lon_max=10``
    or ``lon_min=170, lon_max=-170``). Longitudes may be given in either convention.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        if not -90 <= self.lat_min <= self.lat_max <= 90:
            raise ValueError(f"Region: need -90 <= lat_min <= lat_max <= 90, got {self.lat_min}, {self.lat_max}")


# ----------------------------------------------------------------------------- format detection


def _sniff(path: Path) -> str:
    """'zarr' | 'grib' | 'netcdf3' | 'hdf5' from the file's content."""
    if path.is_dir():
        if any((path / m).exists() for m in (".zgroup", "zarr.json", ".zmetadata", ".zattrs")):
            return "zarr"
        raise ERA5FormatError(f"{path}: a directory but not a zarr store (no .zgroup / zarr.json)")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"GRIB"):
        return "grib"
    if head.startswith(b"CDF\x01") or head.startswith(b"CDF\x02") or head.startswith(b"CDF\x05"):
        return "netcdf3"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if path.suffix.lower() in _GRIB_SUFFIXES:
        with path.open("rb") as fh:
            if b"GRIB" in fh.read(4096):
                return "grib"  # GRIB after a leading header/padding
    if len(head) == 0:
        raise ERA5FormatError(f"{path}: empty file")
    raise ERA5FormatError(f"{path}: not GRIB, NetCDF or zarr (first bytes {head!r}); corrupt or unsupported file")


def _find(fh, token: bytes, offset: int, size: int, block: int = 1 << 16) -> int:
    """Byte offset of the next ``token`` at or after ``offset`` (-1 if none), reading in blocks."""
    while offset < size:
        fh.seek(offset)
        chunk = fh.read(block)
        k = chunk.find(token)
        if k >= 0:
            return offset + k
        if len(chunk) < block:
            return -1
        offset += block - len(token) + 1
    return -1


def _check_grib_structure(path: Path) -> None:
    """Walk the GRIB messages' length fields: a truncated file has a message running past its end.

    cfgrib silently skips a truncated last message, which would drop time steps unnoticed. Only
    the 16-byte headers and 4-byte end markers are read, so this is cheap for large files.
    """
    size = path.stat().st_size
    n_msg = 0
    with path.open("rb") as fh:
        offset = 0
        while True:
            start = _find(fh, b"GRIB", offset, size)
            if start < 0:
                break
            fh.seek(start)
            head = fh.read(16)
            if len(head) < 16:
                raise ERA5FormatError(f"{path}: truncated GRIB file (message {n_msg} header cut at byte {start})")
            edition = head[7]
            if edition == 1:
                length = int.from_bytes(head[4:7], "big")
                if length & 0x800000:
                    # GRIB1 large-message encoding: the length field is not the message length;
                    # the structure of the rest cannot be checked from headers alone
                    return
            elif edition == 2:
                length = int.from_bytes(head[8:16], "big")
            else:
                raise ERA5FormatError(f"{path}: corrupt GRIB file (message {n_msg} at byte {start} has edition {edition})")
            end = start + length
            if end > size:
                raise ERA5FormatError(
                    f"{path}: truncated GRIB file (message {n_msg} needs {length} bytes from byte {start}, "
                    f"file has {size})")
            fh.seek(end - 4)
            if fh.read(4) != b"7777":
                raise ERA5FormatError(f"{path}: corrupt GRIB file (message {n_msg} does not end with '7777')")
            offset, n_msg = end, n_msg + 1
    if n_msg == 0:
        raise ERA5FormatError(f"{path}: no GRIB messages found")


def _open_raw(source: Any, chunks: Mapping[str, int] | None) -> tuple[xr.Dataset, str]:
    """Open any supported source; returns the dataset and a name for messages."""
    if isinstance(source, xr.Dataset):
        return source, str(source.encoding.get("source", "<dataset>"))
    if not isinstance(source, (str, os.PathLike)):
        # a zarr store object (MutableMapping / zarr.storage.*)
        try:
            return xr.open_zarr(source, chunks=chunks if chunks is not None else {}), repr(source)
        except Exception as e:  # noqa: BLE001 - re-raised with the source named
            raise ERA5FormatError(f"{source!r}: cannot be opened as a zarr store: {e}") from e
    if isinstance(source, str) and "://" in source:
        # remote zarr (e.g. gs://weatherbench2/...; needs fsspec + gcsfs/s3fs installed)
        try:
            return xr.open_zarr(source, chunks=chunks if chunks is not None else {}), source
        except Exception as e:  # noqa: BLE001 - re-raised with the source named
            raise ERA5FormatError(f"{source}: cannot be opened as a remote zarr store: {e}") from e
    path = Path(source)
    kind = _sniff(path)
    try:
        if kind == "zarr":
            ds = xr.open_zarr(path, chunks=chunks if chunks is not None else {})
        elif kind == "grib":
            _check_grib_structure(path)
            # indexpath="" keeps cfgrib from writing .idx files beside (possibly read-only) data
            ds = xr.open_dataset(path, engine="cfgrib", chunks=chunks,
                                 backend_kwargs={"indexpath": "", "errors": "raise"})
        elif kind == "netcdf3":
            ds = xr.open_dataset(path, engine="scipy", chunks=chunks)
        else:
            ds = xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
    except ERA5FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ERA5FormatError(f"{path}: cannot read {kind} file (truncated or corrupt?): {e}") from e
    return ds, str(path)


# ----------------------------------------------------------------------------- canonical layout


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


# ----------------------------------------------------------------------------- grid operations


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


# ----------------------------------------------------------------------------- normalisation


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
        m, s = np.atleast_1d(np.asarray(mean.values, dtype=np.float64)), np.atleast_1d(np.sqrt(np.asarray(var_.values, dtype=np.float64)))
        if (s == 0).any():
            raise ERA5FormatError(f"{ds.attrs.get('source', '<dataset>')}: variable {var!r} is constant; cannot normalise")
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


# ----------------------------------------------------------------------------- samples and splits


class Splits(NamedTuple):
    train: xr.Dataset
    val: xr.Dataset
    test: xr.Dataset


def split_by_time(ds: xr.Dataset, *, val_start: Any, test_start: Any, test_end: Any | None = None) -> Splits:
    """Disjoint train / val / test periods: ``[…, val_start)``, ``[val_start, test_start)``,
    ``[test_start, test_end]`` (WeatherBench: train ≤ 2015, val 2016, test 2017–2018).

    Make forecast windows *after* splitting so no window straddles two periods.
    """
    t = ds["time"].values
    v0, t0 = np.datetime64(val_start, "ns"), np.datetime64(test_start, "ns")
    if not v0 < t0:
        raise ValueError(f"split_by_time: val_start {v0} must precede test_start {t0}")
    end = np.datetime64(test_end, "ns") if test_end is not None else t[-1]
    parts = Splits(ds.isel(time=np.nonzero(t < v0)[0]), ds.isel(time=np.nonzero((t >= v0) & (t < t0))[0]),
                   ds.isel(time=np.nonzero((t >= t0) & (t <= end))[0]))
    for nm, p in zip(Splits._fields, parts):
        if p.sizes["time"] == 0:
            raise ValueError(f"split_by_time: the {nm} period is empty (data covers {t[0]} … {t[-1]})")
    return parts


def split_levels(ds: xr.Dataset) -> xr.Dataset:
    """One variable per pressure level, ``geopotential`` → ``geopotential_500``, … (level dim removed).

    The schema needs every trajectory variable on the same dims, so datasets that mix surface and
    pressure-level variables are split this way before windowing (WeatherBench's ``z500``-style
    channels). Level values are kept in each variable's ``attrs["level"]``.
    """
    out = {}
    for var in ds.data_vars:
        da = ds[var]
        if "level" in da.dims:
            for i, lv in enumerate(da["level"].values):
                attrs = dict(da.attrs, level=float(lv))
                for key in ("norm_mean", "norm_std"):  # per-level statistics follow their level
                    if key in attrs:
                        attrs[key] = np.atleast_1d(attrs[key])[i:i + 1]
                out[f"{var}_{lv:g}"] = da.sel(level=lv).drop_vars("level").assign_attrs(attrs)
        else:
            out[str(var)] = da
    res = xr.Dataset(out, attrs=dict(ds.attrs))
    return res.drop_dims("level", errors="ignore") if "level" in res.dims else res


def forecast_windows(ds: xr.Dataset, history: int, lead: int | Sequence[int], *, stride: int = 1) -> xr.Dataset:
    """Time-window samples for forecasting: ``history`` input steps then the ``lead`` target step(s).

    For initial index ``i`` (the last history step) the window holds times
    ``i − history + 1, …, i`` followed by ``i + ℓ`` for each lead ``ℓ`` (in time steps). Returns dims
    ``(sample, time, [member,] lat, lon[, level])`` — with ensemble members folded into ``sample`` —
    where ``time`` is the offset from the initial time (``timedelta64``), ``init_time (sample)``
    the initial time and ``attrs["history_steps"]`` the number of input steps. Lazy (dask) inputs stay lazy.
    Requires a regular time axis.
    """
    history = int(history)
    leads = np.atleast_1d(np.asarray(lead, dtype=np.int64))
    if history < 1 or (leads < 1).any() or stride < 1:
        raise ValueError(f"forecast_windows: need history >= 1, leads >= 1, stride >= 1; got {history}, {leads}, {stride}")
    if (np.diff(leads) <= 0).any():
        raise ValueError(f"forecast_windows: leads must be strictly increasing, got {leads.tolist()}")
    t = ds["time"].values
    name = ds.attrs.get("source", "<dataset>")
    with_level = [v for v in ds.data_vars if "level" in ds[v].dims]
    if with_level and len(with_level) < len(ds.data_vars):
        ds = split_levels(ds)
    if t.size > 2:
        d = np.diff(t)
        if (d != d[0]).any():
            raise ERA5FormatError(f"{name}: time axis is not regular (steps {np.unique(d)[:3]}); windows need a fixed step")
    offsets = np.concatenate([np.arange(-history + 1, 1), leads])
    first, last = history - 1, t.size - 1 - int(leads[-1])
    if last < first:
        raise ValueError(f"forecast_windows: {t.size} time steps are too few for history {history} + lead {int(leads[-1])}")
    init = np.arange(first, last + 1, stride)
    idx = xr.DataArray(init[:, None] + offsets[None, :], dims=("sample", "time"))
    out = ds.isel(time=idx)
    dt = (t[1] - t[0]) if t.size > 1 else np.timedelta64(0, "ns")
    out = out.assign_coords(time=("time", offsets * dt), init_time=("sample", t[init]), sample=np.arange(init.size))
    if "member" in out.dims:
        out = out.stack(_s=("member", "sample")).reset_index("_s")
        out = out.rename({"sample": "sample_in_member"}).rename_dims({"_s": "sample"})
        out = out.assign_coords(sample=np.arange(out.sizes["sample"]))
    order = [d for d in ("sample", "time", "lat", "lon", "level") if d in out.dims]
    out = out.transpose(*order)
    out.attrs.update(history_steps=history, leads=leads, time_step_hours=float(dt / np.timedelta64(1, "h")))
    out.attrs.setdefault("equation", "ERA5 reanalysis (observed atmosphere; no generating equation)")
    out.attrs.setdefault("generator", "sciflow.data.era5.forecast_windows")
    out.attrs.setdefault("version", _version())
    out.attrs.setdefault("seed", -1)
    out.attrs.setdefault("licence", _LICENCE)
    out.attrs["parameters"] = json.dumps({"history": history, "leads": leads.tolist(), "stride": int(stride),
                                          "variables": sorted(map(str, ds.data_vars))})
    return out


def windows_to_batch(windows: xr.Dataset, *, dtype: torch.dtype = torch.float32) -> tuple[TrajectoryBatch, list[str]]:
    """Stack every variable (× level) into a channel axis: ``values (batch, time, channel, lat, lon)``.

    Returns the batch (``times`` are offsets in hours) and the channel names (``"temperature@850"``).
    """
    arrays, names = [], []
    for var in windows.data_vars:
        da = windows[var]
        if "level" in da.dims:
            for lv in da["level"].values:
                arrays.append(da.sel(level=lv).transpose("sample", "time", "lat", "lon").values)
                names.append(f"{var}@{lv:g}")
        else:
            arrays.append(da.transpose("sample", "time", "lat", "lon").values)
            names.append(str(var))
    values = torch.from_numpy(np.stack(arrays, axis=2)).to(dtype)
    hours = windows["time"].values / np.timedelta64(1, "h")
    return TrajectoryBatch(values=values, times=torch.as_tensor(hours, dtype=dtype)), names
