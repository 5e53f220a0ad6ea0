"""``TrainConfig``: every knob of :func:`sciflow.training.fit`, as a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (defaults are the usual neural-ODE/PINN starting point).

    Optimisation
        ``optimizer``: ``adam``, ``adamw`` (decoupled weight decay, Loshchilov & Hutter 2019),
        ``sgd`` or ``lbfgs`` (full-batch quasi-Newton with strong-Wolfe line search, the PINN
        fine-tuning standard; each trainer step is one ``LBFGS.step(closure)`` of
        ``lbfgs_max_iter`` inner iterations). ``grad_clip``: max global L2 norm (``None``: off).
    Schedule
        ``lr(step) = lr * warmup(step) * decay(step)`` with linear warm-up over
        ``warmup_steps`` and ``decay`` one of ``constant``, ``cosine`` (to ``min_lr_ratio * lr``
        at ``max_steps``; Loshchilov & Hutter 2017) or ``exponential``
        (``decay_rate ** (step / decay_steps)``, the PINN convention).
    Weights
        ``ema_decay``: exponential moving average of the weights (``None``: off); evaluation
        uses the averaged weights when on.
    Numerics
        ``precision``: ``bf16`` autocasts the loss to bfloat16 on CUDA and CPU (ignored with a warning
        elsewhere; on a CPU it pays only where it has bf16 units, AVX512-BF16 or AMX: see
        ``benchmarks/train_precision.py``); ``compile``: wrap ``model.loss`` in ``torch.compile``.
        ``max_nonfinite``: consecutive skipped (NaN/Inf) steps that stop the run.
    Bookkeeping
        ``eval_every``/``log_every``/``checkpoint_every`` in optimizer steps (0: never);
        ``keep_last`` checkpoints are kept; ``keep_best`` also keeps ``checkpoints/best.pt``, the
        model at the lowest validation loss so far (its EMA average when ``ema_decay`` is set: the
        weights that were validated); ``seed`` seeds torch/numpy/python at the start;
        ``max_time_s``: also stop after this many wall-clock seconds of training in this call
        (``None``: off). ``time_schedule`` says what the budget does to the schedule: ``stop``
        only stops (the schedule runs on ``max_steps``, so a capped run ends before its decay is
        complete); ``fit`` times the steps after a short warm-up and shortens ``max_steps`` to
        the steps that fit in ``max_time_s``, with the decay over them (cosine ends there,
        exponential keeps its total decay), so a time-budgeted run completes its
        schedule (the stop stays as a backstop);
        ``device``: ``auto`` picks CUDA (the local rank's GPU under torchrun) when available.
    """

    max_steps: int = 1000
    max_time_s: float | None = None
    time_schedule: Literal["stop", "fit"] = "stop"
    optimizer: Literal["adam", "adamw", "sgd", "lbfgs"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 50
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_rate: float = 0.9
    decay_steps: int = 1000
    grad_clip: float | None = None
    ema_decay: float | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    max_nonfinite: int = 10
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 0
    keep_last: int = 3
    keep_best: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        check_choices(self)  # a misspelt schedule/optimizer built in Python fails here, as in YAML
        checks = {
            "max_steps": self.max_steps >= 0,
            "max_time_s": self.max_time_s is None or self.max_time_s > 0,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "lbfgs_max_iter": self.lbfgs_max_iter >= 1,
            "lbfgs_history": self.lbfgs_history >= 1,
            "warmup_steps": self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "decay_rate": 0 < self.decay_rate <= 1,
            "decay_steps": self.decay_steps >= 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "ema_decay": self.ema_decay is None or 0 < self.ema_decay < 1,
            "max_nonfinite": self.max_nonfinite >= 1,
            "eval_every": self.eval_every >= 0,
            "log_every": self.log_every >= 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "keep_last": self.keep_last >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TrainConfig: invalid value for {bad[0]!r}: {getattr(self, bad[0])!r}")
        if self.time_schedule == "fit" and self.max_time_s is None:
            raise ValueError("TrainConfig: time_schedule='fit' sizes the run to max_time_s: set max_time_s")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig: betas must lie in [0, 1), got {self.betas}")
