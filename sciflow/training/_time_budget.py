"""Wall-clock budget of ``fit`` (``max_time_s``) and time-budgeted schedules.

Time-budgeted schedules. With ``time_schedule="fit"`` the steps ``[PROBE_FROM, PROBE_TO)`` are
timed (the first ones include compilation and allocator warm-up; the per-step finiteness read
keeps the host in step with the device) and ``max_steps`` becomes the steps that fit in
``max_time_s`` (the slowest rank's count under DDP); the decay is rebuilt over them (cosine ends
there, an exponential decay keeps its total decay). The fitted length is part of the checkpoint:
a resumed run finishes the same schedule.

Under DDP each rank's "out of time" flag travels with the step's finiteness all-reduce
(:class:`~sciflow.training._step.GuardedStep`), so the ranks stop together at no extra
synchronisation; a single process reads its own clock.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from sciflow.training.config import TrainConfig
from sciflow.training.distributed import all_reduce_
from sciflow.training.schedules import WarmupDecay, steps_within

PROBE_FROM, PROBE_TO = 5, 25  # steps timed by ``time_schedule="fit"``


class TimeBudget:
    """The clock of one ``fit`` call: ``start`` (reset when the loop starts) and, under DDP, whether
    some rank was out of time at the last step's all-reduce (``out_of_time``)."""

    def __init__(self, max_time_s: float | None, distributed: bool) -> None:
        self.max_time_s = max_time_s
        self.distributed = distributed
        self.start = time.perf_counter()  # start of this call's training (``max_time_s``)
        self.out_of_time = False  # under DDP: some rank was out of time at this step's all-reduce

    def late(self) -> bool:
        """This rank's wall clock is past ``max_time_s``."""
        return time.perf_counter() - self.start > self.max_time_s

    def is_up(self) -> bool:
        """Stop for ``max_time_s``: under DDP the flag all-reduced with this step's finiteness
        (any rank out of time stops all), else this process's clock."""
        return self.out_of_time if self.distributed else self.late()

    def fitted_steps(self, t_probe: float, probe_steps: int, step: int, max_steps: int,
                     device: torch.device) -> int:
        """``time_schedule="fit"``: the total steps that fit in ``max_time_s`` at the rate measured
        since ``t_probe`` over ``probe_steps`` steps (under DDP the slowest rank's count)."""
        now = time.perf_counter()
        total = steps_within(self.max_time_s, now - self.start, step,
                             probe_steps / max(now - t_probe, 1e-9), max_steps)
        if self.distributed:  # every rank runs the slowest rank's count
            total = int(all_reduce_(torch.tensor(total, device=device, dtype=torch.int64), "min").item())
        return total


def fit_schedule(schedule: WarmupDecay, total: int, cfg: TrainConfig) -> WarmupDecay:
    """The same decay over ``total`` steps: cosine ends at ``total``, exponential keeps its total decay."""
    return replace(schedule, total_steps=total,
                   decay_steps=max(1, round(cfg.decay_steps * total / max(cfg.max_steps, 1))))
