r"""Online quantile tracking (Angelopoulos, Candès & Tibshirani, NeurIPS 2023, "Conformal PID
control for time series prediction"): the proportional part of their conformal PID
controller, for streams of forecasts under distribution shift.

ACI (:mod:`sciflow.uq.adaptive_conformal`) moves the *level* :math:`\alpha_t` and reads the
interval off the past scores, so after a run of misses :math:`\alpha_t \le 0` and the interval is
the whole line. Quantile tracking moves the *threshold* itself, by online gradient descent on the
pinball loss: with :math:`\mathrm{err}_t = \mathbb 1\{s_t > q_t\}`,

.. math:: q_{t+1} = q_t + \eta\,(\mathrm{err}_t - \alpha)

Intervals are always finite; if every score lies in an interval of length
:math:`B`, then for **any** sequence (their Prop. 1)

.. math:: \Big|\frac1T\sum_{t=1}^T \mathrm{err}_t - \alpha\Big| \le \frac{B + \eta}{\eta T}.

With feedback delayed by ``delay = d`` steps (a forecast at a lead time; the truth of step
:math:`s` known from step :math:`s+d+1` on), :math:`q_t` can overshoot by :math:`d+1` steps
instead of one, and the same telescoping argument gives :math:`(B + \eta(d+1))/(\eta T)`.

``eta`` is in the units of the scores. ``lr`` sets it relative to each position's calibration
scores instead, :math:`\eta = \mathrm{lr}\cdot(\max - \min)` of them (a choice of ours, fixed
after calibration so that the bound above holds; the paper's experiments scale ``lr`` by the
largest recent score, which adapts :math:`\eta` as the stream goes). The stream starts from the
split-conformal quantile of the calibration scores (their code starts from 0), so a calibrated
tracker begins where :class:`~sciflow.uq.conformal.SplitConformal` would stay. A negative
:math:`q_t` gives an empty interval (``lower > upper``) for a non-negative score.

Every position of the event shape is its own stream. Unobserved entries (``observed``) neither
score nor move :math:`q_t`. No score memory is kept: a step costs the same at step :math:`10^6`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.uq.adaptive_conformal import ACIResult, checked_calibration, rolling_quantile, stream_scores
from sciflow.uq.base import check_alpha
from sciflow.uq.conformal import ConformalScore, NormalizedResidual
from sciflow.uq.prediction import Prediction


class QuantileTracker:
    """Online quantile tracking; :meth:`run` consumes a stream chunk by chunk and keeps its state
    (each position's threshold and the steps whose truth is still pending) for the next chunk.

    ``alpha``: target miscoverage; ``lr``: learning rate relative to the range of each position's
    calibration scores; ``eta``: the learning rate in score units instead (a number, or one per
    position); ``score``: the nonconformity score (default
    :class:`~sciflow.uq.conformal.NormalizedResidual`); ``delay``: steps between issuing an interval
    and learning its truth, minus one. Module docstring.
    """

    def __init__(self, alpha: float = 0.1, lr: float | None = 0.05, score: ConformalScore | None = None,
                 delay: int = 0, *, eta: float | Tensor | None = None) -> None:
        self.alpha = check_alpha(alpha)
        if (lr is None) == (eta is None):
            raise ValueError("give one of lr (relative to the calibration scores) and eta (in score units)")
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        if eta is not None:
            eta = torch.as_tensor(eta, dtype=torch.float64)
            if not (torch.isfinite(eta).all() and (eta > 0).all()):
                raise ValueError("eta must be finite and > 0 at every position")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.lr, self.delay = lr, int(delay)
        self.score = score or NormalizedResidual()
        self._eta_given = eta
        self.reset()

    def reset(self) -> None:
        """Forget the calibration, the thresholds and the pending truths."""
        self._q: Tensor | None = None  # (*event) float64, the threshold issued next
        self.eta: Tensor | None = self._eta_given
        self.event: tuple[int, ...] | None = None
        self.started = False
        self.pending: list[tuple[Tensor, Tensor]] = []  # (err, observed) per step awaiting its truth

    def calibrate_scores(self, scores: Tensor, observed: Tensor | None = None) -> "QuantileTracker":
        """Start from the split-conformal quantile of the scores ``(n, *event)`` of a calibration
        period, and with ``lr`` set each position's ``eta`` from their range. Positions without a
        calibration score start at 0 and take the largest range of the others."""
        if self.started:
            raise ValueError("calibrate_scores comes before the stream: this tracker has already run (reset() first)")
        if scores.dim() < 1 or scores.shape[0] == 0:
            raise ValueError(f"need calibration scores (n, *event) with n >= 1, got shape {tuple(scores.shape)}")
        s, valid = checked_calibration(scores.double(), observed)
        n = valid.sum(0)
        q = rolling_quantile(s, valid, torch.full(s.shape[1:], self.alpha, dtype=torch.float64, device=s.device))
        hi = s.masked_fill(~valid, -math.inf).max(0).values
        lo = s.masked_fill(~valid, math.inf).min(0).values
        q = torch.where(torch.isinf(q), hi, q)  # too few scores for the level: the largest
        self._q = torch.where(n > 0, q, torch.zeros_like(q))
        if self.lr is not None:
            span = torch.where(n > 0, hi - lo, torch.zeros_like(q))
            if not bool((span > 0).any()):
                raise ValueError("the calibration scores do not vary at any position: lr has no scale; give eta")
            self.eta = self.lr * torch.where(span > 0, span, span.max())
        self.event = tuple(s.shape[1:])
        return self

    @property
    def threshold(self) -> Tensor | None:
        """The threshold per position, before the truths still pending arrive."""
        return self._q

    def run(self, predictions: Prediction, y: Tensor, observed: Tensor | None = None) -> ACIResult:
        """Issue one interval per step of ``predictions`` (time along axis 0) at the current
        threshold, then score it against ``y`` (``(T, *event)``) and update the thresholds as the
        truths arrive. ``observed`` (bool, like ``y``): which truths exist."""
        event = tuple(y.shape[1:])
        if self.event is not None and event != self.event:
            raise ValueError(f"predictions have event shape {event}, expected {self.event} "
                             "(the stream's calibration or first chunk)")
        if self._q is None and self.eta is None:
            raise ValueError("an uncalibrated tracker needs eta: call calibrate_scores first, or give eta")
        s, valid = stream_scores(self.score, predictions, y, observed)
        if self._q is None:  # no calibration: start at 0 (the authors' code)
            self._q = torch.zeros(event, dtype=torch.float64, device=y.device)
        self._q = self._q.to(y.device)
        self.eta = self.eta.to(y.device)
        self.event, self.started = event, True
        qs, errs = [], []
        for t in range(y.shape[0]):  # the feedback makes the steps sequential
            while len(self.pending) > self.delay:  # truths that have arrived by now
                err, ok = self.pending.pop(0)
                self._q = torch.where(ok, self._q + self.eta * (err.double() - self.alpha), self._q)
            q_t = self._q.to(s.dtype)  # the threshold issued, and the one its error is judged by
            err = (s[t] > q_t) & valid[t]
            qs.append(q_t)
            errs.append(err)
            self.pending.append((err, valid[t]))
        q = torch.stack(qs)
        lower, upper = self.score.interval(predictions, q)
        return ACIResult(lower, upper, None, torch.stack(errs), None if observed is None else valid, q)
