"""Lorenz datasets as batches: :class:`IrregularBatch` (observed values, mask, observation times,
optional held-out targets) and :class:`TrajectoryBatch` (any variable with dims ``(sample, time, ...)``).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sciflow.data.batches import IrregularBatch, TrajectoryBatch


def _obs_times(ds: xr.Dataset) -> Tensor:
    if "obs_time" in ds.coords:
        return torch.tensor(np.asarray(ds["obs_time"].values, dtype=np.float64))
    t = torch.tensor(np.asarray(ds["time"].values, dtype=np.float64))
    return t.expand(ds.sizes["sample"], -1).contiguous()


def to_irregular_batch(ds: xr.Dataset, *, n_target: int = 0, hold_out: str = "last",
                       dtype: torch.dtype = torch.float32) -> IrregularBatch:
    """An :class:`IrregularBatch` from a Lorenz dataset (``observed``, ``mask``, observation times).

    With ``n_target > 0``, ``n_target`` observations of every sample become the targets
    (``targets`` = noiseless ``state``, ``target_times``, ``target_mask`` all True) and the rest the
    inputs: the last ones (``hold_out="last"``, forecasting) or ones spread evenly over the interior
    of the observation window, never the first or last observation (``"interior"``, interpolation).
    """
    for v in ("observed", "mask", "state"):
        if v not in ds:
            raise ValueError(f"to_irregular_batch: dataset has no variable {v!r} (not a sciflow Lorenz dataset)")
    if hold_out not in ("last", "interior"):
        raise ValueError(f"hold_out must be 'last' or 'interior', got {hold_out!r}")
    values = torch.tensor(ds["observed"].transpose("sample", "time", "channel").values, dtype=dtype)
    mask = torch.tensor(np.asarray(ds["mask"].transpose("sample", "time", "channel").values, dtype=bool))
    times = _obs_times(ds).to(dtype)
    if n_target == 0:
        return IrregularBatch(values=values, times=times, mask=mask)
    T = values.shape[1]
    limit = T - 1 if hold_out == "last" else T - 2
    if not 0 < n_target <= limit:
        raise ValueError(f"n_target must be in [1, {limit}] for hold_out={hold_out!r} with {T} observations, "
                         f"got {n_target}")
    state = torch.tensor(ds["state"].transpose("sample", "time", "channel").values, dtype=dtype)
    if hold_out == "last":
        held = torch.arange(T - n_target, T)
    else:  # evenly spread over the interior positions 1 .. T-2 (distinct since n_target <= T - 2)
        held = 1 + torch.div(torch.arange(n_target) * (T - 2) + (T - 2) // 2, n_target, rounding_mode="floor")
    keep = torch.ones(T, dtype=torch.bool)
    keep[held] = False
    return IrregularBatch(
        values=values[:, keep], times=times[:, keep], mask=mask[:, keep],
        targets=state[:, held], target_times=times[:, held],
        target_mask=torch.ones_like(mask[:, held]),
    )


def to_trajectory_batch(ds: xr.Dataset, variable: str = "state", *,
                        dtype: torch.dtype = torch.float32) -> TrajectoryBatch:
    """A :class:`TrajectoryBatch` of ``ds[variable]`` with dims ``(sample, time, ...)``.

    Times come from ``obs_time`` (per sample) when present, else the ``time`` coordinate. For the
    spiking dataset use ``variable="counts"``.
    """
    if variable not in ds:
        raise ValueError(f"to_trajectory_batch: dataset has no variable {variable!r}; has {sorted(ds.data_vars)}")
    da = ds[variable]
    if da.dims[:2] != ("sample", "time"):
        raise ValueError(f"to_trajectory_batch: {variable!r} must have dims (sample, time, ...), got {da.dims}")
    values = torch.tensor(np.asarray(da.values), dtype=dtype)
    if "obs_time" in ds.coords:
        times = _obs_times(ds).to(dtype)
    else:
        times = torch.tensor(np.asarray(ds["time"].values, dtype=np.float64), dtype=dtype)
    if values.ndim == 2:
        values = values.unsqueeze(-1)
    return TrajectoryBatch(values=values, times=times)
