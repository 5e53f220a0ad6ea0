r"""Adaptive conformal inference (ACI; Gibbs & Candès, NeurIPS 2021) and its step-size-free
DtACI (Gibbs & Candès, JMLR 2024) for streams of forecasts.

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

**DtACI** (Gibbs & Candès, JMLR 2024, Alg. 1) removes the choice of ``gamma``: give several
(``DTACI_GAMMAS``, the authors' grid 0.001 ... 0.128). Each is an ACI expert with its own level
:math:`\alpha^i_t`; the interval is issued at :math:`\bar\alpha_t=\sum_i p^i_t\alpha^i_t`, and
when :math:`y_t` arrives every expert takes its ACI step and the weights follow the pinball loss
:math:`\ell(\beta_t,\alpha^i_t)=\alpha(\beta_t-\alpha^i_t)-\min(0,\beta_t-\alpha^i_t)` of
:math:`\beta_t=\sup\{\beta: y_t\in\hat C_t(\beta)\}`:
:math:`\bar w^i = w^i e^{-\eta\ell}`, :math:`w^i \leftarrow (1-\sigma)\bar w^i/\sum_j\bar w^j+\sigma/k`
(the :math:`\sigma` mixing lets the weights move back when the regime changes). Their Alg. 1
issues one expert's :math:`\alpha^i_t`, drawn with probability :math:`p^i_t`, and their guarantees
are for that: ``randomize=True`` does so (one draw per step and position, from the ``generator``
given to :meth:`~AdaptiveConformal.run`). By default we deviate and issue the weighted mean,
deterministic, which their code also tracks. ``sigma`` and ``eta`` default to the paper's choice for
local intervals of ``interval`` steps (:func:`dtaci_defaults`).

Every position of the event shape (a grid point, a lead time) is its own stream with its own
:math:`\alpha_t`, so the long-run guarantee holds per position. Any
:class:`~sciflow.uq.conformal.ConformalScore` works (absolute, normalised by the base method's
spread, CQR). Entries marked unobserved (``observed``) neither produce a score nor move
:math:`\alpha_t`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from sciflow.uq._score_memory import ScoreMemory
from sciflow.uq.base import check_alpha
from sciflow.uq.conformal import ConformalScore, NormalizedResidual
from sciflow.uq.prediction import Prediction


def rolling_quantile(scores: Tensor, valid: Tensor, alpha: Tensor) -> Tensor:
    r"""Per position, the :math:`\lceil(n+1)(1-\alpha)\rceil`-th smallest of the valid ``scores``
    (``(n, *event)``; ``n`` counted per position), ``inf`` when that exceeds ``n`` and ``-inf``
    when it is below 1 (:math:`\alpha \ge 1`). ``alpha``: ``event``-shaped, or ``(k, *event)``
    for ``k`` levels at once (one sort). The definition by a full sort; :class:`AdaptiveConformal`
    gets the same numbers incrementally (:mod:`sciflow.uq._score_memory`)."""
    one = alpha.dim() == scores.dim() - 1
    alpha = alpha.unsqueeze(0) if one else alpha
    n = valid.sum(0)
    k = torch.ceil((n + 1) * (1 - alpha)).long()
    if scores.shape[0] == 0:
        q = torch.zeros(alpha.shape, dtype=scores.dtype, device=scores.device)
    else:
        ordered = scores.masked_fill(~valid, math.inf).sort(0).values
        q = ordered.gather(0, (k - 1).clamp(0, scores.shape[0] - 1))
    q = q.masked_fill(k > n, math.inf).masked_fill(k < 1, -math.inf)
    return q.squeeze(0) if one else q


def checked_calibration(scores: Tensor, observed: Tensor | None) -> tuple[Tensor, Tensor]:
    """Calibration ``scores`` with their unobserved entries set to 0, and the ``observed`` mask
    (all true for ``None``); shapes must agree and no observed score may be NaN."""
    valid = torch.ones_like(scores, dtype=torch.bool) if observed is None else observed.bool()
    if valid.shape != scores.shape:
        raise ValueError(f"observed has shape {tuple(valid.shape)}, scores {tuple(scores.shape)}")
    scores = scores.masked_fill(~valid, 0.0)
    if torch.isnan(scores).any():
        raise ValueError("calibration scores contain NaN")
    return scores, valid


def stream_scores(score: ConformalScore, predictions: Prediction, y: Tensor,
                  observed: Tensor | None) -> tuple[Tensor, Tensor]:
    """The nonconformity scores of a chunk of a stream (unobserved entries 0) and its ``observed``
    mask, checked: ``y``, the predictions and the mask agree in shape, no observed score is NaN."""
    if y.shape != predictions.mean.shape:
        raise ValueError(f"y has shape {tuple(y.shape)}, predictions {tuple(predictions.mean.shape)}")
    valid = torch.ones_like(y, dtype=torch.bool) if observed is None else observed.bool()
    if valid.shape != y.shape:
        raise ValueError(f"observed has shape {tuple(valid.shape)}, y {tuple(y.shape)}")
    s = score.score(predictions, y).masked_fill(~valid, 0.0)
    if torch.isnan(s).any():
        raise ValueError("scores contain NaN where the truth is observed (NaN in y or in the predictions)")
    return s, valid


@dataclass(frozen=True)
class ACIResult:
    """The intervals an online conformal method issued, step by step: ``lower``, ``upper``, the
    level ``alpha_t`` each was issued at (ACI; ``None`` for quantile tracking, which has none),
    ``miscovered`` (``err_t``) and the score ``threshold`` :math:`q_t`, all ``(T, *event)``;
    ``observed`` (bool) marks the entries that had a truth (``None``: all)."""

    lower: Tensor
    upper: Tensor
    alpha_t: Tensor | None
    miscovered: Tensor
    observed: Tensor | None = None
    threshold: Tensor | None = None

    def coverage(self) -> Tensor:
        """Long-run coverage per position over its observed steps, ``event``-shaped."""
        ok = (~self.miscovered).to(torch.float64)
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


def dtaci_defaults(alpha: float, k: int, interval: int) -> tuple[float, float]:
    r"""DtACI's ``(sigma, eta)`` for regret over local intervals of ``interval`` steps with ``k``
    experts (Gibbs & Candès 2024, Thm. 3.2's choice): :math:`\sigma = 1/(2I)`,
    :math:`\eta = \sqrt{3/I}\,\sqrt{(\log(kI)+2)/((1-\alpha)^2\alpha^3+\alpha^2(1-\alpha)^3)}`
    (:math:`I=500`, 8 experts, :math:`\alpha=0.1`: 0.001 and 2.76, the values of the authors' code)."""
    sigma = 1 / (2 * interval)
    eta = math.sqrt(3 / interval) * math.sqrt((math.log(k * interval) + 2)
                                              / ((1 - alpha) ** 2 * alpha**3 + alpha**2 * (1 - alpha) ** 3))
    return sigma, eta


class AdaptiveConformal:
    """Online ACI intervals; :meth:`run` consumes a stream chunk by chunk and keeps its state
    (the scores, each position's levels and the last steps whose truth is still pending) for the
    next chunk.

    ``alpha``: target miscoverage; ``gamma`` (>= 0): step size of the update, or several
    (:data:`DTACI_GAMMAS` for the authors' grid) for DtACI; ``score``: the nonconformity score
    (default :class:`~sciflow.uq.conformal.NormalizedResidual`); ``window``: keep only the last
    ``window`` scores per position (``None``: all); ``delay``: steps between issuing an interval
    and learning its truth, minus one; ``interval``, ``sigma``, ``eta``: DtACI's local interval
    length and the weights' mixing and learning rates (:func:`dtaci_defaults`); ``randomize``:
    DtACI issues one expert's level drawn by the weights (their Alg. 1) instead of the weighted
    mean. Module docstring.
    """

    def __init__(self, alpha: float = 0.1, gamma: float | Sequence[float] = 0.005,
                 score: ConformalScore | None = None, window: int | None = None, delay: int = 0, *,
                 interval: int = 500, sigma: float | None = None, eta: float | None = None,
                 randomize: bool = False) -> None:
        self.alpha = check_alpha(alpha)
        gammas = [gamma] if isinstance(gamma, (int, float)) else list(gamma)
        if not gammas or not all(math.isfinite(g) and g >= 0 for g in gammas):
            raise ValueError(f"gamma must be a finite number >= 0 or a non-empty sequence of them, got {gamma}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.gammas = torch.tensor(gammas, dtype=torch.float64)
        self.window, self.delay = window, int(delay)
        self.randomize = bool(randomize)
        d_sigma, d_eta = dtaci_defaults(self.alpha, len(gammas), interval)
        self.sigma = d_sigma if sigma is None else float(sigma)
        self.eta = d_eta if eta is None else float(eta)
        if not 0 <= self.sigma <= 1 or not self.eta >= 0:
            raise ValueError(f"need 0 <= sigma <= 1 and eta >= 0, got sigma={self.sigma}, eta={self.eta}")
        self.score = score or NormalizedResidual()
        self.reset()

    def reset(self) -> None:
        """Forget the scores, the levels, the weights and the pending truths."""
        self.memory = ScoreMemory(self.window)
        self.experts: Tensor | None = None  # (k, *event) levels alpha_t^i, float64
        self.weights: Tensor | None = None  # (k, *event), summing to 1 over the experts
        # per step awaiting its truth: (score, observed, the experts' errors, beta_t, the experts' levels)
        self.pending: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []

    @property
    def alpha_t(self) -> Tensor | None:
        """The current level per position, before the truths still pending arrive (the weighted mean
        of the experts' levels; the one level of plain ACI)."""
        return None if self.experts is None else (self.weights * self.experts).sum(0)

    @property
    def scores(self) -> Tensor | None:
        """The remembered scores ``(n, *event)`` in arrival order (unobserved entries 0)."""
        return self.memory.scores

    def _learn(self, s: Tensor, valid: Tensor, err: Tensor, beta: Tensor, levels: Tensor) -> None:
        """A truth has arrived: move every expert (ACI's update) and, with several, reweight them
        by their pinball loss at ``beta`` (DtACI); then the score joins the memory."""
        step = self.gammas.reshape(-1, *[1] * s.dim()) * (self.alpha - err.double())
        self.experts = torch.where(valid, self.experts + step, self.experts)
        if len(self.gammas) > 1:
            u = beta - levels
            loss = self.alpha * u - u.clamp(max=0)  # pinball loss of level `levels` for the quantile beta
            w = self.weights * torch.exp(-self.eta * loss)
            w = (1 - self.sigma) * w / w.sum(0) + self.sigma / len(self.gammas)
            self.weights = torch.where(valid, w / w.sum(0), self.weights)
        self.memory.add(s[None], valid[None])

    def _check(self, what: str, t: Tensor, event: tuple[int, ...]) -> None:
        if tuple(t.shape[1:]) != event:
            raise ValueError(f"{what} has event shape {tuple(t.shape[1:])}, expected {event} "
                             f"(the stream's first calibration or prediction)")

    def calibrate_scores(self, scores: Tensor, observed: Tensor | None = None) -> "AdaptiveConformal":
        """Start from the scores ``(n, *event)`` of a calibration period (optional: without it the
        first intervals are infinite until enough scores have arrived)."""
        scores, valid = checked_calibration(scores, observed)
        if self.memory.event is not None:
            self._check("calibration scores", scores, self.memory.event)
        self.memory.add(scores, valid)
        return self

    def run(self, predictions: Prediction, y: Tensor, observed: Tensor | None = None, *,
            generator: torch.Generator | None = None) -> ACIResult:
        """Issue one interval per step of ``predictions`` (time along axis 0), each from the
        scores before it, then score it against ``y`` (``(T, *event)``) and update the levels.
        ``observed`` (bool, like ``y``): which truths exist; ``generator``: the draws of a
        ``randomize`` DtACI (on the generator's device, moved to the data's once per call)."""
        s, valid = stream_scores(self.score, predictions, y, observed)
        event = tuple(y.shape[1:])
        if self.memory.event is not None:
            self._check("predictions", y, self.memory.event)
        else:  # an empty memory of the right shape
            self.memory.add(s[:0], valid[:0])
        k = len(self.gammas)
        if self.experts is None:
            self.gammas = self.gammas.to(y.device)  # once, not a host-to-device copy per step
            self.experts = torch.full((k, *event), self.alpha, dtype=torch.float64, device=y.device)
            self.weights = torch.full((k, *event), 1 / k, dtype=torch.float64, device=y.device)
        draw = self.randomize and k > 1
        if draw:  # every step's uniforms at once: one host-to-device copy, not one per step
            gen_device = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand((y.shape[0], *event), generator=generator, dtype=torch.float64,
                           device=gen_device).to(y.device)
        qs, alphas, errs = [], [], []
        for t in range(y.shape[0]):  # the feedback makes the steps sequential
            while len(self.pending) > self.delay:  # truths that have arrived by now
                self._learn(*self.pending.pop(0))
            if k == 1:
                a_t = self.experts[0]
                q = self.memory.quantile(a_t)
                err = (s[t] > q) & valid[t]
                expert_err, beta = err[None], a_t  # beta is only read by the weights
            else:
                q_experts = self.memory.quantile(self.experts)  # (k, *event): every expert's interval
                if draw:  # expert i with probability p^i_t (their Alg. 1): its level and its interval
                    i = (self.weights.cumsum(0) < u[t]).sum(0, keepdim=True).clamp(max=k - 1)
                    a_t, q = self.experts.gather(0, i).squeeze(0), q_experts.gather(0, i).squeeze(0)
                else:
                    a_t = (self.weights * self.experts).sum(0)
                    q = self.memory.quantile(a_t)
                err = (s[t] > q) & valid[t]
                expert_err = (s[t] > q_experts) & valid[t]
                # beta_t = sup{beta : y_t in C_t(beta)} = 1 - #(past scores < s_t) / (n + 1)
                beta = 1 - self.memory.below(s[t]).double() / (self.memory.count.reshape(event) + 1)
            qs.append(q)
            alphas.append(a_t)
            errs.append(err)
            self.pending.append((s[t], valid[t], expert_err, beta, self.experts))
        q = torch.stack(qs)
        lower, upper = self.score.interval(predictions, q)
        # alpha_t >= 1: the empty set (q = -inf gives lower = +inf > upper = -inf for every score)
        return ACIResult(lower, upper, torch.stack(alphas), torch.stack(errs), None if observed is None else valid, q)


#: DtACI's grid of step sizes (Gibbs & Candès 2024, Sec. 4; the authors' experiments).
DTACI_GAMMAS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
