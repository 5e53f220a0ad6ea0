"""WeatherBench baselines (persistence, climatology) and metrics (latitude-weighted RMSE, ACC).

Rasp et al. (2020), "WeatherBench: a benchmark data set for data-driven weather forecasting",
JAMES 12, e2020MS002203:

* eq. (1): ``RMSE = 1/N_f Σ_i sqrt( 1/(N_lat N_lon) Σ_j Σ_k L(j) (f_ijk − t_ijk)² )`` with
  ``L(j) = cos φ_j / (1/N_lat Σ_j cos φ_j)`` — the root is taken per forecast, then averaged over
  forecasts (WeatherBench 2 instead takes the root of the time-mean MSE; use
  :func:`lat_weighted_mse` and take the root yourself for that convention);
* eq. (2): ``ACC = 1/N_f Σ_i Σ_jk L(j) f'_ijk t'_ijk / sqrt(Σ_jk L(j) f'² Σ_jk L(j) t'²)`` with
  anomalies ``f' = f − C``, ``t' = t − C`` relative to the climatology ``C``.

Inputs are xarray objects in the :func:`sciflow.data.era5.open_era5` layout (dims ``time, lat, lon``
plus optional ``level``/``member``). Metrics keep every dim that is not reduced (e.g. ``level``) and
return one value per variable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from torch import Tensor

from sciflow.data.era5 import area_weights
from sciflow.data.latitude import latitude_weights

_XR = xr.Dataset | xr.DataArray


def _check_aligned(forecast: _XR, truth: _XR) -> None:
    for dim in ("lat", "lon"):
        if dim not in forecast.dims or dim not in truth.dims:
            raise ValueError(f"forecast and truth need a {dim!r} dim "
                             f"(forecast {dict(forecast.sizes)}, truth {dict(truth.sizes)})")
        if forecast.sizes[dim] != truth.sizes[dim] or not np.allclose(forecast[dim].values, truth[dim].values):
            raise ValueError(f"forecast and truth are on different {dim} grids")


def persistence(truth: _XR, lead: int) -> _XR:
    """Persistence forecast ``f(t) = truth(t − lead)`` for valid times ``t = time[lead:]``.

    ``lead`` is in time steps of ``truth``; the result carries the valid times so it aligns with
    ``truth.isel(time=slice(lead, None))``.
    """
    lead = int(lead)
    if lead < 1 or lead >= truth.sizes["time"]:
        raise ValueError(f"persistence: lead must be in [1, {truth.sizes['time'] - 1}] steps, got {lead}")
    return truth.isel(time=slice(0, -lead)).assign_coords(time=truth["time"].values[lead:])


def climatology(train: _XR, by: str | None = None) -> _XR:
    """Climatology from a training period: the time mean (``by=None``, WeatherBench's
    "climatology" baseline) or the mean per ``time.<by>`` group (``"dayofyear"``, ``"hour"``,
    ``"month"``, ``"weekofyear"`` via isocalendar week), as in WeatherBench's weekly climatology."""
    if by is None:
        return train.mean("time")
    if by == "weekofyear":
        key = train["time"].dt.isocalendar().week.rename("weekofyear")
        return train.groupby(key).mean("time")
    return train.groupby(f"time.{by}").mean("time")


def climatology_forecast(clim: _XR, times: Sequence | np.ndarray | xr.DataArray, by: str | None = None) -> _XR:
    """The climatology evaluated at ``times`` (dims ``time, ...``), for use as a forecast or as ``C``."""
    times = xr.DataArray(np.asarray(times, dtype="datetime64[ns]"), dims="time", name="time")
    if by is None:
        return clim.expand_dims(time=times.values)
    key = times.dt.isocalendar().week if by == "weekofyear" else getattr(times.dt, by)
    group = by
    missing = np.setdiff1d(np.unique(key.values), clim[group].values)
    if missing.size:
        raise ValueError(f"climatology has no entry for {by} {missing[:5].tolist()}")
    return clim.sel({group: key.values}).rename({group: "time"}).assign_coords(time=times.values)


def _weights_like(x: _XR) -> xr.DataArray:
    # Rasp et al.'s L(j): mean one over latitude
    return area_weights(x["lat"]) * x.sizes["lat"]


def lat_weighted_mse(forecast: _XR, truth: _XR) -> _XR:
    """Latitude-weighted MSE per forecast time: ``1/(N_lat N_lon) Σ_jk L(j)(f − t)²`` (dims kept: time, ...)."""
    _check_aligned(forecast, truth)
    err2 = (forecast - truth) ** 2
    return (err2 * _weights_like(truth)).mean(("lat", "lon"))


def lat_weighted_rmse(forecast: _XR, truth: _XR) -> _XR:
    """WeatherBench RMSE (Rasp et al. 2020, eq. 1): per-time weighted RMSE averaged over ``time``."""
    rmse_t = np.sqrt(lat_weighted_mse(forecast, truth))
    return rmse_t.mean("time") if "time" in rmse_t.dims else rmse_t


def lat_weighted_acc(forecast: _XR, truth: _XR, clim: _XR) -> _XR:
    """WeatherBench anomaly correlation coefficient (Rasp et al. 2020, eq. 2), averaged over ``time``.

    ``clim`` must broadcast against ``truth`` (a time-mean field, or :func:`climatology_forecast`).
    """
    _check_aligned(forecast, truth)
    L = _weights_like(truth)
    fa, ta = forecast - clim, truth - clim
    num = (L * fa * ta).sum(("lat", "lon"))
    den = np.sqrt((L * fa**2).sum(("lat", "lon")) * (L * ta**2).sum(("lat", "lon")))
    acc_t = num / den
    return acc_t.mean("time") if "time" in acc_t.dims else acc_t


def lat_weighted_rmse_tensor(forecast: Tensor, truth: Tensor, lat: Tensor) -> Tensor:
    """Per-field latitude-weighted RMSE on tensors, for training and evaluation loops.

    ``forecast``, ``truth``: ``(..., lat, lon)``; ``lat``: ``(lat,)`` in degrees. Returns ``(...)``:
    ``sqrt(1/(N_lat N_lon) Σ_jk L(j) (f − t)²)`` — the summand of Rasp et al. (2020) eq. 1; average
    the result over forecasts (and take it per channel) to get the WeatherBench score.
    """
    if forecast.shape != truth.shape:
        raise ValueError(f"forecast shape {tuple(forecast.shape)} != truth shape {tuple(truth.shape)}")
    if forecast.ndim < 2 or lat.ndim != 1 or lat.shape[0] != forecast.shape[-2]:
        raise ValueError("need (..., lat, lon) fields and lat of length "
                         f"{forecast.shape[-2] if forecast.ndim > 1 else '?'}, "
                         f"got {tuple(forecast.shape)} and lat {tuple(lat.shape)}")
    w = latitude_weights(lat.to(forecast))
    return ((forecast - truth) ** 2 * w[:, None]).mean(dim=(-2, -1)).sqrt()
