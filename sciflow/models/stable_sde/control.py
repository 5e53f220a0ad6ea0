"""The control path ``X(t)`` of an :class:`~sciflow.data.batches.IrregularBatch` and the solver's time grid.

Following Kidger et al. (2020, "Neural CDEs for irregular time series", §3) and the official
Stable-Neural-SDEs experiments, the path has the channels ``[t, x_1, ..., x_C]`` (time is a channel,
so the path is never degenerate) and, with ``intensity=True``, the cumulative observation counts
``[n_1(t), ..., n_C(t)] / T`` (Kidger et al. 2020, §3.5). Every (sample, channel) series is
interpolated through its own observed points only (:mod:`sciflow.solvers.interpolation`); missing
values enter as ``mask == False`` and never as NaN. Padded time steps (an ``IrregularBatch`` pads a
shorter series by repeating its last time) are treated as unobserved.

Time grid (the paper solves with one Euler–Maruyama step per observation gap):

* ``"union"``: the sorted union of every observation and target time of the batch, shared by all
  samples (cheapest when the samples share their times, as UEA series with missing values do);
* ``"per_sample"``: each sample steps through its own observation and target times (``(batch,
  T + n_target)`` grids; :mod:`sciflow.solvers.sde.per_sample`), so truly irregular batches cost
  ``T`` steps instead of up to ``batch · T``;
* ``"auto"``: union when all samples share their times, per-sample otherwise.

Each sample's readout is taken at the grid index of its own last observation time, targets at the
grid indices of their times. ``n_steps`` additionally bounds the step to ``(t_end - t_start) / n_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sciflow.data.batches import IrregularBatch
from sciflow.solvers.interpolation import HermiteCubic, LinearInterpolation, NaturalCubicSpline

__all__ = ["Control", "build_control", "observed_times"]

_PATHS = {"hermite": HermiteCubic, "natural": NaturalCubicSpline, "linear": LinearInterpolation}


@dataclass(frozen=True)
class Control:
    """Everything the vector fields and the readout need from one batch.

    path: the interpolant of ``X`` (``.evaluate(t)`` / ``.derivative(t)`` -> ``(batch, path_channels)``).
    grid: ``(n,)`` shared or ``(batch, n)`` per-sample strictly increasing save times of the solve.
    dt: maximal step size, or ``None`` for one step per grid gap.
    x0: ``(batch, 1 + 2C)`` features of the first observation ``[t_0, x(t_0) ⊙ m(t_0), m(t_0)]``
        (``m`` the observed mask), the input of the initial map ``z_0 = ζ(x0)``.
    last_index: ``(batch,)`` grid index of each sample's last observation time.
    (``path``, ``x0``, the indices and the observations describe one copy of the batch; the model
    stacks ``n`` copies for ``n`` sample paths.)
    target_index: ``(batch, n_target)`` grid indices of ``batch.target_times`` (or ``None``).
    obs_values, obs_mask: ``(batch, n, C)`` observations placed on the grid (0 / False elsewhere),
        used by the ODE-RNN's jump updates.
    """

    path: object
    grid: Tensor
    dt: float | None
    x0: Tensor
    last_index: Tensor
    target_index: Tensor | None
    obs_values: Tensor
    obs_mask: Tensor

    @property
    def path_channels(self) -> int:
        return int(self.path.channels)


def observed_times(times: Tensor) -> Tensor:
    """``(batch, time)`` bool: True at real time points, False at padding (a repeated last time)."""
    first = torch.ones_like(times[:, :1], dtype=torch.bool)
    return torch.cat([first, times[:, 1:] > times[:, :-1]], dim=1)


def path_channels(input_channels: int, intensity: bool) -> int:
    """Number of channels of the control path for ``input_channels`` data channels."""
    return 1 + input_channels * (2 if intensity else 1)


def build_control(batch: IrregularBatch, *, interpolation: str = "hermite", intensity: bool = False,
                  n_steps: int | None = None, with_targets: bool = False, time_grid: str = "auto") -> Control:
    """Fit the control path of ``batch`` and lay out the time grid (see the module docstring)."""
    if interpolation not in _PATHS:
        raise ValueError(f"interpolation must be one of {tuple(_PATHS)}, got {interpolation!r}")
    values, times, mask = batch.values, batch.times, batch.mask
    if not torch.isfinite(times).all():
        raise ValueError("IrregularBatch.times contain NaN or inf")
    Bn, T, C = values.shape
    real = observed_times(times)                                     # (B, T)
    obs = mask & real.unsqueeze(-1)                                  # (B, T, C)
    bad = obs & ~torch.isfinite(values)
    if bool(bad.any()):
        b, i, c = bad.nonzero()[0].tolist()
        raise ValueError(f"IrregularBatch.values is non-finite at an observed entry (sample {b}, time index {i}, "
                         f"channel {c}); mark missing entries in mask")
    values = torch.where(obs, values, torch.zeros((), dtype=values.dtype, device=values.device))
    tcol = times.to(values.dtype).unsqueeze(-1)
    chans = [tcol, values]
    cmask = [real.unsqueeze(-1), obs]
    if intensity:
        counts = obs.to(values.dtype).cumsum(dim=1) / T
        chans.append(counts)
        cmask.append(real.unsqueeze(-1).expand(Bn, T, C))
    path = _PATHS[interpolation](times, torch.cat(chans, -1), torch.cat(cmask, -1))

    tgt = None
    if with_targets:
        if batch.target_times is None:
            raise ValueError("this task needs IrregularBatch.target_times (and targets)")
        tgt = batch.target_times
        if tgt.ndim != 2 or tgt.shape[0] != Bn:
            raise ValueError(f"target_times must be (batch, n_target), got {tuple(tgt.shape)}")
        if not torch.isfinite(tgt).all():
            raise ValueError("IrregularBatch.target_times contain NaN or inf")
        tgt = tgt.to(times.dtype)
    if time_grid not in ("auto", "union", "per_sample"):
        raise ValueError(f"time_grid must be 'auto', 'union' or 'per_sample', got {time_grid!r}")
    if time_grid == "auto":   # one host read per batch: a shared grid is cheaper when all samples agree
        same = bool((times == times[:1]).all()) and (tgt is None or bool((tgt == tgt[:1]).all()))
        time_grid = "union" if same else "per_sample"
    if time_grid == "union":
        grid, last_index, target_index, where = _union_grid(times, real, tgt)
    else:
        grid, last_index, target_index, where = _per_sample_grid(times, tgt, values.dtype)
    dt = None
    if n_steps is not None:
        dt = float(grid.max() - grid.min()) / n_steps                  # one host read per batch
    # observations on the grid (ODE-RNN jumps); padding rows carry no observation
    n = grid.shape[-1]
    obs_values = values.new_zeros(Bn, n, C)
    idx = where.unsqueeze(-1).expand(Bn, T, C)
    obs_values.scatter_add_(1, idx, values)        # values are 0 where unobserved or padded
    obs_mask = torch.zeros(Bn, n, C, dtype=values.dtype, device=values.device).scatter_add_(
        1, idx, obs.to(values.dtype)) > 0
    m0 = obs[:, 0].to(values.dtype)
    x0 = torch.cat([times[:, :1].to(values.dtype), values[:, 0] * m0, m0], dim=-1)
    return Control(path=path, grid=grid, dt=dt, x0=x0, last_index=last_index, target_index=target_index,
                   obs_values=obs_values, obs_mask=obs_mask)


def _union_grid(times: Tensor, real: Tensor, tgt: Tensor | None):
    parts = [times[real]] + ([tgt.reshape(-1)] if tgt is not None else [])
    grid = torch.unique(torch.cat(parts))                             # sorted
    if grid.numel() < 2:
        raise ValueError("the batch spans a single time point; a differential equation needs at least two times")
    last_index = torch.searchsorted(grid, times[:, -1].contiguous())
    target_index = torch.searchsorted(grid, tgt.contiguous()) if tgt is not None else None
    where = torch.searchsorted(grid, times.contiguous())
    return grid, last_index, target_index, where


def _per_sample_grid(times: Tensor, tgt: Tensor | None, dtype: torch.dtype):
    """Each sample's own sorted observation (and target) times, ``(batch, T + n_target)``.

    Ties (padding repeats the last time; an interpolation target may sit on an observation time)
    are separated by ``δ = 10⁻⁶ · span`` (plus a few float ulps), so every per-sample grid is strictly
    increasing as :func:`~sciflow.solvers.sde.sdeint` requires; a step of length ``δ`` changes the
    solution by ``O(δ)``."""
    Bn, T = times.shape
    allt = times.double() if tgt is None else torch.cat([times, tgt], 1).double()
    L = allt.shape[1]
    if L < 2:
        raise ValueError("each series needs at least two time points (observations or targets)")
    srt, perm = torch.sort(allt, dim=1, stable=True)
    ar = torch.arange(L, device=times.device)
    pos = torch.empty_like(perm).scatter_(1, perm, ar.expand(Bn, L))   # position of each input time
    span = (srt[:, -1] - srt[:, 0]).max().clamp_min(1e-12)
    delta = 1e-6 * span + 8 * torch.finfo(dtype).eps * srt.abs().max()
    k = ar.to(srt.dtype) * delta
    grid = (torch.cummax(srt - k, dim=1).values + k).to(dtype)
    target_index = pos[:, T:] if tgt is not None else None
    return grid, pos[:, T - 1], target_index, pos[:, :T]
