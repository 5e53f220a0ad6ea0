"""Neural Latents Benchmark (NLB) data in the preprocessed HDF5 tensor layout of ``nlb_tools``.

Pei et al. (2021), "Neural Latents Benchmark '21", NeurIPS Datasets & Benchmarks. The benchmark's
``nlb_tools.make_tensors`` writes trial-aligned, binned spike counts ``(trial, time, neuron)``
into HDF5 files with these datasets (names as in ``make_tensors``/``evaluation``):

========================================  ===================================================
``train_spikes_heldin`` / ``_heldout``     training trials, held-in / held-out neurons
``train_spikes_heldin_forward`` / ...      the ``fp_len`` (200 ms) after each training trial
``eval_spikes_heldin``                     evaluation trials, held-in neurons (model input)
``eval_spikes_heldout``                    evaluation trials, held-out neurons (target)
``eval_spikes_heldin_forward`` / ...       forward-prediction targets of the evaluation trials
``train_behavior`` / ``eval_behavior``     behaviour per bin ``(trial, time, channel)``, e.g. hand velocity
``psth``                                   condition-averaged rates ``(condition, time, neuron)``
``eval_cond_idx``                          evaluation trials of each ``psth`` condition
``train_decode_mask`` / ``eval_decode_mask``  ``(trial, n_mask)`` trial groups with one decoder each
========================================  ===================================================

Inputs are flat files (``train_input.h5``, ``eval_input.h5``); the evaluation target file holds
one group per dataset and bin size (``mc_maze`` for 5 ms, ``mc_maze_20`` for 20 ms). :func:`load_nlb`
reads any number of such files (looking inside the ``dataset`` group where there is one) and
returns :class:`NLBTensors`; ``.train_batch()`` / ``.eval_batch()`` give
:class:`~sciflow.data.batches.TrajectoryBatch` es with the held-in neurons first, then the held-out
ones, then (if present) the forward-prediction bins appended in time — the layout that
:class:`~sciflow.models.langevin_flow.Config` ``(input_dim=n_heldin, n_forward=n_forward)`` expects.
NaN entries (NLB pads variable-length trials with NaN) are kept; the metrics skip them.

``eval_cond_idx`` is stored as a 2-D integer array with one row per condition padded with
negative values, or as a group of 1-D arrays (one per condition, ordered by name).

:func:`write_nlb_fixture` writes a small synthetic dataset in exactly this layout (three files
as ``nlb_tools`` names them), with the ground-truth rates, for tests and examples.

:func:`bin_nwb_trials` reads the raw NWB layout (DANDI files, through h5py, no pynwb needed):
``units/spike_times`` with its ragged index ``units/spike_times_index``, trial intervals
``intervals/trials/start_time`` / ``stop_time``, and bins each trial from its start at 5 or 20 ms.
It does not reproduce ``nlb_tools``' alignment to behavioural events (e.g. movement onset) or its
train/val/test splits; use the preprocessed tensors above for benchmark numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from sciflow.data.batches import TrajectoryBatch

SPIKE_KEYS = ("train_spikes_heldin", "train_spikes_heldout", "eval_spikes_heldin", "eval_spikes_heldout",
              "train_spikes_heldin_forward", "train_spikes_heldout_forward",
              "eval_spikes_heldin_forward", "eval_spikes_heldout_forward")
OTHER_KEYS = ("train_behavior", "eval_behavior", "psth", "eval_cond_idx", "train_decode_mask", "eval_decode_mask")

#: published MC_Maze co-smoothing bits/spike (EvalAI leaderboard, 20 ms bins) — for reference only
MC_MAZE_REFERENCE_CO_BPS = {"LangevinFlow": 0.3650, "NDT": 0.3597, "AutoLFADS": 0.3554}


@dataclass(frozen=True)
class NLBTensors:
    """NLB tensors ``(trial, time, neuron)`` as float tensors (NaN where NLB pads); ``None`` where absent.

    ``psth``: ``(condition, time, neuron)``; ``eval_cond_idx``: one long tensor of evaluation-trial
    indices per condition; decode masks ``(trial, n_mask)`` bool. ``bin_width``: seconds per bin
    (``None`` when unknown; batch times are then bin indices).
    """

    train_spikes_heldin: Tensor
    train_spikes_heldout: Tensor
    eval_spikes_heldin: Tensor | None = None
    eval_spikes_heldout: Tensor | None = None
    train_spikes_heldin_forward: Tensor | None = None
    train_spikes_heldout_forward: Tensor | None = None
    eval_spikes_heldin_forward: Tensor | None = None
    eval_spikes_heldout_forward: Tensor | None = None
    train_behavior: Tensor | None = None
    eval_behavior: Tensor | None = None
    psth: Tensor | None = None
    eval_cond_idx: tuple[Tensor, ...] | None = None
    train_decode_mask: Tensor | None = None
    eval_decode_mask: Tensor | None = None
    bin_width: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        _check_split(self, "train", required=True)
        _check_split(self, "eval", required=False)
        n_in, n_out = self.n_heldin, self.n_heldout
        for key in SPIKE_KEYS:
            x = getattr(self, key)
            if x is None:
                continue
            want = n_in if "heldin" in key else n_out
            if x.ndim != 3 or x.shape[-1] != want:
                raise ValueError(f"NLB {key} must be (trial, time, {want}), got {tuple(x.shape)}")
            finite = x[~torch.isnan(x)]
            if bool((finite < 0).any()) or bool((finite != finite.round()).any()) or bool(torch.isinf(finite).any()):
                raise ValueError(f"NLB {key} must hold non-negative integer spike counts (NaN for padding)")
        for split in ("train", "eval"):
            beh = getattr(self, f"{split}_behavior")
            spikes = getattr(self, f"{split}_spikes_heldin")
            if beh is not None and spikes is not None and beh.shape[0] != spikes.shape[0]:
                raise ValueError(f"NLB {split}_behavior has {beh.shape[0]} trials, {split}_spikes_heldin "
                                 f"{spikes.shape[0]}")
        if self.psth is not None and (self.psth.ndim != 3 or self.psth.shape[-1] != n_in + n_out):
            raise ValueError(f"NLB psth must be (condition, time, {n_in + n_out}), got {tuple(self.psth.shape)}")
        if self.psth is not None and self.eval_cond_idx is not None and len(self.eval_cond_idx) != self.psth.shape[0]:
            raise ValueError(f"NLB eval_cond_idx has {len(self.eval_cond_idx)} conditions, psth {self.psth.shape[0]}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_heldin(self) -> int:
        return int(self.train_spikes_heldin.shape[-1])

    @property
    def n_heldout(self) -> int:
        return int(self.train_spikes_heldout.shape[-1])

    @property
    def n_forward(self) -> int:
        """Forward-prediction bins (0 without the ``*_forward`` arrays)."""
        f = self.train_spikes_heldin_forward
        return 0 if f is None else int(f.shape[1])

    # ------------------------------------------------------------------ batches
    def _batch(self, split: str, *, forward: bool, heldout: bool) -> TrajectoryBatch:
        parts = [getattr(self, f"{split}_spikes_heldin")]
        if parts[0] is None:
            raise ValueError(f"these NLB tensors have no {split}_spikes_heldin")
        if heldout:
            ho = getattr(self, f"{split}_spikes_heldout")
            if ho is None:
                raise ValueError(f"{split}_spikes_heldout is absent (it is the hidden target of the test "
                                 "phase); use heldout=False")
            parts.append(ho)
        x = torch.cat(parts, -1)
        if forward and self.n_forward:
            fw = [getattr(self, f"{split}_spikes_heldin_forward")]
            if heldout:
                fw.append(getattr(self, f"{split}_spikes_heldout_forward"))
            if any(f is None for f in fw):
                raise ValueError(f"{split} forward-prediction spikes are absent; use forward=False")
            x = torch.cat([x, torch.cat(fw, -1)], 1)
        dt = 1.0 if self.bin_width is None else self.bin_width
        times = dt * torch.arange(x.shape[1], dtype=x.dtype)
        return TrajectoryBatch(values=x, times=times)

    def train_batch(self, *, forward: bool = True) -> TrajectoryBatch:
        """Training trials ``(trial, time [+ n_forward], n_heldin + n_heldout)``."""
        return self._batch("train", forward=forward, heldout=True)

    def eval_input_batch(self) -> TrajectoryBatch:
        """What a model sees in the test phase: evaluation trials ``(trial, time + n_forward,
        n_heldin + n_heldout)`` with the held-in spikes and zeros as placeholders for the hidden
        held-out neurons and forward bins (a model with ``input_dim = n_heldin`` and
        ``n_forward = n_forward`` never encodes them); decode its rates for :func:`evaluate_nlb`."""
        hi = self.eval_spikes_heldin
        if hi is None:
            raise ValueError("these NLB tensors have no eval_spikes_heldin")
        x = torch.cat([hi, hi.new_zeros(*hi.shape[:2], self.n_heldout)], -1)
        x = torch.cat([x, x.new_zeros(x.shape[0], self.n_forward, x.shape[2])], 1)
        dt = 1.0 if self.bin_width is None else self.bin_width
        return TrajectoryBatch(values=x, times=dt * torch.arange(x.shape[1], dtype=x.dtype))

    def eval_batch(self, *, forward: bool = True, heldout: bool = True) -> TrajectoryBatch:
        """Evaluation trials; with ``heldout=False`` only the held-in neurons (the model input of the
        test phase, whose held-out spikes are hidden)."""
        return self._batch("eval", forward=forward, heldout=heldout)


def _check_split(t: NLBTensors, split: str, *, required: bool) -> None:
    hi, ho = getattr(t, f"{split}_spikes_heldin"), getattr(t, f"{split}_spikes_heldout")
    if required and (hi is None or ho is None):
        raise ValueError(f"NLB tensors need {split}_spikes_heldin and {split}_spikes_heldout")
    if hi is not None and ho is not None and hi.shape[:2] != ho.shape[:2]:
        raise ValueError(f"NLB {split}_spikes_heldin {tuple(hi.shape)} and {split}_spikes_heldout "
                         f"{tuple(ho.shape)} must share (trial, time)")
    for side in ("heldin", "heldout"):
        base, fw = getattr(t, f"{split}_spikes_{side}"), getattr(t, f"{split}_spikes_{side}_forward")
        if base is not None and fw is not None and fw.shape[0] != base.shape[0]:
            raise ValueError(f"NLB {split}_spikes_{side}_forward has {fw.shape[0]} trials, "
                             f"{split}_spikes_{side} {base.shape[0]}")


def _read_cond_idx(node) -> tuple[Tensor, ...]:
    import h5py

    if isinstance(node, h5py.Group):
        return tuple(torch.as_tensor(np.asarray(node[k][()]).astype(np.int64).reshape(-1)) for k in sorted(node))
    arr = np.asarray(node[()])
    if arr.dtype == object:  # ragged (vlen) rows
        return tuple(torch.as_tensor(np.asarray(r).astype(np.int64).reshape(-1)) for r in arr)
    arr = arr.astype(np.int64).reshape(arr.shape[0], -1)
    return tuple(torch.as_tensor(r[r >= 0]) for r in arr)


def load_nlb(paths: str | Path | Sequence[str | Path], *, dataset: str | None = None,
             bin_width: float | None = None, dtype: torch.dtype = torch.float32) -> NLBTensors:
    """Read NLB tensors from one or more ``nlb_tools`` HDF5 files.

    Args:
        paths: e.g. ``["mc_maze_20_train_input.h5", "mc_maze_20_eval_input.h5",
            "eval_target.h5"]``; keys found in several files must agree (the first is kept).
        dataset: group to read in files organised by dataset (the evaluation target file), e.g.
            ``"mc_maze_20"``; files without that group are read at their root.
        bin_width: seconds per bin; default: 0.02 for a ``*_20`` dataset name, 0.005 for another
            NLB name, else ``None`` (bin indices).
        dtype: floating dtype of the returned tensors.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file for an unreadable
    (corrupt, non-HDF5) one, a missing required key or inconsistent shapes.
    """
    import h5py

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("load_nlb needs at least one file")
    found: dict[str, object] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"NLB file not found: {p}")
        try:
            f = h5py.File(p, "r")
        except OSError as err:
            raise ValueError(f"{p} is not a readable HDF5 file ({err})") from None
        with f:
            root = f[dataset] if dataset is not None and dataset in f else f
            for key in (*SPIKE_KEYS, *OTHER_KEYS):
                if key in found or key not in root:
                    continue
                node = root[key]
                if key == "eval_cond_idx":
                    found[key] = _read_cond_idx(node)
                elif key.endswith("decode_mask"):
                    found[key] = torch.as_tensor(np.asarray(node[()]).astype(bool))
                else:
                    found[key] = torch.as_tensor(np.asarray(node[()], dtype=np.float64)).to(dtype)
    for key in ("train_spikes_heldin", "train_spikes_heldout"):
        if key not in found:
            raise ValueError(f"no '{key}' in {[str(p) for p in paths]}"
                             + (f" (group '{dataset}' or root)" if dataset else ""))
    if bin_width is None and dataset is not None:
        bin_width = 0.02 if dataset.endswith("_20") else 0.005
    if bin_width is not None and not (math.isfinite(bin_width) and bin_width > 0):
        raise ValueError(f"bin_width must be a positive number of seconds, got {bin_width}")
    return NLBTensors(**found, bin_width=bin_width, name=dataset or "")


# ----------------------------------------------------------------------------- fixture


def write_nlb_fixture(directory: str | Path, *, name: str = "fixture_20", n_train: int = 24, n_eval: int = 12,
                      n_time: int = 20, n_forward: int = 5, n_heldin: int = 10, n_heldout: int = 4,
                      n_conditions: int = 3, base_rate: float = 0.3, seed: int = 0) -> dict[str, object]:
    """Write a tiny synthetic dataset in the ``nlb_tools`` layout and return its ground truth.

    Each trial belongs to one of ``n_conditions`` conditions; its 2-D latent is a condition-specific
    rotation ``(cos, sin)(ω t + φ_c)`` plus a trial-specific amplitude jitter; rates (expected counts
    per bin) are ``base_rate · exp(C x_t + b)`` over ``n_time + n_forward`` bins; counts are Poisson;
    behaviour ("velocity") is the latent's time derivative, a linear function of the log-rates.

    Files: ``{name}_train_input.h5`` (``train_spikes_*``, ``train_behavior``, ``train_*_forward``),
    ``{name}_eval_input.h5`` (``eval_spikes_heldin``) and ``{name}_eval_target.h5`` (group ``name``:
    ``eval_spikes_heldout``, ``*_forward``, ``train/eval_behavior``, ``psth``, ``eval_cond_idx``,
    decode masks). Returns ``{"paths", "train_rates", "eval_rates", "conditions", ...}`` (rates as
    float64 tensors ``(trial, time + n_forward, n_heldin + n_heldout)``).
    """
    import h5py

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    n_trials, n_all, T = n_train + n_eval, n_heldin + n_heldout, n_time + n_forward
    cond = torch.arange(n_trials) % n_conditions
    cond = cond[torch.randperm(n_trials, generator=g)]
    t = torch.arange(T, dtype=torch.float64)
    omega = 2 * math.pi / (1.5 * n_time)
    phase = 2 * math.pi * cond.double() / n_conditions
    amp = 1.0 + 0.2 * torch.randn(n_trials, generator=g, dtype=torch.float64)
    angle = omega * t[None, :] + phase[:, None]
    latent = amp[:, None, None] * torch.stack([angle.cos(), angle.sin()], -1)  # (trial, T, 2)
    velocity = amp[:, None, None] * omega * torch.stack([-angle.sin(), angle.cos()], -1)
    readout = torch.randn(2, n_all, generator=g, dtype=torch.float64)
    rates = base_rate * torch.exp(latent @ readout)
    counts = torch.poisson(rates, generator=g)
    tr, ev = slice(0, n_train), slice(n_train, n_trials)
    obs, fwd = slice(0, n_time), slice(n_time, T)
    hi, ho = slice(0, n_heldin), slice(n_heldin, n_all)
    # condition-averaged true rates of the evaluation trials' conditions (as NLB's smoothed PSTHs)
    psth = torch.stack([rates[:n_trials][cond == c][:, obs].mean(0) for c in range(n_conditions)])
    cond_idx = [torch.nonzero(cond[ev] == c).flatten() for c in range(n_conditions)]
    width = max(len(c) for c in cond_idx)
    cond_arr = np.full((n_conditions, width), -1, dtype=np.int64)
    for i, c in enumerate(cond_idx):
        cond_arr[i, : len(c)] = c.numpy()
    paths = {k: out / f"{name}_{k}.h5" for k in ("train_input", "eval_input", "eval_target")}
    np_ = lambda x: x.numpy()  # noqa: E731
    with h5py.File(paths["train_input"], "w") as f:
        f["train_spikes_heldin"] = np_(counts[tr, obs, hi])
        f["train_spikes_heldout"] = np_(counts[tr, obs, ho])
        f["train_spikes_heldin_forward"] = np_(counts[tr, fwd, hi])
        f["train_spikes_heldout_forward"] = np_(counts[tr, fwd, ho])
        f["train_behavior"] = np_(velocity[tr, obs])
    with h5py.File(paths["eval_input"], "w") as f:
        f["eval_spikes_heldin"] = np_(counts[ev, obs, hi])
    with h5py.File(paths["eval_target"], "w") as f:
        grp = f.create_group(name)
        grp["eval_spikes_heldout"] = np_(counts[ev, obs, ho])
        grp["eval_spikes_heldin_forward"] = np_(counts[ev, fwd, hi])
        grp["eval_spikes_heldout_forward"] = np_(counts[ev, fwd, ho])
        grp["train_behavior"] = np_(velocity[tr, obs])
        grp["eval_behavior"] = np_(velocity[ev, obs])
        grp["psth"] = np_(psth)
        grp["eval_cond_idx"] = cond_arr
        grp["train_decode_mask"] = np.ones((n_train, 1), dtype=bool)
        grp["eval_decode_mask"] = np.ones((n_eval, 1), dtype=bool)
    return {"paths": [paths["train_input"], paths["eval_input"], paths["eval_target"]], "name": name,
            "train_rates": rates[tr], "eval_rates": rates[ev], "conditions": cond, "counts": counts,
            "n_time": n_time, "n_forward": n_forward, "n_heldin": n_heldin, "n_heldout": n_heldout}


# ----------------------------------------------------------------------------- raw NWB


def bin_nwb_trials(path: str | Path, bin_width: float = 0.005, *, duration: float | None = None,
                   dtype: torch.dtype = torch.float32) -> dict[str, object]:
    """Spike counts ``(trial, time, unit)`` of an NWB file, binned from each trial's start.

    Args:
        path: an NWB (HDF5) file with ``units/spike_times``, ``units/spike_times_index`` and
            ``intervals/trials/{start_time, stop_time}`` (seconds).
        bin_width: seconds per bin (NLB uses 0.005 and 0.02).
        duration: seconds per trial; default the shortest trial. Trials shorter than ``duration``
            are padded with NaN after their stop time (as NLB pads).

    Returns ``{"counts", "unit_ids", "start_time", "heldout"}``; ``heldout`` is the boolean
    ``units/heldout`` column where the file has one (NLB files mark held-out neurons), else ``None``.
    Spikes are assigned to ``floor((t - start) / bin_width)``; the sort is done once, so the cost is
    ``O(n_spikes log n_spikes + n_trials · n_bins · n_units)``.
    """
    import h5py

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"NWB file not found: {p}")
    if not (math.isfinite(bin_width) and bin_width > 0):
        raise ValueError(f"bin_width must be a positive number of seconds, got {bin_width}")
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        raise ValueError(f"{p} is not a readable HDF5/NWB file ({err})") from None
    with f:
        for key in ("units/spike_times", "units/spike_times_index", "intervals/trials/start_time",
                    "intervals/trials/stop_time"):
            if key not in f:
                raise ValueError(f"{p} has no '{key}' (not an NWB file with sorted units and trials)")
        times = np.asarray(f["units/spike_times"][()], dtype=np.float64)
        ends = np.asarray(f["units/spike_times_index"][()], dtype=np.int64)
        unit_ids = np.asarray(f["units/id"][()]) if "units/id" in f else np.arange(len(ends))
        heldout = np.asarray(f["units/heldout"][()]).astype(bool) if "units/heldout" in f else None
        start = np.asarray(f["intervals/trials/start_time"][()], dtype=np.float64)
        stop = np.asarray(f["intervals/trials/stop_time"][()], dtype=np.float64)
    if len(ends) and (np.any(np.diff(ends) < 0) or ends[-1] != len(times) or ends[0] < 0):
        raise ValueError(f"{p}: units/spike_times_index is not a non-decreasing end-offset index of spike_times")
    if np.any(stop < start) or not np.all(np.isfinite(start)):
        raise ValueError(f"{p}: trial stop_time before start_time (or non-finite times)")
    n_units = len(ends)
    unit_of = np.repeat(np.arange(n_units), np.diff(np.concatenate([[0], ends])))
    order = np.argsort(times, kind="stable")
    times, unit_of = times[order], unit_of[order]
    duration = float(np.min(stop - start)) if duration is None else float(duration)
    n_bins = int(math.floor(duration / bin_width + 1e-9))
    if n_bins < 1:
        raise ValueError(f"duration {duration} s is shorter than one bin of {bin_width} s")
    counts = np.zeros((len(start), n_bins, n_units))
    for i, (t0, t1) in enumerate(zip(start, stop)):
        lo, hi = np.searchsorted(times, [t0, t0 + n_bins * bin_width], side="left")
        b = np.floor((times[lo:hi] - t0) / bin_width).astype(np.int64).clip(0, n_bins - 1)
        np.add.at(counts[i], (b, unit_of[lo:hi]), 1.0)
        valid = int(math.floor((t1 - t0) / bin_width + 1e-9))
        if valid < n_bins:
            counts[i, valid:] = np.nan
    return {"counts": torch.as_tensor(counts).to(dtype), "unit_ids": torch.as_tensor(unit_ids),
            "start_time": torch.as_tensor(start), "heldout": None if heldout is None else torch.as_tensor(heldout)}
