"""What a checkpoint of ``fit`` holds, and how a run is restored from it.

Exact resume. A checkpoint holds the model, optimizer, EMA, schedule, the RNG states (python,
numpy, torch CPU and CUDA), the step, the training counters, the logged training and validation
history, the callbacks' own state (e.g. :class:`~sciflow.training.callbacks.EarlyStopping`'s
patience count) and the data position (the :class:`~sciflow.training.loader.Resumable` loader's
epoch and position). Restarting with ``resume=True`` from the checkpoint of step ``k`` replays
steps ``k+1 ...`` with identical inputs, so the final parameters equal those of an uninterrupted
run bit for bit (same device and thread count). For a plain iterable (e.g. a ``DataLoader``) the
trainer skips the batches of the current pass already consumed: exact only if that iterable's
order is deterministic.

The functions take the private trainer of :mod:`sciflow.training.trainer`; files are written
atomically by :class:`~sciflow.training.checkpoint.CheckpointManager` (rank 0 only).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Mapping

import torch

from sciflow.training.checkpoint import BEST, save_atomic
from sciflow.training.loader import Resumable
from sciflow.training.seeding import rng_state, set_rng_state

if TYPE_CHECKING:
    from sciflow.training.trainer import _Trainer


def _sciflow_version() -> str:
    try:
        from importlib.metadata import version

        return version("sciflow")
    except Exception:
        import sciflow

        return sciflow.__version__


def _provenance(tr: _Trainer) -> dict[str, Any]:
    """What every file the trainer writes says about how it was made."""
    return {"train_config": asdict(tr.cfg), "config": tr.config, "sciflow_version": _sciflow_version(),
            "torch_version": str(torch.__version__)}


def trainer_state_dict(tr: _Trainer) -> dict[str, Any]:
    """Everything exact resume needs, as a ``torch.save``-able dict."""
    s = tr.state
    data: dict[str, Any] = {"epoch": tr.data.epoch, "position": tr.data.position}
    if isinstance(tr.train, Resumable):
        data["loader"] = tr.train.state_dict()
    return {
        "step": s.step,
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": {**asdict(tr.schedule), "step": s.step},
        "max_steps": tr.max_steps,
        "time_fitted": tr.time_fitted,
        "ema": tr.ema.state_dict() if tr.ema is not None else None,
        "rng": rng_state(),
        "data": data,
        "counters": {"skipped_steps": s.skipped_steps, "consecutive_nonfinite": s.consecutive_nonfinite,
                     "best_val": s.best_val},
        "history": {"train": list(s.history), "val": list(s.val_history)},
        "callbacks": [{"type": type(cb).__qualname__, "state": cb.state_dict()} for cb in tr.callbacks],
        **_provenance(tr),
        "world_size": tr.dist.world_size,
    }


def load_trainer_state_dict(tr: _Trainer, ckpt: Mapping[str, Any]) -> None:
    """Restore ``tr`` from :func:`trainer_state_dict`'s output."""
    tr.model.load_state_dict(ckpt["model"])
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    if tr.ema is not None:
        if ckpt.get("ema") is None:
            raise ValueError("resuming with EMA on from a checkpoint written without EMA")
        tr.ema.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"])
    s = tr.state
    s.step = int(ckpt["step"])
    c = ckpt["counters"]
    s.skipped_steps, s.consecutive_nonfinite = int(c["skipped_steps"]), int(c["consecutive_nonfinite"])
    s.best_val = float(c["best_val"])
    hist = ckpt.get("history") or {}  # absent in checkpoints written before it was saved
    s.history, s.val_history = list(hist.get("train", [])), list(hist.get("val", []))
    saved = ckpt.get("callbacks") or []
    for i, cb in enumerate(tr.callbacks):
        if i < len(saved) and saved[i]["type"] == type(cb).__qualname__:
            cb.load_state_dict(saved[i]["state"])
        elif cb.state_dict():
            warnings.warn(f"resume: no saved state for callback {i} ({type(cb).__qualname__}) in the checkpoint "
                          "(callbacks changed since it was written); it starts afresh", RuntimeWarning, stacklevel=3)
    data = ckpt["data"]
    tr.data.epoch, tr.data.position = int(data["epoch"]), int(data["position"])
    if ckpt.get("time_fitted"):  # finish the schedule that was fitted to the first call's budget
        tr.time_fitted = True
        tr.max_steps = min(int(ckpt["max_steps"]), tr.cfg.max_steps)
        sched = ckpt["scheduler"]
        tr.schedule = replace(tr.schedule, total_steps=int(sched["total_steps"]),
                              decay_steps=int(sched["decay_steps"]))
    if isinstance(tr.train, Resumable):
        tr.train.load_state_dict(data["loader"])


def save_checkpoint(tr: _Trainer) -> None:
    """Write a checkpoint (rank 0, when the run has a ``run_dir``) and tell the callbacks."""
    if tr.ckpt is None or not tr.dist.is_main:
        return
    path = tr.ckpt.save(trainer_state_dict(tr))
    tr.state.last_checkpoint = str(path)
    for cb in tr.callbacks:
        cb.on_checkpoint(tr.state, str(path))


def save_best(tr: _Trainer, val_loss: float) -> None:
    """Write ``checkpoints/best.pt`` (rank 0, with a ``run_dir``): the model as it is now — during
    validation, so with the EMA average swapped in when EMA is on — with its step and validation loss."""
    if tr.ckpt is None or not tr.dist.is_main:
        return
    save_atomic({"step": tr.state.step, "val_loss": float(val_loss), "model": tr.model.state_dict(),
                 **_provenance(tr)}, tr.ckpt.directory / BEST)


def resume_latest(tr: _Trainer) -> bool:
    """Restore ``tr`` from the newest good checkpoint of its ``run_dir``; ``False`` if there is none."""
    if tr.ckpt is None:
        raise ValueError("resume=True needs a run_dir holding checkpoints/")
    found = tr.ckpt.load_latest(map_location=tr.device)
    if found is None:
        return False
    ckpt, path = found
    load_trainer_state_dict(tr, ckpt)
    tr.state.last_checkpoint = str(path)
    return True
