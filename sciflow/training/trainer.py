"""``fit``: the one training loop of sciflow, in plain PyTorch.

It calls nothing of a model but ``model.loss(batch) -> LossOutput`` (CONTRIBUTING.md), so any
:class:`~sciflow.models.base.SciflowModel` trains the same way: first-order optimisers or
L-BFGS, warm-up + decay schedules, gradient clipping, EMA weights, bf16 autocast (CUDA, CPU),
optional ``torch.compile``, periodic evaluation, JSONL logs, atomic checkpoints with exact
resume, a non-finite guard, and DDP under ``torchrun``.

Host synchronisation. One scalar per step is read on the host (the finiteness flag of the loss
and gradient norm, all-reduced under DDP so every rank takes the same branch); logging reads the
accumulated loss every ``log_every`` steps. Under DDP that all-reduce also carries each rank's
wall-clock flag (``max_time_s``), so the ranks stop together at no extra synchronisation.

The pieces live in private siblings, one concept each: the optimiser (:mod:`.optimizers`), one
guarded optimiser step (:mod:`._step`), the batch stream that knows its data position
(:mod:`._batch_stream`), checkpoint state and exact resume (:mod:`._resume`), the validation loss
(:mod:`._evaluation`) and the wall-clock budget with time-budgeted schedules
(:mod:`._time_budget`); this module holds the loop.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from sciflow.models.base import SciflowModel
from sciflow.training._batch_stream import BatchStream, batch_size, to_device
from sciflow.training._evaluation import evaluate_batches
from sciflow.training._resume import (load_trainer_state_dict, resume_latest, save_best, save_checkpoint,
                                      trainer_state_dict)
from sciflow.training._step import GuardedStep, LossModule
from sciflow.training._time_budget import PROBE_FROM, PROBE_TO, TimeBudget, fit_schedule
from sciflow.training.callbacks import Callback, TrainState
from sciflow.training.checkpoint import CheckpointManager
from sciflow.training.config import TrainConfig
from sciflow.training.distributed import init_distributed
from sciflow.training.ema import EMA
from sciflow.training.loader import Resumable
from sciflow.training.optimizers import make_optimizer
from sciflow.training.runlog import JSONLLogger
from sciflow.training.schedules import WarmupDecay, schedule_from_config
from sciflow.training.seeding import seed_everything

AUTOCAST_DEVICES = ("cuda", "cpu")  # the device types train.precision=bf16 autocasts on

__all__ = ["fit", "FitResult", "NonFiniteLossError", "make_optimizer", "PROBE_FROM", "PROBE_TO"]


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps produced a NaN/Inf loss or gradient."""


@dataclass
class FitResult:
    """What ``fit`` returns. ``model`` holds the last (not the EMA) weights; apply
    ``ema.copy_to(model)`` for the averaged ones."""

    model: nn.Module
    steps: int
    skipped_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    val_history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = float("inf")
    stop_reason: str = ""
    run_dir: str | None = None
    last_checkpoint: str | None = None
    ema: EMA | None = None

    @property
    def final_val(self) -> float | None:
        return self.val_history[-1]["val/loss"] if self.val_history else None


def _float_terms(terms: Mapping[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in terms.items()}


class _Trainer:
    """State and loop of one ``fit`` call (private: ``fit`` is the interface)."""

    def __init__(self, model: SciflowModel, train: Iterable[Any], val: Iterable[Any] | None,
                 cfg: TrainConfig, callbacks: Sequence[Callback], run_dir: str | Path | None,
                 config: Mapping[str, Any] | None) -> None:
        if not isinstance(model, SciflowModel):
            raise TypeError(f"fit expects a sciflow.models.base.SciflowModel, got {type(model).__name__}")
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.dist, self.device = init_distributed(cfg.device)
        self.model = model.to(self.device)
        self.train, self.val = train, val
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = dict(config or {})
        self.state = TrainState()
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        self.optimizer = make_optimizer(self.params, cfg)
        self.schedule: WarmupDecay = schedule_from_config(cfg)
        self.max_steps = cfg.max_steps  # shortened by time_schedule="fit"
        self.time_fitted = False
        self.budget = TimeBudget(cfg.max_time_s, self.dist.enabled)
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.keep_last) if self.run_dir else None
        self.logger = JSONLLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=cfg.tensorboard)
        self.data = BatchStream(train)  # the (epoch, position) of the training data, for resume
        self._eval_needs_grad = False

        loss_module: nn.Module = LossModule(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            loss_module = DDP(loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            for loader in (train, val):
                if isinstance(loader, Resumable):
                    loader.set_shard(self.dist.rank, self.dist.world_size)
        if cfg.compile:
            loss_module = torch.compile(loss_module)
        self.loss_module = loss_module
        if cfg.precision == "bf16" and self.device.type not in AUTOCAST_DEVICES:
            warnings.warn(f"train.precision=bf16 autocasts on {' and '.join(AUTOCAST_DEVICES)}; running fp32 on "
                          f"{self.device.type}", stacklevel=3)
        autocast = (cfg.precision == "bf16" and self.device.type in AUTOCAST_DEVICES)
        self.stepper = GuardedStep(model, loss_module, self.optimizer, self.params, cfg, self.dist, self.device,
                                   autocast, self.budget)

    # ---------------------------------------------------------------- checkpoints (see ._resume)
    def state_dict(self) -> dict[str, Any]:
        return trainer_state_dict(self)

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        load_trainer_state_dict(self, ckpt)

    def save_checkpoint(self) -> None:
        save_checkpoint(self)

    def maybe_resume(self) -> bool:
        return resume_latest(self)

    # ---------------------------------------------------------------- schedule
    def _set_lr(self) -> float:
        lr = self.cfg.lr * self.schedule(self.state.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def _fit_to_time(self, t_probe: float, probe_steps: int) -> None:
        """``time_schedule="fit"``: shorten ``max_steps`` and the decay to the steps that fit."""
        total = self.budget.fitted_steps(t_probe, probe_steps, self.state.step, self.cfg.max_steps, self.device)
        self.max_steps, self.time_fitted = total, True
        self.schedule = fit_schedule(self.schedule, total, self.cfg)
        self.logger.log(self.state.step, {"time_schedule/max_steps": total})

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        assert self.val is not None
        was_training = self.model.training
        self.model.eval()
        ctx = self.ema.average_parameters(self.model) if self.ema is not None else contextlib.nullcontext()
        try:
            with ctx:
                metrics, self._eval_needs_grad = evaluate_batches(self.model, self.val, self.device,
                                                                  self._eval_needs_grad)
                if self.cfg.keep_best and metrics["val/loss"] < self.state.best_val:  # NaN: never
                    save_best(self, metrics["val/loss"])
        finally:
            self.model.train(was_training)
        s = self.state
        s.best_val = min(s.best_val, metrics["val/loss"])
        record = {"step": s.step, **metrics}
        s.val_history.append(record)
        self.logger.log(s.step, metrics)
        for cb in self.callbacks:
            cb.on_eval_end(s, metrics)
        return metrics

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool) -> FitResult:
        cfg, s = self.cfg, self.state
        seed_everything(cfg.seed)
        if resume:
            self.maybe_resume()
        for cb in self.callbacks:
            cb.on_fit_start(s, self.model)
        from tqdm.auto import tqdm

        bar = tqdm(total=self.max_steps, initial=s.step, disable=not (cfg.progress and self.dist.is_main),
                   desc="train", dynamic_ncols=True, leave=False)
        step_fn = self.stepper.lbfgs if cfg.optimizer == "lbfgs" else self.stepper.first_order
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        n_logged, samples, t0 = 0, 0, time.perf_counter()
        self.budget.start, t_probe = t0, None
        probe_from = s.step + PROBE_FROM  # a resumed call warms up again before it is timed
        batches = iter(self.data)
        self.model.train()
        try:
            while s.step < self.max_steps and not s.should_stop:
                if cfg.time_schedule == "fit" and not self.time_fitted:
                    if s.step == probe_from:
                        t_probe = time.perf_counter()
                    elif s.step == probe_from + PROBE_TO - PROBE_FROM and t_probe is not None:
                        self._fit_to_time(t_probe, PROBE_TO - PROBE_FROM)
                        bar.total = self.max_steps
                        if s.step >= self.max_steps:
                            break
                batch = to_device(next(batches), self.device)
                lr = self._set_lr()
                out, gnorm, ok = step_fn(batch)
                s.step += 1
                samples += batch_size(batch) * self.dist.world_size
                if ok:
                    s.consecutive_nonfinite = 0
                    if self.ema is not None:
                        self.ema.update(self.model)
                    loss_sum += out.total.detach().double()
                    n_logged += 1
                else:
                    s.skipped_steps += 1
                    s.consecutive_nonfinite += 1
                    terms = _float_terms(out.terms)
                    info = {"nonfinite/loss": float(out.total.detach()), "nonfinite/grad_norm": float(gnorm),
                            **{f"nonfinite/terms/{k}": v for k, v in terms.items()}}
                    self.logger.log(s.step, info)
                    if s.consecutive_nonfinite >= cfg.max_nonfinite:
                        bad = [k for k, v in terms.items() if not math.isfinite(v)]
                        raise NonFiniteLossError(
                            f"stopping at step {s.step}: {s.consecutive_nonfinite} consecutive steps with a "
                            f"non-finite loss or gradient (train.max_nonfinite={cfg.max_nonfinite}); "
                            f"last loss={info['nonfinite/loss']}, grad_norm={info['nonfinite/grad_norm']}, "
                            f"terms={terms}" + (f"; non-finite terms: {bad}" if bad else ""))
                logs: dict[str, Any] = {}
                if cfg.log_every and (s.step % cfg.log_every == 0 or s.step == self.max_steps):
                    dt = max(time.perf_counter() - t0, 1e-9)
                    mean_loss = (loss_sum / max(n_logged, 1)).item() if n_logged else float("nan")
                    logs = {"train/loss": mean_loss, "lr": lr, "grad_norm": float(gnorm),
                            "samples_per_s": samples / dt, "steps_per_s": (n_logged + 0.0) / dt,
                            "skipped_steps": s.skipped_steps,
                            **{f"train/terms/{k}": v for k, v in _float_terms(out.terms).items()}}
                    s.history.append({"step": s.step, **logs})
                    self.logger.log(s.step, logs)
                    bar.set_postfix(loss=f"{mean_loss:.3e}", samples_s=f"{samples / dt:.0f}")
                    loss_sum.zero_()
                    n_logged, samples, t0 = 0, 0, time.perf_counter()
                bar.update(1)
                if self.val is not None and cfg.eval_every and s.step % cfg.eval_every == 0:
                    self.evaluate()
                if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                for cb in self.callbacks:
                    cb.on_step_end(s, logs)
                if cfg.max_time_s is not None and self.budget.is_up():
                    s.should_stop = True
                    s.stop_reason = s.stop_reason or f"max_time_s={cfg.max_time_s:g} reached"
        finally:
            bar.close()
        if self.val is not None and (not s.val_history or s.val_history[-1]["step"] != s.step):
            self.evaluate()
        if self.ckpt is not None and (s.last_checkpoint is None or not s.last_checkpoint.endswith(f"{s.step:08d}.pt")):
            self.save_checkpoint()
        for cb in self.callbacks:
            cb.on_fit_end(s)
        self.logger.close()
        if s.should_stop and not s.stop_reason:
            s.stop_reason = "stopped by a callback"
        return FitResult(model=self.model, steps=s.step, skipped_steps=s.skipped_steps, history=s.history,
                         val_history=s.val_history, best_val=s.best_val,
                         stop_reason=s.stop_reason or "max_steps reached",
                         run_dir=str(self.run_dir) if self.run_dir else None,
                         last_checkpoint=s.last_checkpoint, ema=self.ema)


def fit(
    model: SciflowModel,
    train: Iterable[Any],
    val: Iterable[Any] | None = None,
    cfg: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` by minimising ``model.loss(batch).total`` over ``train``.

    Args:
        model: any :class:`~sciflow.models.base.SciflowModel`; moved to ``cfg.device``.
        train: iterable of batch dataclasses, cycled until ``cfg.max_steps`` optimizer steps.
            A :class:`~sciflow.training.loader.BatchLoader` (or any
            :class:`~sciflow.training.loader.Resumable`) gives exact resume and DDP sharding.
        val: optional iterable evaluated every ``cfg.eval_every`` steps and at the end
            (mean of ``loss`` weighted by batch size; EMA weights when EMA is on).
        cfg: :class:`~sciflow.training.config.TrainConfig`.
        callbacks: :class:`~sciflow.training.callbacks.Callback` instances.
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go (rank 0); ``None``: no files.
        resume: continue from the newest good checkpoint in ``run_dir`` (fresh start if none).
        config: the experiment configuration (primitives) to store in checkpoints.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised here, the loss is
    wrapped in DDP and ``Resumable`` loaders are sharded so the step equals the single-process
    step on the same global batch.
    """
    trainer = _Trainer(model, train, val, cfg or TrainConfig(), callbacks, run_dir, config)
    return trainer.run(resume)
