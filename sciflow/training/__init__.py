"""sciflow.training: one trainer (``fit``), checkpoints, logging and distributed plumbing.

Models are seen only through :class:`sciflow.models.base.SciflowModel` (``model.loss(batch)``).
"""

from sciflow.training.callbacks import Callback, EarlyStopping, TrainState
from sciflow.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CorruptCheckpointWarning,
    save_atomic,
)
from sciflow.training.config import TrainConfig
from sciflow.training.distributed import DistInfo, init_distributed
from sciflow.training.ema import EMA
from sciflow.training.loader import BatchLoader, Resumable
from sciflow.training.runlog import JSONLLogger, read_jsonl
from sciflow.training.schedules import WarmupDecay, steps_within
from sciflow.training.seeding import rng_state, seed_everything, set_rng_state
from sciflow.training.trainer import FitResult, NonFiniteLossError, fit, make_optimizer

__all__ = [
    "BatchLoader", "Callback", "CheckpointError", "CheckpointManager", "CorruptCheckpointWarning",
    "DistInfo", "EMA", "EarlyStopping", "FitResult", "JSONLLogger", "NonFiniteLossError", "Resumable",
    "TrainConfig", "TrainState", "WarmupDecay", "fit", "init_distributed", "make_optimizer",
    "read_jsonl", "rng_state", "save_atomic", "seed_everything", "set_rng_state", "steps_within",
]
