"""Irregular observation of Lorenz trajectories and assembly of the schema-conforming dataset.

Irregular observation (the irregular time-series protocol of neural CDE / stable neural SDE
benchmarks): each sample keeps ``n_obs`` time points drawn without replacement from the regular
grid (observed values are the solver's own output at grid times, not re-interpolated), or with
``on_grid=False`` at ``n_obs`` continuous times drawn uniformly per sample; each
channel then loses exactly ``round(missing_rate_c · n_obs)`` values per sample; observed values
get Gaussian noise with standard deviation ``noise_std_c · std_c`` where ``std_c`` is the
channel's standard deviation over the clean dataset.

Datasets follow the sciflow schema: dims ``(sample, time, channel)``, coordinates on every dim,
parameters and provenance in attrs.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sciflow.data.pdes._dataset import GENERATED_LICENCE as _LICENCE
from sciflow.data.pdes._dataset import _version, check_positive_int
from sciflow.data.schema import validate

GENERATOR_VERSION = "1"  # bump when the same seed would give different data


def _per_channel(name: str, value: float | Sequence[float], n_channel: int, lo: float, hi: float) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if v.numel() == 1:
        v = v.expand(n_channel)
    if v.numel() != n_channel:
        raise ValueError(f"{name} must be a scalar or have one entry per channel ({n_channel}), got {v.numel()}")
    if not bool(((v >= lo) & (v <= hi)).all()):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {v.tolist()}")
    return v.clone()


def observe_irregular(
    states: Tensor,
    *,
    n_obs: int | None,
    missing_rate: float | Sequence[float] = 0.0,
    noise_std: float | Sequence[float] = 0.0,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Irregular, partly missing, noisy observations of regular trajectories.

    Args:
        states: ``(sample, time, channel)`` clean trajectories on a regular grid.
        n_obs: time points kept per sample (drawn without replacement, sorted); ``None`` keeps all.
        missing_rate: per-channel fraction in [0, 1) removed per sample (exactly
            ``round(rate · n_obs)`` values of each channel of each sample).
        noise_std: per-channel noise standard deviation in units of the channel's standard deviation
            over ``states``.
        generator: source of randomness.

    Returns:
        ``index (sample, n_obs)`` long grid indices, ``clean (sample, n_obs, channel)``,
        ``observed (sample, n_obs, channel)`` (noisy, 0 where missing), ``mask`` (bool, True = observed).
    """
    if states.ndim != 3:
        raise ValueError(f"states must be (sample, time, channel), got shape {tuple(states.shape)}")
    if not bool(torch.isfinite(states).all()):
        raise ValueError("states contain NaN/inf (did the integration blow up?)")
    n, T, C = states.shape
    rates = _per_channel("missing_rate", missing_rate, C, 0.0, 1.0)
    if bool((rates >= 1).any()):
        raise ValueError(f"missing_rate must be < 1 (a channel cannot be entirely missing), got {rates.tolist()}")
    noise = _per_channel("noise_std", noise_std, C, 0.0, float("inf"))
    if n_obs is None:
        index = torch.arange(T, device=states.device).expand(n, T)
    else:
        n_obs = check_positive_int("n_obs", n_obs, 2)
        if n_obs > T:
            raise ValueError(f"n_obs={n_obs} exceeds the {T} points of the regular grid")
        pick = torch.rand(n, T, generator=generator).argsort(dim=1)[:, :n_obs]
        index = pick.sort(dim=1).values.to(states.device)
    clean = states.gather(1, index.unsqueeze(-1).expand(-1, -1, C))
    m = clean.shape[1]
    n_missing = torch.round(rates * m).long().to(states.device)  # (C,)
    rank = torch.rand(n, m, C, generator=generator).argsort(dim=1).argsort(dim=1).to(states.device)
    mask = rank >= n_missing  # exactly n_missing[c] entries per (sample, channel) are False
    scale = (noise.to(states) * states.reshape(-1, C).std(dim=0))
    eps = torch.randn(n, m, C, generator=generator, dtype=states.dtype).to(states.device)
    observed = torch.where(mask, clean + scale * eps, torch.zeros_like(clean))
    return index, clean, observed, mask


def observed_dataset(
    *,
    equation: str,
    states: Tensor,
    grid: Tensor,
    channel_names: Sequence[str],
    n_obs: int | None,
    missing_rate: float | Sequence[float],
    noise_std: float | Sequence[float],
    generator: torch.Generator,
    attrs: dict,
    parameter_names: Sequence[str],
    obs_time: Tensor | None = None,
) -> xr.Dataset:
    """Observe ``states`` (``(n, time, C)`` on ``grid``) with :func:`observe_irregular` and assemble
    the schema-conforming dataset (``state``/``observed``/``mask``, provenance and ``attrs`` in
    its attributes) that every Lorenz generator returns."""
    index, clean, observed, mask = observe_irregular(
        states, n_obs=None if obs_time is not None else n_obs, missing_rate=missing_rate,
        noise_std=noise_std, generator=generator,
    )
    n, m, C = clean.shape
    dims = ("sample", "time", "channel")
    coords: dict = {"sample": np.arange(n), "channel": list(channel_names)}
    if n_obs is None:
        coords["time"] = ("time", grid.cpu().numpy(), {"units": "model time units"})
    else:
        t_obs = obs_time if obs_time is not None else grid[index.cpu()]
        coords["time"] = ("time", np.arange(m), {"long_name": "observation index"})
        coords["obs_time"] = (("sample", "time"), t_obs.cpu().numpy(),
                              {"long_name": "per-sample observation time", "units": "model time units"})
    std = states.reshape(-1, C).std(dim=0).cpu().numpy()
    mean = states.reshape(-1, C).mean(dim=0).cpu().numpy()
    ds = xr.Dataset(
        {
            "state": (dims, clean.cpu().numpy(), {"long_name": "true state at the observation times"}),
            "observed": (dims, observed.cpu().numpy(),
                         {"long_name": "noisy observation, 0 where missing (see mask)"}),
            "mask": (dims, mask.cpu().numpy(), {"long_name": "True where observed"}),
        },
        coords=coords,
    )
    ds.attrs.update(
        {
            "equation": equation,
            "generator": "sciflow.data.pdes.lorenz",
            "version": _version(),
            "generator_version": GENERATOR_VERSION,
            "licence": _LICENCE,
            "irregular": int(n_obs is not None),
            "n_obs": -1 if n_obs is None else int(n_obs),
            "sampling": ("regular grid" if n_obs is None else "random subset of the grid" if obs_time is None
                         else "uniform random times on (t0, t_end]"),
            "grid_t0": float(grid[0]),
            "grid_dt": float(grid[1] - grid[0]) if grid.numel() > 1 else 0.0,
            "grid_n_time": int(grid.numel()),
            "missing_rate": _per_channel("missing_rate", missing_rate, C, 0, 1).numpy(),
            "noise_std": _per_channel("noise_std", noise_std, C, 0, float("inf")).numpy(),
            "state_mean": mean,
            "state_std": std,
            **attrs,
        }
    )
    ds.attrs["parameters"] = json.dumps({k: attrs[k] for k in parameter_names})
    return validate(ds)
