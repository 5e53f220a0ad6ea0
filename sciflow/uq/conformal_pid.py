r"""Conformal PID control (Angelopoulos, Candès & Tibshirani, NeurIPS 2023, "Conformal PID control
for time series prediction"): online intervals for forecast streams whose errors drift, cycle or
jump.

The threshold issued at step :math:`t+1` has three parts (their eq. 8, with the code's
conventions):

.. math:: q_{t+1} = \underbrace{q^P_{t+1}}_{\text{quantile tracking}}
          + \underbrace{r_t\Big(\textstyle\sum_{i\le t}(\mathrm{err}_i-\alpha)\Big)}_{\text{error integration}}
          + \underbrace{\hat s_{t+1}}_{\text{scorecast}},
   \qquad q^P_{t+1} = q^P_t + \eta\,(\mathrm{err}_t - \alpha),

with :math:`\mathrm{err}_t = \mathbb 1\{s_t > q_t\}`.

- **P**, quantile tracking (:mod:`sciflow.uq.quantile_tracking`): online gradient descent on the
  pinball loss; alone it is :class:`~sciflow.uq.quantile_tracking.QuantileTracker`.
- **I**, error integration with the saturation function of their Sec. 2.2 and code,
  :math:`r_t(x) = K_I \tan\big(x \log(t+1) / (C_{\mathrm{sat}}(t+1))\big)`, with
  :math:`\tan(x) = \pm\infty` for :math:`|x| \ge \pi/2`: a coverage error that persists pulls the
  threshold harder the longer it lasts, and a long-run error of order :math:`1/\log t` already
  saturates it (an infinite or empty interval), which caps the accumulated error.
- **D**, scorecasting (:mod:`sciflow.uq.scorecasting`): a forecast :math:`\hat s_{t+1}` of the
  next score from the past ones, so that predictable changes of the score (a diurnal cycle, a
  trend) move the threshold before they cause errors; the P part then tracks the quantile of
  :math:`s - \hat s`.

**Guarantee** (the argument of their Prop. 2, any sequence of finite scores and scorecasts):
with :math:`E_n` the integrated error after :math:`n` truths and
:math:`x_{\mathrm{sat}}(n) = \tfrac{\pi}{2} C_{\mathrm{sat}} (n+1)/\log(n+1)`, a threshold issued
while :math:`E_n \ge x_{\mathrm{sat}}(n)` is :math:`+\infty` (never an error) and one issued while
:math:`E_n \le -x_{\mathrm{sat}}(n)` is :math:`-\infty` (always one); with feedback delayed by
``delay = d`` steps at most :math:`d+1` errors issued before a crossing arrive after it, so

.. math:: |E_n| \le \max_{m\le n} x_{\mathrm{sat}}(m) + d + 1, \qquad
          \Big|\frac1n\sum_{i\le n}\mathrm{err}_i - \alpha\Big| = \frac{|E_n|}{n}
          = O\Big(\frac{C_{\mathrm{sat}}}{\log n}\Big),

whatever the scorecaster does. Without the integrator (``ki = 0``) the P part's bound holds for
the residual scores :math:`s - \hat s` (:mod:`sciflow.uq.quantile_tracking`).

Units: ``lr`` and ``ki`` are relative to the range of each position's calibration scores
(:math:`\eta = \mathrm{lr}\cdot\mathrm{range}`, :math:`K_I = \mathrm{ki}\cdot\mathrm{range}`);
with ``eta`` given instead, ``ki`` is :math:`K_I` in score units. Deviations: the authors' code
scales the learning rate by the range of the recent scores as the stream goes (ours is fixed
after calibration, so the P bound holds as stated) and starts :math:`q^P` at 0 (ours: the
split-conformal quantile of the calibration scores, or of their residuals from the scorecaster).
``csat`` and ``ki`` default to 1: the error a run of misses must reach before the interval
saturates is :math:`\tfrac{\pi}{2}(n+1)/\log(n+1)` (about 0.26 n after 400 truths).

Every position of the event shape is its own stream; unobserved entries (``observed``) neither
score nor move any part of the controller.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.uq.adaptive_conformal import ACIResult, checked_calibration, rolling_quantile, stream_scores
from sciflow.uq.base import check_alpha
from sciflow.uq.conformal import ConformalScore, NormalizedResidual
from sciflow.uq.prediction import Prediction
from sciflow.uq.scorecasting import Scorecaster


def saturation(x: Tensor, n: Tensor, ki: Tensor, csat: float) -> Tensor:
    r"""The integrator :math:`r_n(x) = K_I\tan(x\log(n+1)/(C_{\mathrm{sat}}(n+1)))`, ``±inf``
    where the argument reaches :math:`\pm\pi/2` (module docstring)."""
    n1 = (n + 1).to(x.dtype)
    arg = x * torch.log(n1) / (csat * n1)
    inside = arg.abs() < math.pi / 2
    r = ki * torch.tan(torch.where(inside, arg, torch.zeros_like(arg)))
    return torch.where(inside, r, torch.sign(arg) * math.inf)


class ConformalPID:
    """Conformal PID control; :meth:`run` consumes a stream chunk by chunk and keeps its state
    (each position's P threshold, integrated error, the scorecaster and the steps whose truth is
    still pending) for the next chunk.

    ``alpha``: target miscoverage; ``lr``: the P learning rate relative to the range of each
    position's calibration scores, or ``eta`` in score units; ``ki``: the integral gain (``0``
    turns the integrator off), ``csat``: its saturation constant; ``scorecaster``: a
    :class:`~sciflow.uq.scorecasting.Scorecaster` (``None``: no D part); ``score``: the
    nonconformity score (default :class:`~sciflow.uq.conformal.NormalizedResidual`); ``delay``:
    steps between issuing an interval and learning its truth, minus one. Module docstring.
    """

    def __init__(self, alpha: float = 0.1, lr: float | None = 0.05, score: ConformalScore | None = None,
                 delay: int = 0, *, eta: float | Tensor | None = None, ki: float = 1.0, csat: float = 1.0,
                 scorecaster: Scorecaster | None = None) -> None:
        self.alpha = check_alpha(alpha)
        if (lr is None) == (eta is None):
            raise ValueError("give one of lr (relative to the calibration scores) and eta (in score units)")
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        if eta is not None:
            eta = torch.as_tensor(eta, dtype=torch.float64)
            if not (torch.isfinite(eta).all() and (eta > 0).all()):
                raise ValueError("eta must be finite and > 0 at every position")
        if not (math.isfinite(ki) and ki >= 0):
            raise ValueError(f"ki must be a finite number >= 0 (0: no integrator), got {ki}")
        if not (math.isfinite(csat) and csat > 0):
            raise ValueError(f"csat must be a finite number > 0, got {csat}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if scorecaster is not None and not isinstance(scorecaster, Scorecaster):
            raise TypeError(f"scorecaster must be a sciflow.uq.scorecasting.Scorecaster, got "
                            f"{type(scorecaster).__name__}")
        self.lr, self.delay, self.ki, self.csat = lr, int(delay), float(ki), float(csat)
        self.score = score or NormalizedResidual()
        self.scorecaster = scorecaster
        self._eta_given = eta
        self.reset()

    def reset(self) -> None:
        """Forget the calibration, the thresholds, the integrated errors and the pending truths."""
        self._q: Tensor | None = None  # (*event) float64, the P threshold issued next
        self.eta: Tensor | None = self._eta_given
        self.gain: Tensor | None = None if self._eta_given is None else torch.tensor(self.ki, dtype=torch.float64)
        self.integral: Tensor | None = None  # sum of (err - alpha) over the arrived truths
        self.count: Tensor | None = None  # the number of arrived (observed) truths
        self.event: tuple[int, ...] | None = None
        self.started = False
        self._cast = False  # whether the scorecaster has been started
        self.pending: list[tuple[Tensor, Tensor, Tensor]] = []  # (err, observed, score) per step awaiting its truth

    @property
    def threshold(self) -> Tensor | None:
        """The P part of the threshold per position (all of it for quantile tracking), before the truths
        still pending arrive."""
        return self._q

    def _start_scorecaster(self, event: tuple[int, ...], device: torch.device) -> None:
        if self.scorecaster is not None and not self._cast:
            self.scorecaster.start(event, self.delay + 1, device)
            self._cast = True

    def calibrate_scores(self, scores: Tensor, observed: Tensor | None = None) -> "ConformalPID":
        """Start from the scores ``(n, *event)`` of a calibration period: the P threshold at their
        split-conformal quantile (of their residuals from the scorecaster, which reads them as
        the ``n`` steps ending ``delay`` steps before the stream's first), and with ``lr`` the
        gains from their range. Positions without a calibration score start at 0 and take the
        largest range of the others."""
        if self.started:
            raise ValueError("calibrate_scores comes before the stream: this method has already run (reset() first)")
        if scores.dim() < 1 or scores.shape[0] == 0:
            raise ValueError(f"need calibration scores (n, *event) with n >= 1, got shape {tuple(scores.shape)}")
        s, valid = checked_calibration(scores.double(), observed)
        event = tuple(s.shape[1:])
        hi = s.masked_fill(~valid, -math.inf).max(0).values
        lo = s.masked_fill(~valid, math.inf).min(0).values
        n = valid.sum(0)
        target, ok = s, valid
        if self.scorecaster is not None:
            target, ok = self._cast_calibration(s, valid)
        q = rolling_quantile(target, ok, torch.full(event, self.alpha, dtype=torch.float64, device=s.device))
        top = target.masked_fill(~ok, -math.inf).max(0).values
        q = torch.where(torch.isinf(q), top, q)  # too few scores for the level: the largest
        self._q = torch.where(ok.sum(0) > 0, q, torch.zeros_like(q))
        if self.lr is not None:
            span = torch.where(n > 0, hi - lo, torch.zeros_like(q))
            if not bool((span > 0).any()):
                raise ValueError("the calibration scores do not vary at any position: lr has no scale; give eta")
            span = torch.where(span > 0, span, span.max())
            self.eta, self.gain = self.lr * span, self.ki * span
        self.event = event
        return self

    def _cast_calibration(self, s: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Run the scorecaster through the calibration scores as a stream with this delay (every
        truth arrives before the stream starts): the residuals ``s - s_hat`` and which count
        (observed, and issued after the scorecaster had seen a score)."""
        self.scorecaster.start(tuple(s.shape[1:]), self.delay + 1, s.device)
        self._cast = True
        d, out = self.delay, []
        for i in range(s.shape[0]):
            out.append(s[i] - self.scorecaster.forecast())
            if i >= d:
                self.scorecaster.update(s[i - d], valid[i - d])
        for j in range(max(s.shape[0] - d, 0), s.shape[0]):
            self.scorecaster.update(s[j], valid[j])
        ok = valid.clone()
        ok[: d + 1] = False  # forecasts issued before any score had arrived
        return torch.stack(out), ok

    def _learn(self, err: Tensor, ok: Tensor, score: Tensor) -> None:
        self._q = torch.where(ok, self._q + self.eta * (err.double() - self.alpha), self._q)
        if self.ki > 0:
            self.integral = torch.where(ok, self.integral + err.double() - self.alpha, self.integral)
            self.count = self.count + ok.long()
        if self.scorecaster is not None:
            self.scorecaster.update(score, ok)

    def run(self, predictions: Prediction, y: Tensor, observed: Tensor | None = None) -> ACIResult:
        """Issue one interval per step of ``predictions`` (time along axis 0), then score it against
        ``y`` (``(T, *event)``) and update the controller as the truths arrive. ``observed`` (bool,
        like ``y``): which truths exist. The result's ``threshold`` is the issued :math:`q_t`."""
        event = tuple(y.shape[1:])
        if self.event is not None and event != self.event:
            raise ValueError(f"predictions have event shape {event}, expected {self.event} "
                             "(the stream's calibration or first chunk)")
        if self._q is None and self.eta is None:
            raise ValueError("an uncalibrated method needs eta: call calibrate_scores first, or give eta")
        s, valid = stream_scores(self.score, predictions, y, observed)
        dev = y.device
        if self._q is None:  # no calibration: start at 0 (the authors' code)
            self._q = torch.zeros(event, dtype=torch.float64, device=dev)
        if self.integral is None:
            self.integral = torch.zeros(event, dtype=torch.float64, device=dev)
            self.count = torch.zeros(event, dtype=torch.long, device=dev)
        self._start_scorecaster(event, dev)
        if self.scorecaster is not None:
            self.scorecaster.to(dev)
        self._q, self.eta, self.gain = self._q.to(dev), self.eta.to(dev), self.gain.to(dev)
        self.integral, self.count = self.integral.to(dev), self.count.to(dev)
        self.event, self.started = event, True
        qs, errs = [], []
        for t in range(y.shape[0]):  # the feedback makes the steps sequential
            while len(self.pending) > self.delay:  # truths that have arrived by now
                self._learn(*self.pending.pop(0))
            q_t = self._q
            if self.ki > 0:
                q_t = q_t + saturation(self.integral, self.count, self.gain, self.csat)
            if self.scorecaster is not None:
                q_t = q_t + self.scorecaster.forecast()
            q_t = q_t.to(s.dtype)  # the threshold issued, and the one its error is judged by
            err = (s[t] > q_t) & valid[t]
            qs.append(q_t)
            errs.append(err)
            self.pending.append((err, valid[t], s[t]))
        q = torch.stack(qs)
        lower, upper = self.score.interval(predictions, q)
        return ACIResult(lower, upper, None, torch.stack(errs), None if observed is None else valid, q)
