"""Callbacks: the way to customise ``fit`` without editing the loop.

Subclass :class:`Callback` and override what you need; each hook receives the live
:class:`TrainState` (set ``state.should_stop = True`` to end the run after the current step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn


@dataclass
class TrainState:
    """Mutable progress of one ``fit`` call; every checkpoint holds the step, the counters and both
    histories (``should_stop``/``stop_reason`` belong to the call that set them)."""

    step: int = 0
    skipped_steps: int = 0
    consecutive_nonfinite: int = 0
    best_val: float = float("inf")
    should_stop: bool = False
    stop_reason: str = ""
    last_checkpoint: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    val_history: list[dict[str, Any]] = field(default_factory=list)


class Callback:
    """No-op hooks, called on every rank (guard side effects with ``is_main``).

    A callback with progress of its own (counters, a best value) returns it from
    :meth:`state_dict`: it is saved in every checkpoint and handed back to :meth:`load_state_dict`
    on resume, so that a resumed run decides as the uninterrupted one would."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def on_fit_start(self, state: TrainState, model: nn.Module) -> None: ...

    def on_step_end(self, state: TrainState, logs: Mapping[str, Any]) -> None:
        """After optimizer step ``state.step`` (1-based count of completed steps)."""

    def on_eval_end(self, state: TrainState, metrics: Mapping[str, float]) -> None: ...

    def on_checkpoint(self, state: TrainState, path: str) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``val/loss`` has not improved by ``min_delta`` for ``patience`` evaluations."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best = float("inf")
        self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.bad = float(state["best"]), int(state["bad"])

    def on_eval_end(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        loss = metrics["val/loss"]
        if loss < self.best - self.min_delta:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                state.should_stop = True
                state.stop_reason = f"early stopping: val/loss did not improve for {self.patience} evaluations"
