"""Predictive distributions straight from ``model.sample`` (SDEs, diffusion, flow matching, VAEs)."""

from __future__ import annotations

from typing import Any

import torch

from sciflow.models.base import SciflowModel
from sciflow.uq.base import Predictor, check_alpha, evaluating
from sciflow.uq.heads import GaussianPredictive
from sciflow.uq.prediction import Prediction


class SamplingPredictor(Predictor):
    """``n_samples`` draws of ``model.sample`` summarised as a :class:`Prediction`.

    For a stochastic model these are draws of its predictive distribution; for a deterministic
    one (``model.stochastic = False``) all draws coincide and the result is a point prediction
    (``n_samples`` is then forced to 1) — the base that :class:`~sciflow.uq.conformal.SplitConformal`
    wraps around point predictors. Models declaring
    :class:`~sciflow.uq.heads.GaussianPredictive` also report their closed-form variance.
    The model is put in ``eval`` mode for prediction and restored afterwards.
    """

    def __init__(self, model: SciflowModel, n_samples: int = 100, alpha: float = 0.1) -> None:
        if not isinstance(model, SciflowModel):
            raise TypeError(f"SamplingPredictor wraps a SciflowModel, got {type(model).__name__}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.model, self.alpha = model, check_alpha(alpha)
        self.n_samples = n_samples if model.stochastic else 1

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        with evaluating(self.model):
            samples = self.model.sample(batch, self.n_samples, generator=generator)
            if isinstance(self.model, GaussianPredictive):
                mean, var = self.model.predict_mean_var(batch)
                return Prediction.from_gaussian(mean, var, self.alpha, samples=samples)
        return Prediction.from_samples(samples, self.alpha)
