"""Learning-rate schedules as picklable multiplicative factors ``step -> lr / lr_0``.

They plug into ``torch.optim.lr_scheduler.LambdaLR``; being plain objects with primitive
attributes, the scheduler's ``state_dict`` stays ``weights_only``-loadable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sciflow.training.config import TrainConfig


@dataclass(frozen=True)
class WarmupDecay:
    """``factor(step) = warmup(step) * decay(step)``.

    warmup: ``min(1, (step + 1) / warmup_steps)`` (linear, Goyal et al. 2017);
    decay ``cosine``: ``r + (1 - r) * (1 + cos(pi * s / S)) / 2`` with ``s = step - warmup``,
    ``S = total - warmup`` and floor ratio ``r`` (SGDR without restarts, Loshchilov & Hutter
    2017); ``exponential``: ``rate ** (step / decay_steps)`` (Wang et al.'s PINN convention);
    ``constant``: 1.
    """

    kind: str = "constant"
    total_steps: int = 1
    warmup_steps: int = 0
    min_ratio: float = 0.0
    rate: float = 0.9
    decay_steps: int = 1000

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "cosine", "exponential"):
            raise ValueError(f"unknown schedule {self.kind!r}; allowed: constant, cosine, exponential")

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.kind == "constant":
            return warm
        if self.kind == "exponential":
            return warm * self.rate ** (step / self.decay_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        s = min(max(step - self.warmup_steps, 0), span)
        return warm * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * s / span)))


def schedule_from_config(cfg: TrainConfig) -> WarmupDecay:
    return WarmupDecay(kind=cfg.schedule, total_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps,
                       min_ratio=cfg.min_lr_ratio, rate=cfg.decay_rate, decay_steps=cfg.decay_steps)


def steps_within(budget_s: float, elapsed_s: float, step: int, steps_per_s: float, max_steps: int,
                 margin: float = 0.95) -> int:
    """Total steps of a run that is at ``step`` after ``elapsed_s`` of its ``budget_s`` seconds and
    goes on at ``steps_per_s``: ``step + margin * rate * (budget - elapsed)``, at least ``step + 1``
    and at most ``max_steps`` (the margin absorbs the rate's noise and the final bookkeeping)."""
    if budget_s <= 0 or steps_per_s <= 0 or not 0 < margin <= 1:
        raise ValueError(f"steps_within: need budget_s > 0, steps_per_s > 0 and 0 < margin <= 1, got "
                         f"{budget_s}, {steps_per_s}, {margin}")
    more = int(margin * steps_per_s * max(budget_s - elapsed_s, 0.0))
    return max(min(max_steps, step + more), min(step + 1, max_steps))
