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

The score (``eval.online_score``) is the absolute residual :math:`|y - \hat y|` of the point
forecast (``absolute``, the default: the ensemble mean of several members, else the model's single
sample, the base of ``--uq conformal``), or that residual over the forecast's own spread,
:math:`|y - \hat y|/\hat\sigma` (``normalized``, Lei et al. 2018 §5.2 "locally weighted": the mean
and standard deviation of the ensemble members, or of ``eval.n_samples`` draws of a generative
model), so that the intervals :math:`\hat y \pm q\hat\sigma` widen where the forecast is unsure
(flow-dependent uncertainty) and the method learns one factor :math:`q` per position and lead. One
stream per position (channel, lat, lon) and lead. The baseline in the same run: fixed split-conformal
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


def _check(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, given: int,
           val_std: Tensor | None = None, test_std: Tensor | None = None) -> None:
    if (val_std is None) != (test_std is None):
        raise ValueError("give the spread of both the validation and the test forecasts (val_std, test_std), "
                         "or neither")
    if val_std is not None:
        if val_std.shape != val_mean.shape or test_std.shape != test_mean.shape:
            raise ValueError(f"spreads and forecasts differ in shape: val {tuple(val_std.shape)} vs "
                             f"{tuple(val_mean.shape)}, test {tuple(test_std.shape)} vs {tuple(test_mean.shape)}")
        if not (bool(torch.isfinite(val_std).all()) and bool(torch.isfinite(test_std).all())
                and bool((val_std >= 0).all()) and bool((test_std >= 0).all())):
            raise ValueError("the forecast spread must be finite and >= 0 (NaN, inf or a negative value found)")
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


def _forecast(mean: Tensor, std: Tensor | None, part: Any) -> Any:
    """The forecast ``mean[part]`` as a Prediction, with the variance ``std[part]**2`` when given."""
    from sciflow.uq import Prediction

    return Prediction(mean=mean[part]) if std is None else Prediction(mean=mean[part], variance=std[part] ** 2)


def _score(std: Tensor | None) -> Any:
    from sciflow.uq import AbsoluteResidual, NormalizedResidual

    return AbsoluteResidual() if std is None else NormalizedResidual()


def online_intervals(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, *, given: int,
                     stride: int, method: str, alpha: float = 0.1, rate: float | None = None,
                     scorecaster: Callable[[], Any] | None = None, val_std: Tensor | None = None,
                     test_std: Tensor | None = None) -> StreamIntervals:
    """Online conformal intervals for a stream of forecast windows.

    ``val_*``: ``(n_val, time, *state)`` validation forecasts and truths (the calibration scores);
    ``test_*``: ``(n_test, time, *state)``, in the order they were issued, one every ``stride``
    steps. The first ``given`` steps of a window are its initial condition (not scored). Per lead
    ``j`` (``h = j + 1``): ``online_conformal(method, alpha, rate=rate, delay=ceil(h/stride) - 1)``
    with :class:`~sciflow.uq.AbsoluteResidual` (or, given the forecasts' spreads ``val_std`` and
    ``test_std``, :class:`~sciflow.uq.NormalizedResidual`), calibrated on the validation scores at
    that lead, then run over the test windows. ``scorecaster``: makes each lead's scorecaster
    (``method="pid"``).
    """
    from sciflow.uq import online_conformal

    _check(val_mean, val_truth, test_mean, test_truth, given, val_std, test_std)
    score = _score(val_std)
    results = []
    for j, delay in enumerate(lead_delays(val_mean.shape[1] - given, stride)):
        k = given + j
        m = online_conformal(method, alpha, rate=rate, score=score, delay=delay,
                             scorecaster=None if scorecaster is None else scorecaster())
        m.calibrate_scores(score.score(_forecast(val_mean, val_std, (slice(None), k)), val_truth[:, k]))
        results.append(m.run(_forecast(test_mean, test_std, (slice(None), k)), test_truth[:, k]))
    return StreamIntervals(torch.stack([r.lower for r in results], 1), torch.stack([r.upper for r in results], 1),
                           results)


def split_conformal_intervals(val_mean: Tensor, val_truth: Tensor, test_mean: Tensor, test_truth: Tensor, *,
                              given: int, alpha: float = 0.1, val_std: Tensor | None = None,
                              test_std: Tensor | None = None) -> StreamIntervals:
    r"""The baseline: fixed split-conformal intervals :math:`\hat y \pm \hat q` per (lead, position),
    :math:`\hat q` the :math:`\lceil(n+1)(1-\alpha)\rceil`-th smallest validation score
    (:func:`sciflow.uq.conformal.conformal_quantile`; ``inf`` when ``n`` is too small), on the same
    stream, with the same score as :func:`online_intervals` (given the spreads:
    :math:`\hat y \pm \hat q\hat\sigma`); shapes as :func:`online_intervals`."""
    from sciflow.uq import ACIResult
    from sciflow.uq.conformal import conformal_quantile

    _check(val_mean, val_truth, test_mean, test_truth, given, val_std, test_std)
    score = _score(val_std)
    leads = (slice(None), slice(given, None))
    q = conformal_quantile(score.score(_forecast(val_mean, val_std, leads), val_truth[leads]), alpha)  # (lead, *state)
    test = _forecast(test_mean, test_std, leads)
    mean = test.mean
    lower, upper = score.interval(test, q.expand_as(mean))
    miscovered = score.score(test, test_truth[:, given:]) > q
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


def spread_predictor(exp: ExperimentConfig, models: list[Any]) -> tuple[Any, str]:
    """The forecast with a spread for ``eval.online_score=normalized`` and where the spread comes
    from: the ensemble of several members, else ``eval.n_samples`` draws of a generative model."""
    from sciflow.uq import UQ_METHODS

    if len(models) > 1:
        return UQ_METHODS["ensemble"](models=models, alpha=exp.eval.alpha), f"ensemble of {len(models)} members"
    if not getattr(models[0], "stochastic", False):
        raise ConfigError("eval.online_score=normalized divides each residual by the forecast's spread, and a single "
                          f"deterministic {type(models[0]).__name__} has none: train an ensemble "
                          "(eval.uq=ensemble) or use a generative model, or keep eval.online_score=absolute")
    if exp.eval.n_samples < 2:
        raise ConfigError(f"eval.online_score=normalized takes the spread of eval.n_samples draws: need >= 2, "
                          f"got {exp.eval.n_samples}")
    return (UQ_METHODS["samples"](models[0], n_samples=exp.eval.n_samples, alpha=exp.eval.alpha),
            f"{exp.eval.n_samples} samples")


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
    normalized = e.online_score == "normalized"
    models = load_members(exp, run_dir)
    base, spread_from = spread_predictor(exp, models) if normalized else (point_predictor(exp, models), None)
    g = torch.Generator().manual_seed(exp.train.seed)
    val, test = forecast_batch(splits.val, None), forecast_batch(splits.test, None)
    val_pred, test_pred = base.predict(val, generator=g), base.predict(test, generator=g)
    val_mean, test_mean = val_pred.mean, test_pred.mean
    val_std, test_std = (val_pred.std, test_pred.std) if normalized else (None, None)
    val_truth, test_truth = target_for(val, val_mean), target_for(test, test_mean)
    history = int(splits.attrs.get("history", 1))
    given = history - (test.values.shape[1] - test_mean.shape[1])  # given steps in the prediction
    stride = int(splits.attrs["test_stride"])
    step_h = splits.attrs.get("time_step_hours")
    period = daily_period(stride, step_h)
    caster = partial(ARScorecaster, order=1, period=period) if e.online_scorecaster == "ar" else None
    try:
        online = online_intervals(val_mean, val_truth, test_mean, test_truth, given=given, stride=stride,
                                  method=e.online, alpha=e.alpha, rate=e.online_rate, scorecaster=caster,
                                  val_std=val_std, test_std=test_std)
    except (ValueError, ImportError) as err:  # the method's own checks (rate out of range, not installed)
        raise ConfigError(f"--uq online-conformal with eval.online={e.online}: {err}") from err
    split = split_conformal_intervals(val_mean, val_truth, test_mean, test_truth, given=given, alpha=e.alpha,
                                      val_std=val_std, test_std=test_std)
    lat = torch.tensor(splits.attrs["lat"], dtype=test_mean.dtype)
    n_leads = test_mean.shape[1] - given
    return {"uq": "online-conformal", "n_test_windows": len(test), "n_val_windows": len(val), "horizon": n_leads,
            "given": given, "channels": splits.attrs["channels"],
            **uq_metrics(Prediction(mean=test_mean), test_truth, e.alpha, given=given, lat=lat),
            "score": e.online_score, "spread_from": spread_from,
            "online": {"method": e.online, "rate": e.online_rate, "alpha": e.alpha, "nominal_coverage": 1 - e.alpha,
                       "scorecaster": None if caster is None else repr(caster()),
                       "issue_every_steps": stride,
                       "issue_every_hours": None if step_h is None else stride * float(step_h),
                       "delay_per_lead": lead_delays(n_leads, stride), **stream_summary(online)},
            "split_conformal": {"alpha": e.alpha, **stream_summary(split)}}
