r"""Adaptive conformal inference (ACI; Gibbs & Candès, NeurIPS 2021) for streams of forecasts.

Split conformal (:mod:`sciflow.uq.conformal`) covers with probability :math:`1-\alpha` only while
the test points are exchangeable with the calibration set; a forecast stream under distribution
shift (a change of weather regime, a drifting sensor) breaks that. ACI keeps recalibrating
online. At step :math:`t` the interval is the split-conformal one at level :math:`\alpha_t` over
the scores seen so far (their :math:`\lceil(n+1)(1-\alpha_t)\rceil`-th smallest,
:math:`\hat q_t`); once :math:`y_t` arrives, with :math:`\mathrm{err}_t=\mathbb 1\{s_t>\hat q_t\}`,

.. math:: \alpha_{t+1} = \alpha_t + \gamma\,(\alpha - \mathrm{err}_t)

(Gibbs & Candès 2021, eq. 2), and :math:`s_t` joins the scores. For :math:`\alpha_t \le 0` the
interval is the whole line (never an error); for :math:`\alpha_t \ge 1` it is empty (always an
error; ``lower > upper``). Then, for **any** sequence of data, deterministically
(their Prop. 4.1),

.. math:: \Big|\frac1T\sum_{t=1}^T \mathrm{err}_t - \alpha\Big| \le \frac{\max(\alpha_1, 1-\alpha_1)+\gamma}{\gamma T}.

``gamma`` trades adaptation speed against the jitter of :math:`\alpha_t` (the paper uses 0.005;
larger for faster shifts). ``window`` keeps only the most recent scores (the paper's rolling
calibration set); ``None`` keeps all. ``gamma = 0`` is rolling split conformal without the
feedback, the baseline that shows what the update does.

Forecasts at a lead time learn their truth later than the next forecast is issued: with
``delay = d`` the truth of step :math:`s` is known only from step :math:`s+d+1` on, so the
interval of step :math:`t` uses the scores of steps :math:`\le t-d-1` and
:math:`\alpha_t = \alpha_1 + \gamma\sum_{s\le t-d-1}(\alpha-\mathrm{err}_s)` (hourly forecasts
at lead :math:`h` hours: ``delay = h - 1``). Then :math:`\alpha_t` stays within
:math:`[-\gamma(d+1), 1+\gamma(d+1)]` and the bound above holds with :math:`\gamma(d+1)` in
place of the :math:`\gamma` of its numerator (the same telescoping argument).

Every position of the event shape (a grid point, a lead time) is its own stream with its own
:math:`\alpha_t`, so the long-run guarantee holds per position. Any
:class:`~sciflow.uq.conformal.ConformalScore` works (absolute, normalised by the base method's
spread, CQR). Entries marked unobserved (``observed``) neither produce a score nor move
:math:`\alpha_t`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sciflow.uq.base import check_alpha
from sciflow.uq.conformal import ConformalScore, NormalizedResidual
from sciflow.uq.prediction import Prediction


def rolling_quantile(scores: Tensor, valid: Tensor, alpha: Tensor) -> Tensor:
    r"""Per position, the :math:`\lceil(n+1)(1-\alpha)\rceil`-th smallest of the valid ``scores``
    (``(n, *event)``; ``n`` counted per position), ``inf`` when that exceeds ``n`` and ``-inf``
    when it is below 1 (:math:`\alpha \ge 1`). ``alpha``: ``event``-shaped."""
    n = valid.sum(0)
    k = torch.ceil((n + 1) * (1 - alpha)).long()
    if scores.shape[0] == 0:
        q = torch.zeros(alpha.shape, dtype=scores.dtype, device=scores.device)
    else:
        ordered = scores.masked_fill(~valid, math.inf).sort(0).values
        q = ordered.gather(0, (k - 1).clamp(0, scores.shape[0] - 1).unsqueeze(0)).squeeze(0)
    return q.masked_fill(k > n, math.inf).masked_fill(k < 1, -math.inf)


@dataclass(frozen=True)
class ACIResult:
    """The intervals ACI issued, step by step: ``lower``, ``upper``, the level ``alpha_t`` each was
    issued at and ``miscovered`` (``err_t``), all ``(T, *event)``; ``observed`` (bool) marks the
    entries that had a truth (``None``: all)."""

    lower: Tensor
    upper: Tensor
    alpha_t: Tensor
    miscovered: Tensor
    observed: Tensor | None = None

    def coverage(self) -> Tensor:
        """Long-run coverage per position over its observed steps, ``event``-shaped."""
        ok = (~self.miscovered).to(self.alpha_t.dtype)
        if self.observed is None:
            return ok.mean(0)
        return (ok * self.observed).sum(0) / self.observed.sum(0).clamp_min(1)

    def summary(self) -> dict[str, float]:
        """Coverage overall and at the worst position, mean width of the finite intervals, share of
        infinite and of empty ones."""
        mask = torch.ones_like(self.miscovered) if self.observed is None else self.observed
        width = self.upper - self.lower
        finite = torch.isfinite(width) & mask
        cov = self.coverage()
        return {"coverage": float(((~self.miscovered) & mask).sum() / mask.sum().clamp_min(1)),
                "worst_position_coverage": float(cov.min()),
                "mean_width": float(width[finite & (width >= 0)].mean()) if bool(finite.any()) else math.inf,
                "infinite_fraction": float((torch.isinf(width) & (width > 0) & mask).sum() / mask.sum().clamp_min(1)),
                "empty_fraction": float(((width < 0) & mask).sum() / mask.sum().clamp_min(1))}


class AdaptiveConformal:
    """Online ACI intervals; :meth:`run` consumes a stream chunk by chunk and keeps its state
    (the scores, each position's :math:`\\alpha_t` and the last steps whose truth is still
    pending) for the next chunk.

    ``alpha``: target miscoverage; ``gamma`` (>= 0): step size of the update; ``score``: the
    nonconformity score (default :class:`~sciflow.uq.conformal.NormalizedResidual`); ``window``:
    keep only the last ``window`` scores per position (``None``: all); ``delay``: steps between
    issuing an interval and learning its truth, minus one (module docstring).
    """

    def __init__(self, alpha: float = 0.1, gamma: float = 0.005, score: ConformalScore | None = None,
                 window: int | None = None, delay: int = 0) -> None:
        self.alpha = check_alpha(alpha)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.gamma, self.window, self.delay = float(gamma), window, int(delay)
        self.score = score or NormalizedResidual()
        self.reset()

    def reset(self) -> None:
        """Forget the scores, the levels and the pending truths."""
        self.scores: Tensor | None = None  # (n, *event)
        self.valid: Tensor | None = None
        self.alpha_t: Tensor | None = None  # (*event), float64
        self.pending: list[tuple[Tensor, Tensor, Tensor]] = []  # (score, observed, err) awaiting their truth

    def _remember(self, s: Tensor, valid: Tensor) -> None:
        if self.scores is None:
            self.scores, self.valid = s, valid
        else:
            self.scores, self.valid = torch.cat([self.scores, s]), torch.cat([self.valid, valid])
        if self.window is not None and self.scores.shape[0] > self.window:
            self.scores, self.valid = self.scores[-self.window:], self.valid[-self.window:]

    def _check(self, what: str, t: Tensor, event: tuple[int, ...]) -> None:
        if tuple(t.shape[1:]) != event:
            raise ValueError(f"{what} has event shape {tuple(t.shape[1:])}, expected {event} "
                             f"(the stream's first calibration or prediction)")

    def calibrate_scores(self, scores: Tensor, observed: Tensor | None = None) -> "AdaptiveConformal":
        """Start from the scores ``(n, *event)`` of a calibration period (optional: without it the
        first intervals are infinite until enough scores have arrived)."""
        valid = torch.ones_like(scores, dtype=torch.bool) if observed is None else observed.bool()
        if valid.shape != scores.shape:
            raise ValueError(f"observed has shape {tuple(valid.shape)}, scores {tuple(scores.shape)}")
        scores = scores.masked_fill(~valid, 0.0)
        if torch.isnan(scores).any():
            raise ValueError("calibration scores contain NaN")
        if self.scores is not None:
            self._check("calibration scores", scores, tuple(self.scores.shape[1:]))
        self._remember(scores, valid)
        return self

    def run(self, predictions: Prediction, y: Tensor, observed: Tensor | None = None) -> ACIResult:
        """Issue one interval per step of ``predictions`` (time along axis 0), each from the
        scores before it, then score it against ``y`` (``(T, *event)``) and update
        :math:`\\alpha_t`. ``observed`` (bool, like ``y``): which truths exist."""
        if y.shape != predictions.mean.shape:
            raise ValueError(f"y has shape {tuple(y.shape)}, predictions {tuple(predictions.mean.shape)}")
        valid = torch.ones_like(y, dtype=torch.bool) if observed is None else observed.bool()
        if valid.shape != y.shape:
            raise ValueError(f"observed has shape {tuple(valid.shape)}, y {tuple(y.shape)}")
        s = self.score.score(predictions, y).masked_fill(~valid, 0.0)
        if torch.isnan(s).any():
            raise ValueError("scores contain NaN where the truth is observed (NaN in y or in the predictions)")
        event = tuple(y.shape[1:])
        if self.scores is not None:
            self._check("predictions", y, tuple(self.scores.shape[1:]))
        else:  # an empty memory of the right shape
            self.scores, self.valid = s[:0], valid[:0]
        if self.alpha_t is None:
            self.alpha_t = torch.full(event, self.alpha, dtype=torch.float64, device=y.device)
        qs, alphas, errs = [], [], []
        for t in range(y.shape[0]):  # the feedback makes the steps sequential
            while len(self.pending) > self.delay:  # truths that have arrived by now
                s_old, v_old, e_old = self.pending.pop(0)
                self.alpha_t = torch.where(v_old, self.alpha_t + self.gamma * (self.alpha - e_old.double()),
                                           self.alpha_t)
                self._remember(s_old[None], v_old[None])
            q = rolling_quantile(self.scores, self.valid, self.alpha_t)
            err = (s[t] > q) & valid[t]
            qs.append(q)
            alphas.append(self.alpha_t)
            errs.append(err)
            self.pending.append((s[t], valid[t], err))
        q = torch.stack(qs)
        lower, upper = self.score.interval(predictions, q)
        # alpha_t >= 1: the empty set (q = -inf gives lower = +inf > upper = -inf for every score)
        return ACIResult(lower, upper, torch.stack(alphas), torch.stack(errs), None if observed is None else valid)
