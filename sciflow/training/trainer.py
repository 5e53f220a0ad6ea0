"""``fit``: the one training loop of sciflow, in plain PyTorch.

It calls nothing of a model but ``model.loss(batch) -> LossOutput`` (CONTRIBUTING.md), so any
:class:`~sciflow.models.base.SciflowModel` trains the same way: first-order optimisers or
L-BFGS, warm-up + decay schedules, gradient clipping, EMA weights, bf16 autocast on CUDA,
optional ``torch.compile``, periodic evaluation, JSONL logs, atomic checkpoints with exact
resume, a non-finite guard, and DDP under ``torchrun``.

Exact resume. A checkpoint holds the model, optimizer, EMA, schedule, the RNG states (python,
numpy, torch CPU and CUDA), the step, the training counters and the data position (the
:class:`~sciflow.training.loader.Resumable` loader's epoch and position). Restarting with
``resume=True`` from the checkpoint of step ``k`` replays steps ``k+1 ...`` with identical
inputs, so the final parameters equal those of an uninterrupted run bit for bit (same
device and thread count). For a plain iterable (e.g. a ``DataLoader``) the trainer skips the
batches of the current pass already consumed: exact only if that iterable's order is
deterministic.

Host synchronisation. One scalar per step is read on the host (the finiteness flag of the loss
and gradient norm, all-reduced under DDP so every rank takes the same branch); logging reads the
accumulated loss every ``log_every`` steps. Under DDP that all-reduce also carries each rank's
wall-clock flag (``max_time_s``), so the ranks stop together at no extra synchronisation.

Time-budgeted schedules. With ``time_schedule="fit"`` the steps ``[PROBE_FROM, PROBE_TO)`` are
timed (the first ones include compilation and allocator warm-up; the per-step finiteness read
keeps the host in step with the device) and ``max_steps`` becomes the steps that fit in
``max_time_s`` (the slowest rank's count under DDP); the decay is rebuilt over them (cosine ends
there, an exponential decay keeps its total decay). The fitted length is part of the checkpoint:
a resumed run finishes the same schedule.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from sciflow.models.base import LossOutput, SciflowModel
from sciflow.training.callbacks import Callback, TrainState
from sciflow.training.checkpoint import CheckpointManager
from sciflow.training.config import TrainConfig
from sciflow.training.distributed import all_reduce_, init_distributed
from sciflow.training.ema import EMA
from sciflow.training.loader import Resumable
from sciflow.training.runlog import JSONLLogger
from sciflow.training.schedules import WarmupDecay, schedule_from_config, steps_within
from sciflow.training.seeding import rng_state, seed_everything, set_rng_state


PROBE_FROM, PROBE_TO = 5, 25  # steps timed by ``time_schedule="fit"``


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


class _LossModule(nn.Module):
    """Routes ``forward`` to ``model.loss`` so DDP's gradient hooks and ``torch.compile``
    see the loss computation."""

    def __init__(self, model: SciflowModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> LossOutput:
        return self.model.loss(batch)


def _to_device(batch: Any, device: torch.device) -> Any:
    for v in vars(batch).values() if hasattr(batch, "__dict__") else ():
        if isinstance(v, Tensor):
            return batch if v.device == device else batch.to(device)
    return batch.to(device)


def _batch_size(batch: Any) -> int:
    try:
        return len(batch)
    except TypeError:
        return 1


def make_optimizer(params: Sequence[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lbfgs":
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=cfg.lbfgs_max_iter,
                                 history_size=cfg.lbfgs_history, line_search_fn="strong_wolfe")
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: adam, adamw, sgd, lbfgs")


def _sciflow_version() -> str:
    try:
        from importlib.metadata import version

        return version("sciflow")
    except Exception:
        import sciflow

        return sciflow.__version__


def _float_terms(terms: Mapping[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in terms.items()}


class _Trainer:
    """State and steps of one ``fit`` call (private: ``fit`` is the interface)."""

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
        self._t_fit = time.perf_counter()  # start of this call's training (``max_time_s``)
        self._out_of_time = False  # under DDP: some rank was out of time at this step's all-reduce
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", cfg.keep_last) if self.run_dir else None
        self.logger = JSONLLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=cfg.tensorboard)
        self.data_epoch = 0
        self.data_position = 0
        self._eval_needs_grad = False

        loss_module: nn.Module = _LossModule(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            loss_module = DDP(loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            for loader in (train, val):
                if isinstance(loader, Resumable):
                    loader.set_shard(self.dist.rank, self.dist.world_size)
        if cfg.compile:
            loss_module = torch.compile(loss_module)
        self.loss_module = loss_module
        if cfg.precision == "bf16" and self.device.type != "cuda":
            warnings.warn("train.precision=bf16 autocasts on CUDA only; running fp32 on "
                          f"{self.device.type}", stacklevel=3)
        self._autocast = (cfg.precision == "bf16" and self.device.type == "cuda")

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        data: dict[str, Any] = {"epoch": self.data_epoch, "position": self.data_position}
        if isinstance(self.train, Resumable):
            data["loader"] = self.train.state_dict()
        return {
            "step": s.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {**asdict(self.schedule), "step": s.step},
            "max_steps": self.max_steps,
            "time_fitted": self.time_fitted,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "data": data,
            "counters": {"skipped_steps": s.skipped_steps, "consecutive_nonfinite": s.consecutive_nonfinite,
                         "best_val": s.best_val},
            "train_config": asdict(self.cfg),
            "config": self.config,
            "sciflow_version": _sciflow_version(),
            "torch_version": str(torch.__version__),
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None:
            if ckpt.get("ema") is None:
                raise ValueError("resuming with EMA on from a checkpoint written without EMA")
            self.ema.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        s = self.state
        s.step = int(ckpt["step"])
        c = ckpt["counters"]
        s.skipped_steps, s.consecutive_nonfinite = int(c["skipped_steps"]), int(c["consecutive_nonfinite"])
        s.best_val = float(c["best_val"])
        data = ckpt["data"]
        self.data_epoch, self.data_position = int(data["epoch"]), int(data["position"])
        if ckpt.get("time_fitted"):  # finish the schedule that was fitted to the first call's budget
            self.time_fitted = True
            self.max_steps = min(int(ckpt["max_steps"]), self.cfg.max_steps)
            sched = ckpt["scheduler"]
            self.schedule = replace(self.schedule, total_steps=int(sched["total_steps"]),
                                    decay_steps=int(sched["decay_steps"]))
        if isinstance(self.train, Resumable):
            self.train.load_state_dict(data["loader"])

    def save_checkpoint(self) -> None:
        if self.ckpt is None or not self.dist.is_main:
            return
        path = self.ckpt.save(self.state_dict())
        self.state.last_checkpoint = str(path)
        for cb in self.callbacks:
            cb.on_checkpoint(self.state, str(path))

    def maybe_resume(self) -> bool:
        if self.ckpt is None:
            raise ValueError("resume=True needs a run_dir holding checkpoints/")
        found = self.ckpt.load_latest(map_location=self.device)
        if found is None:
            return False
        ckpt, path = found
        self.load_state_dict(ckpt)
        self.state.last_checkpoint = str(path)
        return True

    # ---------------------------------------------------------------- data
    def _batches(self):
        """Endless stream of training batches, tracking (epoch, position) for resume."""
        skip = 0 if isinstance(self.train, Resumable) else self.data_position
        empty_passes = 0
        while True:
            it = iter(self.train)
            got = False
            for batch in it:
                if skip:  # plain iterables: fast-forward past the batches consumed before resume
                    skip -= 1
                    continue
                got = True
                self.data_position += 1
                yield batch
            # a pass may be empty once (resumed exactly at an epoch end), never twice
            empty_passes = 0 if got else empty_passes + 1
            if empty_passes >= 2:
                raise ValueError("the training iterable yielded no batch")
            self.data_epoch += 1
            self.data_position = 0

    # ---------------------------------------------------------------- steps
    def _set_lr(self) -> float:
        lr = self.cfg.lr * self.schedule(self.state.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def _loss(self, batch: Any) -> LossOutput:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self._autocast else contextlib.nullcontext()
        with ctx:
            out = self.loss_module(batch)
        if not isinstance(out, LossOutput):
            raise TypeError(f"{type(self.model).__name__}.loss must return LossOutput, got {type(out).__name__}")
        return out

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.nn.utils.get_total_norm(grads)
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.cfg.grad_clip, norm)
        return norm

    def _first_order_step(self, batch: Any) -> tuple[LossOutput, Tensor, bool]:
        self.optimizer.zero_grad(set_to_none=True)
        out = self._loss(batch)
        out.total.backward()  # also when non-finite: DDP ranks must all reach the all-reduce
        gnorm = self._grad_norm()
        ok = self._finite(out.total, gnorm)
        if ok:
            self.optimizer.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        return out, gnorm, ok

    def _lbfgs_step(self, batch: Any) -> tuple[LossOutput, Tensor, bool]:
        last: dict[str, Any] = {}

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            out = self._loss(batch)
            out.total.backward()
            last["out"], last["gnorm"] = out, self._grad_norm()
            loss = out.total.detach().clone()
            if self.dist.enabled:  # line-search decisions must agree across ranks
                all_reduce_(loss)
                loss /= self.dist.world_size
            return loss

        backup = [p.detach().clone() for p in self.params]
        loss = self.optimizer.step(closure)
        params_norm = torch.stack([p.detach().float().norm() for p in self.params]).sum()
        ok = self._finite(torch.as_tensor(loss), last["gnorm"], params_norm)
        if not ok:  # undo the iterations and forget the poisoned curvature pairs
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)
            self.optimizer.state.clear()
        return last["out"], last["gnorm"], ok

    def _late(self) -> bool:
        """This rank's wall clock is past ``max_time_s``."""
        return time.perf_counter() - self._t_fit > self.cfg.max_time_s

    def _time_is_up(self) -> bool:
        """Stop for ``max_time_s``: under DDP the flag all-reduced with this step's finiteness
        (any rank out of time stops all), else this process's clock."""
        return self._out_of_time if self.dist.enabled else self._late()

    def _fit_to_time(self, t_probe: float, probe_steps: int) -> None:
        """``time_schedule="fit"``: shorten ``max_steps`` and the decay to the steps that fit."""
        now = time.perf_counter()
        total = steps_within(self.cfg.max_time_s, now - self._t_fit, self.state.step,
                             probe_steps / max(now - t_probe, 1e-9), self.cfg.max_steps)
        if self.dist.enabled:  # every rank runs the slowest rank's count
            total = int(all_reduce_(torch.tensor(total, device=self.device, dtype=torch.int64), "min").item())
        self.max_steps, self.time_fitted = total, True
        # the same decay over fewer steps: cosine ends at ``total``, exponential keeps its total decay
        self.schedule = replace(self.schedule, total_steps=total,
                                decay_steps=max(1, round(self.cfg.decay_steps * total / max(self.cfg.max_steps, 1))))
        self.logger.log(self.state.step, {"time_schedule/max_steps": total})

    def _finite(self, *scalars: Tensor) -> bool:
        """All ``scalars`` finite on every rank (one all-reduce, which under DDP with ``max_time_s``
        also sets ``_out_of_time`` from every rank's clock)."""
        bad = (~torch.stack([torch.isfinite(s.detach().float()).all() for s in scalars]).all()).to(torch.int32)
        if self.dist.enabled and self.cfg.max_time_s is not None:
            flags = torch.stack([bad, torch.tensor(int(self._late()), device=bad.device, dtype=torch.int32)])
            bad_any, late_any = all_reduce_(flags, "max").tolist()
            self._out_of_time = bool(late_any)
            return not bad_any
        return not bool(all_reduce_(bad, "max").item())

    # ---------------------------------------------------------------- evaluation
    def _eval_batches(self, batches: Iterable[Any]) -> dict[str, float]:
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        terms: dict[str, Tensor] = {}
        for batch in batches:
            batch = _to_device(batch, self.device)
            grad_ctx = torch.enable_grad() if self._eval_needs_grad else torch.no_grad()
            try:
                with grad_ctx:
                    out = self.model.loss(batch)
            except RuntimeError as e:
                # losses with derivatives w.r.t. inputs (PINN residuals) need autograd in eval
                if self._eval_needs_grad or "grad" not in str(e):
                    raise
                self._eval_needs_grad = True
                with torch.enable_grad():
                    out = self.model.loss(batch)
            n = _batch_size(batch)
            total += out.total.detach().double() * n
            count += n
            for k, v in out.terms.items():
                terms[k] = terms.get(k, torch.zeros((), device=self.device, dtype=torch.float64)) \
                    + v.detach().double().mean() * n
        keys = sorted(terms)
        packed = torch.stack([total, count, *[terms[k] for k in keys]])
        all_reduce_(packed)
        n = packed[1].item()
        if n == 0:
            raise ValueError("the validation iterable yielded no batch")
        vals = (packed / n).tolist()
        metrics = {"val/loss": vals[0]}
        metrics.update({f"val/terms/{k}": vals[2 + i] for i, k in enumerate(keys)})
        return metrics

    def evaluate(self) -> dict[str, float]:
        assert self.val is not None
        was_training = self.model.training
        self.model.eval()
        ctx = self.ema.average_parameters(self.model) if self.ema is not None else contextlib.nullcontext()
        try:
            with ctx:
                metrics = self._eval_batches(self.val)
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
        step_fn = self._lbfgs_step if cfg.optimizer == "lbfgs" else self._first_order_step
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        n_logged, samples, t0 = 0, 0, time.perf_counter()
        self._t_fit, t_probe = t0, None
        probe_from = s.step + PROBE_FROM  # a resumed call warms up again before it is timed
        batches = self._batches()
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
                batch = _to_device(next(batches), self.device)
                lr = self._set_lr()
                out, gnorm, ok = step_fn(batch)
                s.step += 1
                samples += _batch_size(batch) * self.dist.world_size
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
                if cfg.max_time_s is not None and self._time_is_up():
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
