r"""Online quantile tracking (Angelopoulos, Candès & Tibshirani, NeurIPS 2023, "Conformal PID
control for time series prediction"): the proportional part of their conformal PID
controller (:class:`~sciflow.uq.conformal_pid.ConformalPID` adds the integrator and the
scorecaster), for streams of forecasts under distribution shift.

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

from torch import Tensor

from sciflow.uq.conformal import ConformalScore
from sciflow.uq.conformal_pid import ConformalPID


class QuantileTracker(ConformalPID):
    """Online quantile tracking: :class:`~sciflow.uq.conformal_pid.ConformalPID` without the
    integrator and the scorecaster. :meth:`run` consumes a stream chunk by chunk and keeps its
    state (each position's threshold and the steps whose truth is still pending).

    ``alpha``: target miscoverage; ``lr``: learning rate relative to the range of each position's
    calibration scores; ``eta``: the learning rate in score units instead (a number, or one per
    position); ``score``: the nonconformity score (default
    :class:`~sciflow.uq.conformal.NormalizedResidual`); ``delay``: steps between issuing an interval
    and learning its truth, minus one. Module docstring.
    """

    def __init__(self, alpha: float = 0.1, lr: float | None = 0.05, score: ConformalScore | None = None,
                 delay: int = 0, *, eta: float | Tensor | None = None) -> None:
        super().__init__(alpha, lr, score, delay, eta=eta, ki=0.0)
