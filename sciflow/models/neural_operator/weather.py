r"""ERA5 / WeatherBench-2 trajectory forecasting: data splits, baselines and scores shared by the
operator and wavelet-diffusion models.

A sample is a window of ``window`` consecutive time steps of every channel on the lat–lon grid;
the first ``history`` steps are the condition and the remaining ``window - history`` are forecast
(WDNO's ERA5 experiment: 24 hourly steps). Splitting is **by time before windowing**: training
windows lie entirely before ``test_start`` and test windows entirely at or after it, so no test
time step is ever seen in training (:func:`sciflow.data.era5.forecast_windows` is applied to each
period separately).

Baselines (Rasp et al. 2020, WeatherBench, Sec. 4): persistence (the last observed state for every
lead) and climatology from the training period, either the time mean (WeatherBench's
"climatology") or the mean per hour of day (a diurnal climatology, the stronger baseline for 2 m
temperature on short training periods).

Scores: latitude-weighted RMSE (Rasp et al. 2020, eq. 1: the root per forecast, then the mean over
forecasts; reported per lead time and channel) and the latitude-weighted ensemble CRPS
(Gneiting & Raftery 2007, eq. 21; a deterministic forecast is a one-member ensemble, whose CRPS is
the MAE).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sciflow.data.batches import TrajectoryBatch
from sciflow.data.era5 import forecast_windows, open_era5, windows_to_batch
from sciflow.data.weatherbench import climatology, climatology_forecast, lat_weighted_rmse_tensor
from sciflow.uq.scores import crps_ensemble, latitude_weights

__all__ = ["ForecastData", "era5_forecast_data", "persistence_forecast", "channel_climatologies",
           "climatology_trajectory", "departures",
           "lat_weighted_rmse_per_lead", "lat_weighted_crps"]


@dataclass(frozen=True)
class ForecastData:
    """Train/test windows of an ERA5 source.

    ``train``/``test``: :class:`TrajectoryBatch` with ``values (batch, window, channel, lat, lon)``
    in physical units and ``times`` the hour offsets from the last history step;
    ``train_init``/``test_init``: ``(batch,)`` ``datetime64`` of each window's last history step;
    ``val``/``val_init``: validation windows in ``[val_start, test_start)`` (``None`` without
    ``val_start``); ``train_period``: the training-period dataset (for climatologies); ``channels``: channel names
    (``"2m_temperature"``, ``"geopotential@500"``); ``lat``/``lon``: degrees; ``history``: steps given.
    """

    train: TrajectoryBatch
    test: TrajectoryBatch
    train_init: np.ndarray
    test_init: np.ndarray
    train_period: xr.Dataset
    channels: list[str]
    lat: Tensor
    lon: Tensor
    history: int
    time_step_hours: float
    val: TrajectoryBatch | None = None
    val_init: np.ndarray | None = None

    @property
    def window(self) -> int:
        return int(self.train.values.shape[1])

    def valid_times(self, init: np.ndarray) -> np.ndarray:
        """``(batch, window)`` valid times of windows with last history step ``init``."""
        offsets = (np.arange(self.window) - (self.history - 1)) * self.time_step_hours
        return init[:, None] + (offsets * 3600).astype("timedelta64[s]")[None, :]


def _select_channels(batch: TrajectoryBatch, names: list[str],
                     wanted: Sequence[str] | None) -> tuple[TrajectoryBatch, list[str]]:
    if wanted is None:
        return batch, names
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"channel(s) {missing} not in the data; available: {names}")
    idx = [names.index(w) for w in wanted]
    return TrajectoryBatch(values=batch.values[:, :, idx], times=batch.times), list(wanted)


def era5_forecast_data(source: str | os.PathLike | Any, channels: Sequence[str], *, test_start: Any,
                       window: int = 24, history: int = 6, train_stride: int = 1, test_stride: int | None = None,
                       region: Any = None, time: Any = None, coarsen: int = 1, val_start: Any = None,
                       dtype: torch.dtype = torch.float32) -> ForecastData:
    """Open an ERA5 source (GRIB / NetCDF / WeatherBench-2 zarr, via :func:`open_era5`) and cut it
    into train windows before ``test_start`` and test windows from ``test_start`` on; with
    ``val_start``, training ends there and validation windows fill ``[val_start, test_start)``.

    ``channels``: variable names, with ``@level`` for pressure-level variables
    (``["2m_temperature"]``, ``["geopotential@500", "temperature@850"]``). ``test_stride``
    defaults to ``window`` (non-overlapping test windows). ``coarsen`` > 1 block-averages the grid
    (area-weighted, :func:`sciflow.data.era5.coarsen`).
    """
    if not 1 <= history < window:
        raise ValueError(f"need 1 <= history < window, got history={history}, window={window}")
    names = [c.split("@")[0] for c in channels]
    levels = sorted({float(c.split("@")[1]) for c in channels if "@" in c}) or None
    ds = open_era5(source, variables=sorted(set(names)), levels=levels, region=region, time=time)
    if coarsen > 1:
        from sciflow.data.era5 import coarsen as _coarsen

        ds = _coarsen(ds, coarsen)
    t0 = np.datetime64(test_start, "ns")
    v0 = t0 if val_start is None else np.datetime64(val_start, "ns")
    if v0 > t0:
        raise ValueError(f"val_start {v0} is after test_start {t0}")
    t = ds["time"].values
    periods = {"train": ds.isel(time=np.nonzero(t < v0)[0]), "test": ds.isel(time=np.nonzero(t >= t0)[0])}
    strides = {"train": train_stride, "test": test_stride or window}
    if val_start is not None:
        periods["val"], strides["val"] = ds.isel(time=np.nonzero((t >= v0) & (t < t0))[0]), test_stride or window
    for nm, part in periods.items():
        if part.sizes["time"] < window:
            raise ValueError(f"the {nm} period has {part.sizes['time']} time steps, fewer than one window of {window} "
                             f"(data covers {t[0]} … {t[-1]}, test_start {t0}"
                             + (f", val_start {v0})" if val_start is not None else ")"))
    leads = np.arange(1, window - history + 1)
    out = {}
    for nm, part in periods.items():
        w = forecast_windows(part.load(), history, leads, stride=strides[nm])
        batch, chans = windows_to_batch(w, dtype=dtype)
        batch, chans = _select_channels(batch, chans, None if chans == list(channels) else list(channels))
        out[nm] = (batch, w["init_time"].values, chans)
    step = float((t[1] - t[0]) / np.timedelta64(1, "h"))
    val = out.get("val", (None, None, None))
    return ForecastData(train=out["train"][0], test=out["test"][0], train_init=out["train"][1],
                        test_init=out["test"][1], train_period=periods["train"], channels=out["train"][2],
                        lat=torch.as_tensor(np.array(ds["lat"].values), dtype=dtype),
                        lon=torch.as_tensor(np.array(ds["lon"].values), dtype=dtype), history=history,
                        time_step_hours=step, val=val[0], val_init=val[1])


# ----------------------------------------------------------------------------- baselines


def persistence_forecast(batch: TrajectoryBatch, history: int) -> Tensor:
    """Persistence: every forecast step equals the last history state. Returns the whole
    trajectory ``batch.values.shape`` (history copied)."""
    v = batch.values
    if not 1 <= history < v.shape[1]:
        raise ValueError(f"history {history} must be in [1, {v.shape[1] - 1}]")
    last = v[:, history - 1:history].expand(-1, v.shape[1] - history, *v.shape[2:])
    return torch.cat([v[:, :history], last], dim=1)


def channel_climatologies(data: ForecastData, by: str | None = "hour") -> list[xr.DataArray]:
    """The training period's climatology of every channel, computed once and held in memory
    (lazy zarr sources are read here, not again at every use). ``by``: as in
    :func:`climatology_trajectory`."""
    out = []
    for name in data.channels:
        var, _, level = name.partition("@")
        da = data.train_period[var]
        if level:
            da = da.sel(level=float(level))
        out.append(climatology(da, by=by).load())
    return out


def climatology_trajectory(data: ForecastData, init: np.ndarray, by: str | None = "hour",
                           like: TrajectoryBatch | None = None,
                           clims: Sequence[xr.DataArray] | None = None) -> Tensor:
    """Climatology of the training period at the valid times of windows with last history step
    ``init``: ``(batch, window, channel, lat, lon)``, history steps copied from ``like`` if given.

    ``by=None``: the training-period mean (WeatherBench's climatology); ``"hour"``: the mean per
    hour of day (diurnal cycle). ``clims``: :func:`channel_climatologies` of the same ``by``, to
    reuse (computed here otherwise).
    """
    valid = data.valid_times(init)
    fields = []
    for clim in channel_climatologies(data, by) if clims is None else clims:
        fc = climatology_forecast(clim, valid.reshape(-1), by=by)  # (batch*window, lat, lon)
        fields.append(np.asarray(fc.transpose("time", "lat", "lon").values).reshape(*valid.shape, *fc.shape[-2:]))
    out = torch.as_tensor(np.stack(fields, axis=2), dtype=data.train.values.dtype)
    if like is not None:
        out = torch.cat([like.values[:, :data.history], out[:, data.history:]], dim=1)
    return out


def departures(data: ForecastData, batch: TrajectoryBatch, init: np.ndarray,
               clims: Sequence[xr.DataArray] | None = None) -> TrajectoryBatch:
    """``batch`` (windows with last history step ``init``) minus the training period's hour-of-day
    climatology at every step, history included: the anomalies a model learns when the diurnal
    cycle is given. ``clims``: ``channel_climatologies(data, "hour")`` to reuse."""
    clim = climatology_trajectory(data, init, by="hour", clims=clims)
    return TrajectoryBatch(values=batch.values - clim, times=batch.times)


# ----------------------------------------------------------------------------- scores


def lat_weighted_rmse_per_lead(forecast: Tensor, truth: Tensor, lat: Tensor) -> Tensor:
    """WeatherBench RMSE (Rasp et al. 2020, eq. 1) per lead time and channel.

    ``forecast``, ``truth``: ``(batch, time, channel, lat, lon)``. Returns ``(time, channel)``: the
    latitude-weighted RMSE of each field, averaged over the batch of forecasts.
    """
    if forecast.ndim != 5:
        raise ValueError(f"forecast must be (batch, time, channel, lat, lon), got {tuple(forecast.shape)}")
    return lat_weighted_rmse_tensor(forecast, truth, lat).mean(0)


def lat_weighted_crps(samples: Tensor, truth: Tensor, lat: Tensor, *, fair: bool = False) -> Tensor:
    """Latitude-weighted ensemble CRPS per lead time and channel: ``samples (n_samples, batch, time,
    channel, lat, lon)``, ``truth (batch, time, channel, lat, lon)`` -> ``(time, channel)``."""
    if samples.ndim != 6 or samples.shape[1:] != truth.shape:
        raise ValueError(f"samples must be (n_samples, *truth.shape) with truth (batch, time, channel, lat, lon); "
                         f"got {tuple(samples.shape)} and {tuple(truth.shape)}")
    w = latitude_weights(lat.to(truth.dtype)).reshape(-1, 1)
    return crps_ensemble(samples, truth, fair=fair, weights=w, dim=(0, 3, 4))
