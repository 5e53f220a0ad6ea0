"""Deterministic stand-ins for trained models, shared by the evaluation tests."""

from __future__ import annotations

import torch

from sciflow.data.batches import IrregularBatch
from sciflow.models.base import SciflowModel


class Constant(SciflowModel):
    """Predicts ``value`` at every position of the whole window (``TrajectoryBatch``) or of the
    targets (``IrregularBatch``)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def loss(self, batch):
        raise NotImplementedError

    def sample(self, batch, n_samples=1, *, generator=None):
        like = batch.targets if isinstance(batch, IrregularBatch) else batch.values
        return torch.full((n_samples, *like.shape), self.value)
