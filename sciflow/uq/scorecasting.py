r"""Scorecasters: forecasts of the next nonconformity score, the derivative ("D") part of conformal
PID control (Angelopoulos, Candès & Tibshirani, NeurIPS 2023, Sec. 2.3,
:class:`~sciflow.uq.conformal_pid.ConformalPID`).

When the scores themselves are predictable (a diurnal cycle of forecast errors, a trend as a model
ages), a forecast :math:`\hat s_{t}` of the score lets the threshold move *before* the errors
arrive; the controller then only learns the quantile of :math:`s_t - \hat s_t`. A scorecaster
sees one score per position per arrived step and issues one forecast per issued step, ``ahead``
steps after the newest score it has seen (``ahead = delay + 1``).

:class:`ARScorecaster` is a direct ``ahead``-step linear autoregression per position, fitted by
recursive least squares with exponential forgetting (Haykin, *Adaptive Filter Theory*, Ch. 10):

.. math:: \hat s_t = w^\top x_t,\quad x_t = (1,\ s_{t-a},\dots,s_{t-a-p+1},\ s_{t-mP}),
          \quad m = \lceil a/P\rceil,

with :math:`a` = ``ahead``, :math:`p` = ``order`` and the optional seasonal lag of period
:math:`P` (the most recent score of the same phase that has arrived). Deviation: the paper's
experiments refit a Theta model (or an AR model) on all past scores at every step, one series at
a time; we update every position's regression in :math:`O(k^2)` per step, batched over the
event shape, so that a grid of thousands of streams costs one tensor operation per step.
Forecasts are clipped to the range of the scores seen at that position widened by that range on
each side (room for a trend to run on), so a badly conditioned regression cannot issue a
threshold far outside the data, and the trace of the inverse Gram
matrix is bounded by the prior's (forgetting would otherwise inflate it without limit along
directions a constant score never excites). An unobserved score is carried forward (last
observation) in the lags and does not update the regression; nor does a step whose lags reach
back before the first score.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor


class Scorecaster(abc.ABC):
    """Online forecaster of the scores of every position of an event shape."""

    @abc.abstractmethod
    def start(self, event: tuple[int, ...], ahead: int, device: torch.device) -> None:
        """Forget everything; forecasts are for ``ahead`` steps after the newest score seen."""

    @abc.abstractmethod
    def forecast(self) -> Tensor:
        """The forecast, ``event``-shaped float64, of the score of the step being issued now."""

    @abc.abstractmethod
    def update(self, score: Tensor, valid: Tensor) -> None:
        """The score of the oldest step whose forecast was issued and whose truth has now arrived
        (FIFO: the k-th ``update`` belongs to the k-th ``forecast``); ``valid``: which exist."""

    def to(self, device: torch.device) -> "Scorecaster":
        """Move the state to ``device`` (a stream calibrated on the host and run on a GPU)."""
        return self


class ARScorecaster(Scorecaster):
    """Direct ``ahead``-step AR(``order``) of the scores with an optional seasonal lag of
    ``period`` steps, recursive least squares with forgetting factor ``forgetting`` (memory
    about ``1 / (1 - forgetting)`` steps), started from ``prior`` times the identity as the
    inverse Gram matrix (in 1/score² units: a weak ridge of ``1 / prior`` for scores of order one;
    scale ``prior`` by 1/scale² for scores of another size). Module docstring."""

    def __init__(self, order: int = 1, period: int | None = None, forgetting: float = 0.99,
                 prior: float = 100.0) -> None:
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        if period is not None and period < 1:
            raise ValueError(f"period must be >= 1 step, got {period}")
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        if not (math.isfinite(prior) and prior > 0):
            raise ValueError(f"prior must be a finite number > 0, got {prior}")
        self.order, self.period, self.forgetting, self.prior = int(order), period, float(forgetting), float(prior)
        self.ahead: int | None = None

    def __repr__(self) -> str:
        return (f"ARScorecaster(order={self.order}, period={self.period}, forgetting={self.forgetting}, "
                f"prior={self.prior})")

    def _lags(self) -> list[int]:
        """Lags of the features after the intercept, counted from the step being forecast."""
        a = self.ahead
        lags = [a + i for i in range(self.order)]
        if self.period is not None:
            lags.append(self.period * math.ceil(a / self.period))
        return lags

    def start(self, event: tuple[int, ...], ahead: int, device: torch.device) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.ahead = int(ahead)
        k = 1 + len(self._lags())
        self.w = torch.zeros(*event, k, dtype=torch.float64, device=device)
        self.P = torch.eye(k, dtype=torch.float64, device=device).expand(*event, k, k) * self.prior
        # the newest scores (index 0 = newest) carried forward; NaN until a score arrives
        self.history = torch.full((max(self._lags()) - self.ahead + 1, *event), math.nan,
                                  dtype=torch.float64, device=device)
        self.lo = torch.full(event, math.inf, dtype=torch.float64, device=device)
        self.hi = torch.full(event, -math.inf, dtype=torch.float64, device=device)
        self.pending: list[tuple[Tensor, Tensor]] = []  # (features, complete) of issued forecasts, oldest first

    def to(self, device: torch.device) -> "ARScorecaster":
        if self.ahead is not None:
            for name in ("w", "P", "history", "lo", "hi"):
                setattr(self, name, getattr(self, name).to(device))
            self.pending = [(x.to(device), c.to(device)) for x, c in self.pending]
        return self

    def _features(self) -> tuple[Tensor, Tensor]:
        """The features and where all of them exist (lags before the first score are 0 in the
        forecast, where the intercept carries the level, and such a step teaches nothing)."""
        x = torch.stack([torch.ones_like(self.lo)] + [self.history[lag - self.ahead] for lag in self._lags()], -1)
        complete = torch.isfinite(x).all(-1)
        return torch.nan_to_num(x), complete

    def forecast(self) -> Tensor:
        if self.ahead is None:
            raise ValueError("call start(event, ahead, device) before forecast")
        x, complete = self._features()
        self.pending.append((x, complete))
        s = (self.w * x).sum(-1)
        seen = torch.isfinite(self.lo)
        span = torch.where(seen, self.hi - self.lo, torch.zeros_like(s))
        s = torch.where(seen, torch.minimum(torch.maximum(s, self.lo - span), self.hi + span), torch.zeros_like(s))
        return s

    def update(self, score: Tensor, valid: Tensor) -> None:
        if not self.pending:
            raise ValueError("update without an issued forecast: each score answers one forecast, in order")
        x, complete = self.pending.pop(0)
        s = score.double()
        learn = valid & complete
        Px = (self.P @ x.unsqueeze(-1)).squeeze(-1)
        gain = Px / (self.forgetting + (x * Px).sum(-1, keepdim=True))
        resid = torch.where(learn, s - (self.w * x).sum(-1), torch.zeros_like(s))
        v = learn.unsqueeze(-1)
        self.w = torch.where(v, self.w + gain * resid.unsqueeze(-1), self.w)
        P = (self.P - gain.unsqueeze(-1) * Px.unsqueeze(-2)) / self.forgetting
        P = 0.5 * (P + P.transpose(-1, -2))
        # forgetting inflates P along directions the scores do not excite (a constant score):
        # bound its trace by the prior's so that it cannot overflow (trace-bounded RLS)
        cap = self.prior * P.shape[-1]
        trace = P.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True).unsqueeze(-1)
        P = P * torch.clamp(cap / trace, max=1.0)
        self.P = torch.where(v.unsqueeze(-1), P, self.P)
        self.history = torch.cat([torch.where(valid, s, self.history[0]).unsqueeze(0), self.history[:-1]])
        self.lo = torch.where(valid, torch.minimum(self.lo, s), self.lo)
        self.hi = torch.where(valid, torch.maximum(self.hi, s), self.hi)
