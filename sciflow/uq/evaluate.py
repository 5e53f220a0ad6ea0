"""One call that scores any UQ method on test batches: the back end of
``sciflow evaluate RUN --uq ensemble|mc-dropout|hmc|conformal|samples``.

``evaluate(predictor, test)`` predicts every batch, concatenates along the batch axis and returns a
flat ``dict[str, float]`` of metrics (JSON-ready); with ``out_dir`` it also writes
``metrics.json`` and the diagnostic PNGs. A :class:`~sciflow.uq.conformal.SplitConformal` that
has not been calibrated is calibrated on ``calibration`` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from sciflow.data.io import write_json
from sciflow.uq import plots
from sciflow.uq import scores as S
from sciflow.uq.base import Predictor, cat_observed, observed_for, target_for
from sciflow.uq.conformal import SplitConformal
from sciflow.uq.prediction import Prediction


def _cat(preds: list[Prediction]) -> Prediction:
    def cat(name: str, axis: int) -> Tensor | None:
        xs = [getattr(p, name) for p in preds]
        return None if xs[0] is None else torch.cat(xs, axis)

    return Prediction(cat("mean", 0), cat("lower", 0), cat("upper", 0), cat("samples", 1),
                      cat("variance", 0), preds[0].alpha)


def predict_all(predictor: Predictor, batches: Iterable[Any], target: Callable[[Any, Tensor], Tensor] = target_for,
                *, generator: torch.Generator | None = None) -> tuple[Prediction, Tensor]:
    """Predictions and truths of every batch, concatenated along the batch axis."""
    pred, y, _ = _predict_observed(predictor, batches, target, None, generator)
    return pred, y


def _predict_observed(predictor: Predictor, batches: Iterable[Any], target: Callable[[Any, Tensor], Tensor],
                      observed: Callable[[Any, Tensor], Tensor | None] | None,
                      generator: torch.Generator | None) -> tuple[Prediction, Tensor, Tensor | None]:
    """:func:`predict_all` plus the concatenated ``observed`` masks (``None`` when no batch had one)."""
    preds, ys, masks = [], [], []
    for b in batches:
        p = predictor.predict(b, generator=generator)
        preds.append(p)
        ys.append(target(b, p.mean))
        masks.append(None if observed is None else observed(b, p.mean))
    if not preds:
        raise ValueError("no test batches")
    return _cat(preds), torch.cat(ys), cat_observed(masks, ys)


def _select(pred: Prediction, y: Tensor, observed: Tensor,
            weights: Tensor | None) -> tuple[Prediction, Tensor, Tensor | None]:
    """The observed entries only, as one row: ``(1, n_observed)`` (samples ``(m, 1, n_observed)``)."""
    def pick(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[observed].unsqueeze(0)

    samples = None if pred.samples is None else pred.samples[:, observed].unsqueeze(1)
    w = None if weights is None else pick(torch.broadcast_to(weights.to(y.dtype), y.shape))
    return (Prediction(pick(pred.mean), pick(pred.lower), pick(pred.upper), samples, pick(pred.variance),
                       pred.alpha), pick(y), w)


def score_prediction(pred: Prediction, y: Tensor, *, weights: Tensor | None = None,
                     observed: Tensor | None = None) -> dict[str, float]:
    """Every applicable score of ``pred`` against ``y`` (all averaged over every axis; with
    ``observed``, a bool mask like ``y``, over its observed entries only).

    Always: RMSE of the mean. With an interval: coverage, mean width, interval score. With a
    spread (variance or >= 2 samples): Gaussian NLL of the moment-matched predictive, PIT
    calibration error, spread–skill. CRPS: the fair ensemble estimator (Ferro 2014) from >= 2
    samples (``sciflow evaluate`` reports it as ``crps_fair``, its ``crps`` is the empirical
    ensemble's), else the Gaussian closed form from the variance.
    """
    n = int(y.shape[0])
    if observed is not None:
        if tuple(observed.shape) != tuple(y.shape):
            raise ValueError(f"observed has shape {tuple(observed.shape)}, the truth {tuple(y.shape)}")
        pred, y, weights = _select(pred, y, observed.bool(), weights)
        if y.numel() == 0:
            raise ValueError("no observed truth to score")
    if torch.isnan(y).any():
        raise ValueError("truth contains NaN")
    y = y.to(pred.mean.dtype)
    out: dict[str, float] = {"rmse": float(S.rmse(pred.mean, y, weights=weights)), "n": n}
    if pred.has_interval:
        a = pred.alpha if pred.alpha is not None else 0.1
        out |= {"alpha": a, "coverage": float(S.interval_coverage(pred.lower, pred.upper, y, weights=weights)),
                "width": float(S.interval_width(pred.lower, pred.upper, weights=weights)),
                "interval_score": float(S.interval_score(pred.lower, pred.upper, y, a, weights=weights))}
    has_samples = pred.samples is not None and pred.samples.shape[0] >= 2
    if pred.variance is not None or has_samples:
        var = pred.variance if pred.variance is not None else pred.samples.var(0)
        var = var.clamp_min(1e-12)
        out["nll"] = float(S.gaussian_nll(pred.mean, var, y, weights=weights))
        pit = (S.pit(pred.samples, y) if has_samples and pred.variance is None
               else S.pit_gaussian(pred.mean, var.sqrt(), y))
        out["calibration_error"] = float(S.calibration_error(pit))
        out["spread_skill"] = float(var.mean().sqrt() / S.rmse(pred.mean, y))
    if has_samples:
        out["crps"] = float(S.crps_ensemble(pred.samples, y, fair=True, weights=weights))
        out["spread_skill"] = float(S.spread_skill_ratio(pred.samples, y, weights=weights))
        out["n_samples"] = int(pred.samples.shape[0])
    elif pred.variance is not None:
        out["crps"] = float(S.crps_gaussian(pred.mean, pred.variance.clamp_min(1e-12).sqrt(), y, weights=weights))
    return out


def write_plots(pred: Prediction, y: Tensor, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Reliability diagram, PIT/rank histogram, spread–skill and a predictive band of sample 0."""
    out = Path(out_dir)
    paths = []
    has_samples = pred.samples is not None and pred.samples.shape[0] >= 2
    if pred.variance is not None or has_samples:
        var = pred.variance if pred.variance is not None else pred.samples.var(0)
        pit = (S.pit(pred.samples, y) if has_samples and pred.variance is None
               else S.pit_gaussian(pred.mean, var.clamp_min(1e-12).sqrt(), y))
        paths.append(plots.reliability_diagram(pit, out / f"{prefix}reliability.png"))
        paths.append(plots.pit_histogram(pit, out / f"{prefix}pit_histogram.png"))
        paths.append(plots.spread_skill_plot(var.sqrt(), pred.mean - y, out / f"{prefix}spread_skill.png"))
    if has_samples and pred.samples.shape[0] <= 200:
        paths.append(plots.rank_histogram_plot(S.rank_histogram(pred.samples, y), out / f"{prefix}rank_histogram.png"))
    one = Prediction(pred.mean[0].reshape(-1),
                     None if pred.lower is None else pred.lower[0].reshape(-1),
                     None if pred.upper is None else pred.upper[0].reshape(-1), alpha=pred.alpha)
    paths.append(plots.predictive_band(one, y[0].reshape(-1), out / f"{prefix}band.png",
                                       xlabel="flattened prediction index of sample 0"))
    return paths


def evaluate(predictor: Predictor, test: Iterable[Any], *, calibration: Iterable[Any] | None = None,
             target: Callable[[Any, Tensor], Tensor] = target_for,
             observed: Callable[[Any, Tensor], Tensor | None] | None = observed_for,
             weights: Tensor | None = None, out_dir: str | Path | None = None,
             generator: torch.Generator | None = None, name: str | None = None) -> dict[str, Any]:
    """Score ``predictor`` on ``test`` batches; returns the metrics dict (see :func:`score_prediction`).

    ``calibration``: held-out batches for an uncalibrated :class:`SplitConformal`. ``observed``:
    which truth entries count (default :func:`~sciflow.uq.base.observed_for`: the ``target_mask``
    of irregular batches). ``out_dir``: write ``metrics.json`` (atomically) and the PNGs there.
    ``name`` labels the method in the dict.
    """
    if not isinstance(predictor, Predictor):
        raise TypeError(f"evaluate takes a sciflow.uq Predictor, got {type(predictor).__name__}")
    if isinstance(predictor, SplitConformal) and predictor.q is None:
        if calibration is None:
            raise ValueError("SplitConformal is not calibrated: pass calibration= batches")
        predictor.calibrate(calibration, target, observed=observed, generator=generator)
    pred, y, mask = _predict_observed(predictor, test, target, observed, generator)
    metrics: dict[str, Any] = {"method": name or type(predictor).__name__,
                               **score_prediction(pred, y, weights=weights, observed=mask)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if mask is not None:  # the plots of the observed entries (one flattened row)
            pred, y, _ = _select(pred, y, mask, None)
        metrics["plots"] = [str(p) for p in write_plots(pred, y, out)]
        write_json(metrics, out / "metrics.json")
    return metrics
