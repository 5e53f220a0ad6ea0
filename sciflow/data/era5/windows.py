"""Splits by time and forecast windows of canonical ERA5 datasets, and their conversion to batches."""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import xarray as xr

from sciflow.data.batches import TrajectoryBatch
from sciflow.data.era5.layout import _LICENCE, ERA5FormatError, _version


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
        raise ValueError(
            f"forecast_windows: need history >= 1, leads >= 1, stride >= 1; got {history}, {leads}, {stride}")
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
            raise ERA5FormatError(
                f"{name}: time axis is not regular (steps {np.unique(d)[:3]}); windows need a fixed step")
    offsets = np.concatenate([np.arange(-history + 1, 1), leads])
    first, last = history - 1, t.size - 1 - int(leads[-1])
    if last < first:
        raise ValueError(
            f"forecast_windows: {t.size} time steps are too few for history {history} + lead {int(leads[-1])}")
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
