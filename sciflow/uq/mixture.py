"""An equal-weight mixture of predictors: their predictive draws pooled.

MultiSWAG (Wilson & Izmailov, NeurIPS 2020, "Bayesian deep learning and a probabilistic
perspective of generalization", Sec. 4) is the mixture of SWAG posteriors around independently
trained networks — a deep ensemble whose members each carry their basin's spread:
``MixturePredictor([SWAG(m).fit(...) for m in ensemble.members])``. The same pools several HMC
runs, several Laplace approximations, or methods of different kinds.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from sciflow.uq.base import Predictor, check_alpha
from sciflow.uq.prediction import Prediction

__all__ = ["MixturePredictor"]


class MixturePredictor(Predictor):
    """Each component predicts; their ``samples`` (every component must give draws) are pooled
    with equal weight: each contributes as many draws as the one with the fewest (its first
    ones). The interval is the pooled draws' empirical one at ``alpha``."""

    def __init__(self, components: Sequence[Predictor], alpha: float = 0.1) -> None:
        components = list(components)
        if len(components) < 2:
            raise ValueError(f"a mixture needs >= 2 predictors, got {len(components)}")
        for c in components:
            if not isinstance(c, Predictor):
                raise TypeError(f"mixture components must be Predictors, got {type(c).__name__}")
        self.components, self.alpha = components, check_alpha(alpha)

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        preds = [c.predict(batch, generator=generator) for c in self.components]
        for i, p in enumerate(preds):
            if p.samples is None:
                raise ValueError(f"mixture component {i} ({type(self.components[i]).__name__}) gave no predictive "
                                 f"draws; every component must return samples")
        n = min(p.samples.shape[0] for p in preds)
        return Prediction.from_samples(torch.cat([p.samples[:n] for p in preds]), self.alpha)
