"""The irregular-sampling protocol of the neural CDE / stable neural SDE benchmarks.

Kidger et al., "Neural Controlled Differential Equations for Irregular Time Series" (NeurIPS 2020,
§4.1 and App. C) and Oh, Lim & Kim, "Stable Neural Stochastic Differential Equations in Analyzing
Irregular Time Series Data" (ICLR 2024, §5.1 and App. E) evaluate classifiers on UEA/UCR problems
after removing a fraction of the observations:

1. the TRAIN and TEST files are combined;
2. a fraction ``r`` ∈ {0.3, 0.5, 0.7} of the values is removed at random (seeded);
3. the union is split 70 / 15 / 15 % into train / validation / test, stratified by class (seeded);
4. each channel is normalised by the mean and standard deviation of its *observed* training values;
5. times are the observation index rescaled to [0, 1] (``t_j = j / (T − 1)``) or real time stamps.

**Deviation (stated):** Kidger's and Oh's code remove the same time points from every channel of a
sample (``int(T·r)`` whole rows); the issue asks for removal *per channel independently*: for every
sample ``i`` and channel ``c``, exactly ``⌊r · L_i⌋`` of the ``L_i`` time points are dropped, chosen
independently per channel. ``per_channel=False`` reproduces the row-wise removal of the official code.
Removed rows stay on the grid (mask False), so the grid is the same for every missing rate.

The result is a :class:`IrregularSplits` of :class:`sciflow.data.batches.IrregularBatch` objects:
values 0 where missing (never NaN), ``mask`` True where observed, times per sample (padding of
shorter series repeats the last time, mask False), labels as class indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from sciflow.data.batches import IrregularBatch
from sciflow.data.timeseries.uea import TSData

__all__ = [
    "IrregularSplits",
    "classification_splits",
    "drop_values",
    "forecasting_splits",
    "lorenz_forecasting_splits",
    "normalize",
    "observed_statistics",
    "stratified_split",
]

PAPER_MISSING_RATES: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)


@dataclass(frozen=True)
class IrregularSplits:
    """Train / validation / test batches with the preprocessing that produced them.

    ``mean``/``std``: ``(channel,)`` normalisation statistics from the observed training values
    (``values_normalised = (values − mean) / std``); ``info`` records name, missing rate, seed,
    fractions, time convention and sizes (what a run needs to reproduce the preprocessing).
    """

    train: IrregularBatch
    val: IrregularBatch
    test: IrregularBatch
    mean: Tensor
    std: Tensor
    class_names: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.train.values.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for the protocol's random steps from one user seed."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint32)]


def _check_rate(rate: float) -> float:
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {rate!r}")
    return float(rate)


def drop_values(values: np.ndarray, lengths: np.ndarray, rate: float, *, generator: torch.Generator,
                per_channel: bool = True) -> np.ndarray:
    """Remove ``⌊rate · L_i⌋`` of the ``L_i`` time points of each sample (set to NaN).

    Args:
        values: ``(sample, time, channel)``, NaN where already missing or padded.
        lengths: ``(sample,)`` valid lengths (positions ``≥ L_i`` are padding and never chosen).
        rate: fraction in [0, 1).
        generator: CPU ``torch.Generator`` (the draw is reproducible on every platform).
        per_channel: choose the removed points independently for each channel (default) or
            remove whole time points (rows), as the official neural-CDE code does.

    Returns:
        A copy of ``values`` with the removed entries set to NaN.
    """
    rate = _check_rate(rate)
    if values.ndim != 3:
        raise ValueError(f"values must be (sample, time, channel), got shape {values.shape}")
    N, T, C = values.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (N,) or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must be (sample,) = ({N},) with entries in [1, {T}]")
    out = np.array(values, dtype=np.float64, copy=True)
    if rate == 0.0:
        return out
    k = np.floor(rate * lengths).astype(np.int64)  # (N,)
    width = C if per_channel else 1
    keys = torch.rand(N, T, width, generator=generator, dtype=torch.float64).numpy()
    keys[np.arange(T)[None, :] >= lengths[:, None]] = 2.0  # padding sorts last: never chosen
    rank = keys.argsort(axis=1).argsort(axis=1)
    drop = rank < k[:, None, None]
    out[np.broadcast_to(drop, out.shape)] = np.nan
    return out


def stratified_split(labels: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15), *,
                     generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train/val/test split.

    Within each class of ``n_c`` samples the split sizes are the largest-remainder rounding of
    ``f · n_c`` (ties between splits rotate with the class index, so small classes alternate
    between validation and test); train gets at least one sample. Members come from a seeded
    permutation.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-9 or f[0] <= 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1 with train > 0, got {fractions}")
    labels = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[], [], []]
    for k, c in enumerate(np.unique(labels)):
        idx = np.flatnonzero(labels == c)
        idx = idx[torch.randperm(idx.size, generator=generator).numpy()]
        ideal = f * idx.size
        counts = np.floor(ideal + 1e-9).astype(np.int64)
        rem = ideal - counts
        order = sorted(range(3), key=lambda s: (-round(rem[s], 9), (s + k) % 3))
        for s in order[: idx.size - int(counts.sum())]:
            counts[s] += 1
        if counts[0] == 0:  # every class must be seen in training
            counts[int(np.argmax(counts))] -= 1
            counts[0] = 1
        n_tr, n_va = int(counts[0]), int(counts[1])
        parts[0].append(idx[:n_tr])
        parts[1].append(idx[n_tr:n_tr + n_va])
        parts[2].append(idx[n_tr + n_va:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def observed_statistics(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over observed entries of ``(batch, time, channel)``.

    A channel with fewer than two observations or zero spread gets std 1 (no rescaling)."""
    m = mask.to(values.dtype)
    n = m.sum(dim=(0, 1))
    mean = (values * m).sum(dim=(0, 1)) / n.clamp_min(1)
    var = (((values - mean) * m) ** 2).sum(dim=(0, 1)) / (n - 1).clamp_min(1)
    std = var.sqrt()
    std = torch.where((n < 2) | (std <= 0) | ~torch.isfinite(std), torch.ones_like(std), std)
    return mean, std


def normalize(batch: IrregularBatch, mean: Tensor, std: Tensor) -> IrregularBatch:
    """``(values − mean) / std`` on observed entries (0 elsewhere); targets likewise when they
    have the channel axis last."""
    values = torch.where(batch.mask, (batch.values - mean) / std, torch.zeros_like(batch.values))
    targets = batch.targets
    if targets is not None and targets.ndim >= 2 and targets.shape[-1] == mean.numel():
        targets = (targets - mean) / std
    return IrregularBatch(values=values, times=batch.times, mask=batch.mask, labels=batch.labels,
                          targets=targets, target_times=batch.target_times, target_mask=batch.target_mask)


def _batch(values: np.ndarray, times: np.ndarray, lengths: np.ndarray, labels: np.ndarray | None,
           dtype: torch.dtype) -> IrregularBatch:
    mask = ~np.isnan(values)
    T = values.shape[1]
    pad = np.arange(T)[None, :] >= lengths[:, None]
    last = times[np.arange(len(lengths)), lengths - 1]
    times = np.where(pad, last[:, None], times)  # padding repeats the last valid time
    return IrregularBatch(
        values=torch.as_tensor(np.nan_to_num(values, nan=0.0), dtype=dtype),
        times=torch.as_tensor(times, dtype=dtype),
        mask=torch.as_tensor(mask),
        labels=None if labels is None else torch.as_tensor(labels, dtype=torch.long),
    )


def classification_splits(
    data: TSData,
    *,
    missing_rate: float = 0.0,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    time: Literal["index", "real"] = "index",
    per_channel: bool = True,
    dtype: torch.dtype = torch.float32,
) -> IrregularSplits:
    """The classification protocol (module docstring) applied to ``data`` (e.g. TRAIN + TEST).

    Args:
        data: a labelled problem, e.g. ``load_uea("BasicMotions")``.
        missing_rate: fraction of time points removed per channel (0, 0.3, 0.5, 0.7 in the paper).
        seed: seeds both the removal and the split (independent streams).
        fractions: train / validation / test fractions (stratified by class).
        time: ``"index"``: ``t_j = j / (T − 1)`` with ``T`` the longest series; ``"real"``: the
            file's time stamps (requires ``@timeStamps true``), shifted to start at 0 per dataset.
        per_channel: see :func:`drop_values`.
    """
    if data.labels is None:
        raise ValueError(f"{data.name}: classification needs class labels (@classLabel true)")
    g_drop, g_split = (torch.Generator().manual_seed(s) for s in _seeds(seed, 2))
    values = drop_values(data.values, data.lengths, missing_rate, generator=g_drop, per_channel=per_channel)
    N, T, _ = values.shape
    if time == "index":
        times = np.broadcast_to(np.arange(T) / max(T - 1, 1), (N, T)).copy()
    elif time == "real":
        if data.times is None:
            raise ValueError(f"{data.name}: time='real' needs a time-stamped file (@timeStamps true); use time='index'")
        times = data.times - np.nanmin(data.times)
    else:
        raise ValueError(f"time must be 'index' or 'real', got {time!r}")
    full = _batch(values, times, data.lengths, data.labels, dtype)
    tr, va, te = stratified_split(data.labels, fractions, generator=g_split)
    train = full.index(torch.as_tensor(tr))
    mean, std = observed_statistics(train.values, train.mask)
    info = {"name": data.name, "task": "classification", "missing_rate": float(missing_rate), "seed": int(seed),
            "fractions": [float(x) for x in fractions], "time": time, "per_channel": bool(per_channel),
            "n_train": int(tr.size), "n_val": int(va.size), "n_test": int(te.size),
            "observed_fraction": float(full.mask.float().mean())}
    return IrregularSplits(normalize(train, mean, std), normalize(full.index(torch.as_tensor(va)), mean, std),
                           normalize(full.index(torch.as_tensor(te)), mean, std), mean, std,
                           tuple(data.class_names), info)


def forecasting_splits(batch: IrregularBatch, *, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                       info: dict[str, Any] | None = None, task: str = "forecasting") -> IrregularSplits:
    """Random (unstratified) split of a forecasting (or interpolation, ``task``) batch, normalised by
    training statistics.

    Inputs and targets (channel axis last) are normalised with the mean/std of the observed
    training inputs, so scores are in units of the training standard deviation per channel.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-9 or f[0] <= 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1 with train > 0, got {fractions}")
    n = len(batch)
    n_val, n_test = int(round(f[1] * n)), int(round(f[2] * n))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} samples cannot be split with fractions {list(fractions)}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seeds(seed, 1)[0]))
    te, va, tr = (perm[:n_test].sort().values, perm[n_test:n_test + n_val].sort().values,
                  perm[n_test + n_val:].sort().values)
    train = batch.index(tr)
    mean, std = observed_statistics(train.values, train.mask)
    meta = {"task": task, "seed": int(seed), "fractions": [float(x) for x in f],
            "n_train": len(tr), "n_val": len(va), "n_test": len(te), **(info or {})}
    return IrregularSplits(normalize(train, mean, std), normalize(batch.index(va), mean, std),
                           normalize(batch.index(te), mean, std), mean, std, (), meta)


def lorenz_forecasting_splits(
    n: int = 128,
    *,
    n_time: int = 200,
    dt: float = 0.02,
    n_obs: int = 60,
    n_target: int = 10,
    missing_rate: float = 0.0,
    noise_std: float = 0.05,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    rtol: float = 1e-8,
    atol: float = 1e-8,
    dtype: torch.dtype = torch.float32,
    task: str = "forecasting",
) -> IrregularSplits:
    """Irregular Lorenz-63 forecasting: ``n_obs`` random grid times per trajectory (per-channel
    missingness and noise from :func:`sciflow.data.pdes.lorenz.generate_lorenz63`); the last
    ``n_target`` observation times are forecast targets (noiseless state, all channels).
    ``task="interpolation"``: the targets are ``n_target`` observation times spread over the
    interior of the window instead (:func:`lorenz_interpolation_splits`).
    ``rtol``/``atol``: tolerances of the reference integration (1e-8 is far below the noise)."""
    from sciflow.data.pdes.lorenz import generate_lorenz63, to_irregular_batch

    if task not in ("forecasting", "interpolation"):
        raise ValueError(f"task must be 'forecasting' or 'interpolation', got {task!r}")
    limit = n_obs - 1 if task == "forecasting" else n_obs - 2
    if not 0 < n_target <= limit:
        raise ValueError(f"n_target must be in [1, {limit}] for {task} with n_obs={n_obs}, got {n_target}")
    ds = generate_lorenz63(n, n_time=n_time, dt=dt, n_obs=n_obs, missing_rate=missing_rate,
                           noise_std=noise_std, seed=seed, rtol=rtol, atol=atol)
    batch = to_irregular_batch(ds, n_target=n_target, hold_out="last" if task == "forecasting" else "interior",
                               dtype=dtype)
    info = {"name": "lorenz63", "missing_rate": float(missing_rate), "noise_std": float(noise_std),
            "n": int(n), "n_time": int(n_time), "dt": float(dt), "n_obs": int(n_obs), "n_target": int(n_target),
            "time": "real"}
    return forecasting_splits(batch, seed=seed, fractions=fractions, info=info, task=task)


def lorenz_interpolation_splits(n: int = 128, **kwargs: Any) -> IrregularSplits:
    """Irregular Lorenz-63 interpolation: as :func:`lorenz_forecasting_splits`, with the targets
    (noiseless state) at ``n_target`` observation times spread over the interior of each window."""
    return lorenz_forecasting_splits(n, task="interpolation", **kwargs)
