"""The small interface every UQ method implements, and the target convention for each batch type."""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from sciflow.data.batches import IrregularBatch, PopulationBatch, TrajectoryBatch
from sciflow.uq.prediction import Prediction


class Predictor(abc.ABC):
    """Turns a batch into a :class:`Prediction` (a predictive distribution).

    Concrete methods (sampling models, ensembles, MC dropout, HMC posteriors, conformal) are
    composed around :class:`~sciflow.models.base.SciflowModel` objects and call only their
    ``loss``/``sample``. ``alpha`` is the miscoverage of the central interval they report.
    """

    alpha: float = 0.1

    @abc.abstractmethod
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        """Predictive distribution for ``batch``; event shape = the model's prediction shape."""


def target_for(batch: Any, like: Tensor) -> Tensor:
    """The truth a prediction of shape ``like.shape`` is scored against.

    - :class:`TrajectoryBatch`: ``values`` if the prediction covers every time step, else
      ``values[:, 1:]`` (a forecast from the first state; the convention of
      :class:`~sciflow.uq.heads.PointForecaster`).
    - :class:`IrregularBatch`: ``targets``; :class:`PopulationBatch`: ``target``.

    Raises a ``ValueError`` naming both shapes when none matches.
    """
    shape = tuple(like.shape)
    if isinstance(batch, TrajectoryBatch):
        for cand in (batch.values, batch.values[:, 1:]):
            if tuple(cand.shape) == shape:
                return cand
        raise ValueError(f"prediction shape {shape} matches neither TrajectoryBatch.values "
                         f"{tuple(batch.values.shape)} nor values[:, 1:]; pass target= explicitly")
    field = {IrregularBatch: "targets", PopulationBatch: "target"}.get(type(batch))
    if field is None:
        raise TypeError(f"no default target for {type(batch).__name__}; pass target= explicitly")
    y = getattr(batch, field)
    if y is None or tuple(y.shape) != shape:
        raise ValueError(f"{type(batch).__name__}.{field} has shape "
                         f"{None if y is None else tuple(y.shape)}, prediction has {shape}")
    return y


def observed_for(batch: Any, like: Tensor) -> Tensor | None:
    """Which entries of the truth (:func:`target_for`, shape ``like.shape``) were observed: an
    :class:`IrregularBatch`'s ``target_mask`` (partly missing targets), else ``None`` (all).
    Scores, conformal calibration and likelihoods leave the unobserved entries out."""
    m = getattr(batch, "target_mask", None) if isinstance(batch, IrregularBatch) else None
    if m is None:
        return None
    if tuple(m.shape) != tuple(like.shape):
        raise ValueError(f"{type(batch).__name__}.target_mask has shape {tuple(m.shape)}, the prediction "
                         f"{tuple(like.shape)}; pass observed= explicitly (or None for all entries)")
    return m.bool()


def cat_observed(masks: list[Tensor | None], truths: list[Tensor]) -> Tensor | None:
    """The :func:`observed_for` masks of several batches concatenated along the batch axis (a
    ``None`` one: all of that batch observed); ``None`` when no batch had a mask."""
    if all(m is None for m in masks):
        return None
    return torch.cat([torch.ones_like(y, dtype=torch.bool) if m is None else m for m, y in zip(masks, truths)])


def check_point_model(model: Any, who: str) -> None:
    """``model`` is a :class:`~sciflow.models.base.SciflowModel` whose ``sample`` returns its
    (deterministic) prediction — what the weight- and feature-space methods need."""
    from sciflow.models.base import SciflowModel

    if not isinstance(model, SciflowModel):
        raise TypeError(f"{who} wraps a SciflowModel, got {type(model).__name__}")
    if model.stochastic:
        raise ValueError(f"{who} needs a point model; {type(model).__name__}.sample draws from a predictive "
                         f"distribution (stochastic = True)")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, back in the mode it had after it (errors too)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (miscoverage) must be in (0, 1), got {alpha}")
    return float(alpha)
