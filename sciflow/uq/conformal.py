r"""Split conformal prediction around any :class:`~sciflow.uq.base.Predictor`.

Split (inductive) conformal (Papadopoulos et al. 2002; Lei et al. 2018, Alg. 2): with
nonconformity scores :math:`s_i = s(\hat P(x_i), y_i)` on :math:`n` calibration points
exchangeable with the test point, take :math:`\hat q` the
:math:`k=\lceil (n+1)(1-\alpha)\rceil`-th smallest score; then
:math:`\Pr(s_{n+1}\le\hat q)\ge 1-\alpha` (and :math:`< 1-\alpha+1/(n+1)` without ties), so the
interval :math:`\{y: s(\hat P(x),y)\le \hat q\}` covers with probability at least :math:`1-\alpha`.
If :math:`k>n` the interval is infinite.

Scores (each a small object; write your own by subclassing :class:`ConformalScore`):

- :class:`AbsoluteResidual`: :math:`|y-\mu|`, interval :math:`\mu\pm\hat q` (any point predictor).
- :class:`NormalizedResidual`: :math:`|y-\mu|/\sigma` (Papadopoulos et al. 2008; Lei et al. 2018
  §5.2 "locally weighted"), interval :math:`\mu\pm\hat q\sigma`, :math:`\sigma` from the base
  method (ensemble spread, MC-dropout std, Gaussian head, sample std).
- :class:`QuantileScore` (CQR, Romano et al. 2019, eq. 6): :math:`\max(l-y, y-u)` around the base
  method's own interval, result :math:`[l-\hat q, u+\hat q]`.

Multi-output predictions ``(batch, *event)``: ``separate_dims`` lists the event axes (indices into
the prediction shape, ``>= 1``) that get their own :math:`\hat q`; the others are pooled. The
default (``None``) calibrates every position separately (coverage guaranteed per position); for a
forecast ``(batch, time, *space)`` use ``separate_dims=(1,)`` for per-horizon intervals pooled
over space (Stankeviciute et al. 2021 calibrate each horizon separately, with a Bonferroni
correction for joint coverage — pass ``alpha / horizon`` for that).
"""

from __future__ import annotations

import abc
import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from sciflow.uq.base import Predictor, cat_observed, check_alpha, observed_for, target_for
from sciflow.uq.prediction import Prediction


class ConformalScore(abc.ABC):
    """Nonconformity score and its inversion into an interval."""

    @abc.abstractmethod
    def score(self, prediction: Prediction, y: Tensor) -> Tensor:
        """Scores, shape of ``y``; larger means less conforming."""

    @abc.abstractmethod
    def interval(self, prediction: Prediction, q: Tensor) -> tuple[Tensor, Tensor]:
        """``{y : score <= q}`` as ``(lower, upper)``."""


class AbsoluteResidual(ConformalScore):
    def score(self, prediction: Prediction, y: Tensor) -> Tensor:
        return (y - prediction.mean).abs()

    def interval(self, prediction: Prediction, q: Tensor) -> tuple[Tensor, Tensor]:
        return prediction.mean - q, prediction.mean + q


class NormalizedResidual(ConformalScore):
    """``|y - mean| / (std + eps)``; needs a base method that reports a spread."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def _scale(self, prediction: Prediction) -> Tensor:
        try:
            return prediction.std + self.eps
        except ValueError as err:
            raise ValueError(f"NormalizedResidual needs a predictive spread: {err}; use AbsoluteResidual "
                             "for point predictors") from None

    def score(self, prediction: Prediction, y: Tensor) -> Tensor:
        return (y - prediction.mean).abs() / self._scale(prediction)

    def interval(self, prediction: Prediction, q: Tensor) -> tuple[Tensor, Tensor]:
        s = self._scale(prediction)
        return prediction.mean - q * s, prediction.mean + q * s


class QuantileScore(ConformalScore):
    """Conformalised quantile regression around the base method's own ``[lower, upper]``."""

    def _check(self, prediction: Prediction) -> None:
        if not prediction.has_interval:
            raise ValueError("QuantileScore needs a base prediction with lower/upper")

    def score(self, prediction: Prediction, y: Tensor) -> Tensor:
        self._check(prediction)
        return torch.maximum(prediction.lower - y, y - prediction.upper)

    def interval(self, prediction: Prediction, q: Tensor) -> tuple[Tensor, Tensor]:
        self._check(prediction)
        return prediction.lower - q, prediction.upper + q


def conformal_quantile(scores: Tensor, alpha: float, observed: Tensor | None = None) -> Tensor:
    r"""The :math:`\lceil (n+1)(1-\alpha)\rceil`-th smallest of ``scores`` along axis 0 (``inf`` if
    that exceeds :math:`n`); shape ``scores.shape[1:]``. ``observed`` (bool, like ``scores``): only
    those scores count, each column with its own :math:`n` (missing targets are not exchangeable
    calibration points; they are left out, not filled)."""
    n = scores.shape[0]
    if n < 1:
        raise ValueError("no calibration scores")
    if observed is None:
        k = math.ceil((n + 1) * (1 - alpha))
        if k > n:
            return torch.full(scores.shape[1:], math.inf, dtype=scores.dtype, device=scores.device)
        return torch.kthvalue(scores, k, dim=0).values
    if observed.shape != scores.shape:
        raise ValueError(f"observed has shape {tuple(observed.shape)}, scores {tuple(scores.shape)}")
    n_obs = observed.sum(0)  # per column
    k = torch.ceil((n_obs + 1) * (1 - alpha)).long()
    ordered = scores.masked_fill(~observed, math.inf).sort(0).values
    q = ordered.gather(0, (k - 1).clamp(0, n - 1).unsqueeze(0)).squeeze(0)
    return q.masked_fill(k > n_obs, math.inf)


class SplitConformal(Predictor):
    """Split conformal intervals around ``base``; call :meth:`calibrate` before :meth:`predict`.

    The returned :class:`Prediction` keeps the base mean, samples and variance and replaces the
    interval by the conformal one (coverage ``>= 1 - alpha`` marginally over exchangeable data).
    """

    def __init__(self, base: Predictor, alpha: float = 0.1, score: ConformalScore | None = None,
                 separate_dims: Sequence[int] | None = None) -> None:
        if not isinstance(base, Predictor):
            raise TypeError(f"SplitConformal wraps a Predictor, got {type(base).__name__}")
        self.base, self.alpha = base, check_alpha(alpha)
        self.score = score or NormalizedResidual()
        self.separate_dims = None if separate_dims is None else tuple(int(d) for d in separate_dims)
        if self.separate_dims is not None and any(d < 1 for d in self.separate_dims):
            raise ValueError(f"separate_dims index event axes of the prediction (>= 1), got {self.separate_dims}")
        self.q: Tensor | None = None
        self.n_calibration = 0

    def _layout(self, ndim: int) -> tuple[list[int], list[int]]:
        sep = list(range(1, ndim)) if self.separate_dims is None else sorted(self.separate_dims)
        if any(d >= ndim for d in sep):
            raise ValueError(f"separate_dims {tuple(sep)} out of range for a {ndim}-axis prediction")
        pooled = [d for d in range(1, ndim) if d not in sep]
        return sep, pooled

    def calibrate_scores(self, scores: Tensor, observed: Tensor | None = None) -> Tensor:
        """Set :math:`\\hat q` from nonconformity scores ``(n, *event)`` (batch axis first);
        ``observed`` (bool, like ``scores``): only those count (:func:`conformal_quantile`)."""
        if observed is not None:
            scores = scores.masked_fill(~observed, 0.0)  # values there are ignored (may be NaN)
        if torch.isnan(scores).any():
            raise ValueError("calibration scores contain NaN")
        sep, pooled = self._layout(scores.ndim)

        def flatten(t: Tensor) -> Tensor:
            return t.permute(0, *pooled, *sep).reshape(-1, *[scores.shape[d] for d in sep])

        flat = flatten(scores)
        q = conformal_quantile(flat, self.alpha, None if observed is None else flatten(observed))
        shape = [1] + [scores.shape[d] if d in sep else 1 for d in range(1, scores.ndim)]
        self.q = q.reshape(shape[1:])
        # the fewest scores any quantile rests on
        self.n_calibration = flat.shape[0] if observed is None else int(flatten(observed).sum(0).min())
        return self.q

    def calibrate(self, batches: Iterable[Any], target: Callable[[Any, Tensor], Tensor] = target_for, *,
                  observed: Callable[[Any, Tensor], Tensor | None] | None = observed_for,
                  generator: torch.Generator | None = None) -> "SplitConformal":
        """Score the base predictor on held-out ``batches`` (never the training data) and set
        :math:`\\hat q`. ``target(batch, mean)`` gives the truth (default :func:`target_for`),
        ``observed(batch, mean)`` which of its entries count (default :func:`observed_for`: an
        irregular batch's ``target_mask``; ``None``: all)."""
        scores, ys, masks = [], [], []
        for batch in batches:
            pred = self.base.predict(batch, generator=generator)
            ys.append(target(batch, pred.mean))
            masks.append(None if observed is None else observed(batch, pred.mean))
            scores.append(self.score.score(pred, ys[-1]))
        if not scores:
            raise ValueError("calibration batches are empty")
        self.calibrate_scores(torch.cat(scores), cat_observed(masks, ys))
        return self

    def wrap(self, prediction: Prediction) -> Prediction:
        """Conformal interval around an already computed base ``prediction``."""
        if self.q is None:
            raise RuntimeError("SplitConformal.calibrate(...) must be called before predict")
        if self.q.ndim != prediction.mean.ndim - 1 or any(
                a not in (1, b) for a, b in zip(self.q.shape, prediction.mean.shape[1:])):
            raise ValueError(f"calibrated quantile shape {tuple(self.q.shape)} does not fit "
                             f"prediction event shape {tuple(prediction.mean.shape[1:])}")
        lo, hi = self.score.interval(prediction, self.q.to(prediction.mean.device))
        return Prediction(prediction.mean, lo, hi, prediction.samples, prediction.variance, self.alpha)

    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        return self.wrap(self.base.predict(batch, generator=generator))
