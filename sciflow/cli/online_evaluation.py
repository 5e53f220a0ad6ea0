r"""``sciflow evaluate --uq online-conformal``: intervals recalibrated online along a forecast stream.

Split conformal (``--uq conformal``) assumes the test windows are exchangeable with the validation
windows; forecasts issued one after another through changing weather are not. Here each lead time
gets its own online conformal method (:func:`sciflow.uq.online_conformal`: ACI, DtACI or quantile
tracking), started from the validation scores at that lead and run over the test windows in time
order, learning each truth only once it has been observed.

**Delays.** Windows are issued every :math:`s` steps (``data.test_stride``), window :math:`i` at
:math:`t_i = t_0 + i s` (its last given frame). Its forecast at lead :math:`h` (the
:math:`h`-th step after that frame) is verified at :math:`t_i + h`, so the interval of window
:math:`i` may use the score of window :math:`i'` at lead :math:`h` only if
:math:`t_{i'} + h \le t_i`, i.e. :math:`(i - i')\,s \ge h`: the truth of stream step :math:`i'`
is known from step :math:`i' + \lceil h/s\rceil` on, a delay of :math:`d_h = \lceil h/s\rceil - 1`
(the methods' ``delay``). No interval sees a truth from its own future.

**Scorecaster** (``eval.online=pid eval.online_scorecaster=ar``): each lead's conformal PID gets
an :class:`~sciflow.uq.ARScorecaster` of order 1 with a seasonal lag of one day, when the issue
interval divides 24 hours (hourly ERA5 issued every step: 24 windows), else without it.

The score is the absolute residual :math:`|y - \hat y|` of the point forecast (the ensemble mean of
several members, else the model's single sample: the base of ``--uq conformal``), one stream per
position (channel, lat, lon) and lead. The baseline in the same run: fixed split-conformal
quantiles per (lead, position) from the same validation scores, applied to the same test stream.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from sciflow.config import ConfigError, ExperimentConfig


class StreamIntervals(NamedTuple):
    """Intervals of a test stream: ``lower``, ``upper`` of shape ``(n_windows, n_leads, *state)``
    (the forecast steps only) and the per-lead :class:`~sciflow.uq.ACIResult` (each
    ``(n_windows, *state)``) with the errors the method saw."""

    lower: Tensor
    upper: Tensor
    per_lead: list[Any]


def lead_delays(n_leads: int, stride: int) -> list[int]:
    r"""The delay of lead :math:`h = 1, \dots,` ``n_leads`` for windows issued every ``stride``
    steps: :math:`\lceil h/s\rceil - 1` (module docstring)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return [math.ceil(h / stride) - 1 for h in range(1, n_leads + 1)]


def _check(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, given: int) -> None:
    if val_mean.shape != val_truth.shape or test_mean.shape != test_truth.shape:
        raise ValueError(f"forecasts and truths differ in shape: val {tuple(val_mean.shape)} vs "
                         f"{tuple(val_truth.shape)}, test {tuple(test_mean.shape)} vs {tuple(test_truth.shape)}")
    if val_mean.shape[1:] != test_mean.shape[1:]:
        raise ValueError(f"validation windows {tuple(val_mean.shape[1:])} and test windows "
                         f"{tuple(test_mean.shape[1:])} differ in shape")
    if val_mean.shape[0] < 1:
        raise ValueError("no validation windows to calibrate on")
    if not 0 <= given < val_mean.shape[1]:
        raise ValueError(f"given = {given} leaves no forecast step in windows of {val_mean.shape[1]} steps")


def daily_period(stride: int, step_hours: float | None) -> int | None:
    """Windows per day when issued every ``stride`` steps of ``step_hours``, ``None`` when that is
    not a whole number (or the step is unknown)."""
    if step_hours is None:
        return None
    per_day = 24.0 / (stride * float(step_hours))
    return int(round(per_day)) if per_day >= 1 and abs(per_day - round(per_day)) < 1e-9 else None


def online_intervals(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, *, given: int,
                     stride: int, method: str, alpha: float = 0.1, rate: float | None = None,
                     scorecaster: Callable[[], Any] | None = None) -> StreamIntervals:
    """Online conformal intervals for a stream of forecast windows.

    ``val_*``: ``(n_val, time, *state)`` validation forecasts and truths (the calibration scores);
    ``test_*``: ``(n_test, time, *state)``, in the order they were issued, one every ``stride``
    steps. The first ``given`` steps of a window are its initial condition (not scored). Per lead
    ``j`` (``h = j + 1``): ``online_conformal(method, alpha, rate=rate, delay=ceil(h/stride) - 1)``
    with :class:`~sciflow.uq.AbsoluteResidual`, calibrated on the validation scores at that lead,
    then run over the test windows. ``scorecaster``: makes each lead's scorecaster (``method="pid"``).
    """
    from sciflow.uq import AbsoluteResidual, Prediction, online_conformal

    _check(val_mean, val_truth, test_mean, test_truth, given)
    score = AbsoluteResidual()
    results = []
    for j, delay in enumerate(lead_delays(val_mean.shape[1] - given, stride)):
        k = given + j
        m = online_conformal(method, alpha, rate=rate, score=score, delay=delay,
                             scorecaster=None if scorecaster is None else scorecaster())
        m.calibrate_scores(score.score(Prediction(mean=val_mean[:, k]), val_truth[:, k]))
        results.append(m.run(Prediction(mean=test_mean[:, k]), test_truth[:, k]))
    return StreamIntervals(torch.stack([r.lower for r in results], 1), torch.stack([r.upper for r in results], 1),
                           results)


def split_conformal_intervals(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, *,
                              given: int, alpha: float = 0.1) -> StreamIntervals:
    r"""The baseline: fixed split-conformal intervals :math:`\hat y \pm \hat q` per (lead, position),
    :math:`\hat q` the :math:`\lceil(n+1)(1-\alpha)\rceil`-th smallest validation score
    (:func:`sciflow.uq.conformal.conformal_quantile`; ``inf`` when ``n`` is too small), on the same
    stream; shapes as :func:`online_intervals`."""
    from sciflow.uq import ACIResult
    from sciflow.uq.conformal import conformal_quantile

    _check(val_mean, val_truth, test_mean, test_truth, given)
    q = conformal_quantile((val_truth - val_mean)[:, given:].abs(), alpha)  # (lead, *state)
    mean = test_mean[:, given:]
    lower, upper = mean - q, mean + q
    miscovered = (test_truth[:, given:] - mean).abs() > q
    per_lead = [ACIResult(lower[:, j], upper[:, j], None, miscovered[:, j], threshold=q[j].expand_as(mean[:, j]))
                for j in range(mean.shape[1])]
    return StreamIntervals(lower, upper, per_lead)


def stream_summary(s: StreamIntervals) -> dict[str, Any]:
    """Coverage (overall, per lead), the worst position's coverage (over leads and positions, and per
    lead), the mean width of the finite intervals, the shares of infinite and of empty intervals
    (overall, per lead): :meth:`sciflow.uq.ACIResult.summary` pooled and per lead."""
    from sciflow.uq import ACIResult

    pooled = ACIResult(s.lower, s.upper, None, torch.stack([r.miscovered for r in s.per_lead], 1)).summary()
    per = [r.summary() for r in s.per_lead]
    out: dict[str, Any] = {}
    for key in ("coverage", "worst_position_coverage", "mean_width", "infinite_fraction", "empty_fraction"):
        out[key] = pooled[key]
        out[f"{key}_per_lead"] = [p[key] for p in per]
    return out


def evaluate_online(exp: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """``evaluate --uq online-conformal`` of a run split by time (module docstring): the point scores
    of :func:`~sciflow.cli.evaluation.uq_metrics` (forecast mean only), the ``online`` block and the
    ``split_conformal`` baseline on the same stream."""
    from sciflow.cli.evaluation import check_no_horizon, forecast_batch, load_members, point_predictor, uq_metrics
    from sciflow.cli.pipeline import prepare_splits
    from sciflow.uq import ARScorecaster, Prediction, target_for

    e = exp.eval
    if exp.data.test_start is None:
        raise ConfigError("--uq online-conformal calibrates along a forecast stream split by time (data.test_start, "
                          "an ERA5 source): windows cut from independent initial conditions are exchangeable, "
                          "so use --uq conformal")
    check_no_horizon(exp)
    splits = prepare_splits(exp)
    if len(splits.val) == 0:
        raise ConfigError("--uq online-conformal starts from the validation scores: set data.val_start (validation "
                          "windows in [val_start, test_start))")
    base = point_predictor(exp, load_members(exp, run_dir))
    g = torch.Generator().manual_seed(exp.train.seed)
    val, test = forecast_batch(splits.val, None), forecast_batch(splits.test, None)
    val_mean = base.predict(val, generator=g).mean
    test_mean = base.predict(test, generator=g).mean
    val_truth, test_truth = target_for(val, val_mean), target_for(test, test_mean)
    history = int(splits.attrs.get("history", 1))
    given = history - (test.values.shape[1] - test_mean.shape[1])  # given steps in the prediction
    stride = int(splits.attrs["test_stride"])
    step_h = splits.attrs.get("time_step_hours")
    period = daily_period(stride, step_h)
    caster = partial(ARScorecaster, order=1, period=period) if e.online_scorecaster == "ar" else None
    try:
        online = online_intervals(val_mean, val_truth, test_mean, test_truth, given=given, stride=stride,
                                  method=e.online, alpha=e.alpha, rate=e.online_rate, scorecaster=caster)
    except (ValueError, ImportError) as err:  # the method's own checks (rate out of range, not installed)
        raise ConfigError(f"--uq online-conformal with eval.online={e.online}: {err}") from err
    split = split_conformal_intervals(val_mean, val_truth, test_mean, test_truth, given=given, alpha=e.alpha)
    lat = torch.tensor(splits.attrs["lat"], dtype=test_mean.dtype)
    n_leads = test_mean.shape[1] - given
    return {"uq": "online-conformal", "n_test_windows": len(test), "n_val_windows": len(val), "horizon": n_leads,
            "given": given, "channels": splits.attrs["channels"],
            **uq_metrics(Prediction(mean=test_mean), test_truth, e.alpha, given=given, lat=lat),
            "online": {"method": e.online, "rate": e.online_rate, "alpha": e.alpha, "nominal_coverage": 1 - e.alpha,
                       "scorecaster": None if caster is None else repr(caster()),
                       "issue_every_steps": stride,
                       "issue_every_hours": None if step_h is None else stride * float(step_h),
                       "delay_per_lead": lead_delays(n_leads, stride), **stream_summary(online)},
            "split_conformal": {"alpha": e.alpha, **stream_summary(split)}}
