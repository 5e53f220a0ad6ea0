"""``sciflow evaluate``: forecasts of a trained run scored with the UQ toolkit (intervals, samples,
ensembles, MC dropout, HMC, conformal), or accuracy / CRPS for irregular time series."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from sciflow.cli.pipeline import (Splits, is_irregular, load_run, load_trained, member_dirs, prepare_splits,
                                  windows)
from sciflow.cli.registries import _write_json
from sciflow.cli.superres import evaluate_superres, is_superres
from sciflow.config import ConfigError, ExperimentConfig


def evaluate_irregular(exp: ExperimentConfig, run_dir: Path, kind: str, splits: Splits) -> dict[str, Any]:
    """Test-split scores of an irregular-series run: accuracy / cross-entropy (classification) or
    CRPS, interval coverage and width, RMSE and Gaussian NLL (forecasting or interpolation; ``kind`` =
    samples | conformal | ensemble). The NLL is that of the Gaussian moment-matched to the predictive
    (closed-form variance or the draws), or for conformal intervals that of the Gaussian whose
    central ``1 - alpha`` interval they are (:attr:`Prediction.interval_std`)."""
    import torch.nn.functional as F

    from sciflow.uq import scores
    from sciflow.uq.conformal import AbsoluteResidual, SplitConformal
    from sciflow.uq.ensemble import DeepEnsemble
    from sciflow.uq.sampling import SamplingPredictor

    e = exp.eval
    g = torch.Generator().manual_seed(exp.train.seed)
    dirs = member_dirs(run_dir)

    def load_model(d, i):  # load_trained + precise BatchNorm statistics of the readout on the training split
        from sciflow.models.stable_sde import StableSDE

        model = load_trained(exp, d, i)
        if isinstance(model, StableSDE):
            n = len(splits.train)
            model.calibrate([splits.train.index(torch.arange(k, min(k + 256, n))) for k in range(0, n, 256)],
                            generator=torch.Generator().manual_seed(exp.train.seed))
        return model

    base = {"n_test": len(splits.test), "dataset": splits.attrs.get("name"),
            "missing_rate": splits.attrs.get("missing_rate")}
    if splits.attrs.get("task") == "classification":
        out = {"task": "classification", **base}
        for name, batch in (("val", splits.val), ("test", splits.test)):
            logits = torch.stack([load_model(d, i).predict(batch, generator=g)
                                  for i, d in enumerate(dirs)]).log_softmax(-1).logsumexp(0) - math.log(len(dirs))
            out[f"{name}_accuracy"] = float((logits.argmax(-1) == batch.labels).float().mean())
            out[f"{name}_cross_entropy"] = float(F.nll_loss(logits, batch.labels))
            out[f"{name}_nonfinite"] = int((~torch.isfinite(logits)).any(-1).sum())
        return out
    if kind == "ensemble":
        if len(dirs) < 2:
            raise ConfigError(f"{str(run_dir)!r} holds one model; train with eval.uq=ensemble first")
        predictor = DeepEnsemble([load_model(d, i) for i, d in enumerate(dirs)], alpha=e.alpha)
    elif kind in ("samples", "conformal"):
        predictor = SamplingPredictor(load_model(dirs[0], 0), e.n_samples, e.alpha)
        if kind == "conformal":
            predictor = SplitConformal(predictor, e.alpha, AbsoluteResidual(), separate_dims=(1, 2))
            predictor.calibrate([splits.val], generator=g)
    else:
        raise ConfigError(f"--uq {kind!r} for irregular forecasting: allowed values: samples, conformal, ensemble")
    pred = predictor.predict(splits.test, generator=g)
    if kind == "samples":
        pred = _point_forecast(pred, predictor.model, exp)
    y, m = splits.test.targets, splits.test.target_mask
    m = torch.ones_like(y, dtype=torch.bool) if m is None else m
    out = {"task": splits.attrs.get("task", "forecasting"), "uq": kind, **base, "alpha": e.alpha,
           "rmse": float((pred.mean - y)[m].pow(2).mean().sqrt())}
    if pred.lower is not None:
        moments = pred.variance is not None or (pred.samples is not None and pred.samples.shape[0] > 1)
        var = (pred.std if kind != "conformal" and moments else pred.interval_std).pow(2)
        out.update(nll=float(scores.gaussian_nll(pred.mean[m], var[m].clamp_min(1e-6), y[m])),
                   coverage=float(scores.interval_coverage(pred.lower[m], pred.upper[m], y[m])),
                   mean_interval_width=float(scores.interval_width(pred.lower[m], pred.upper[m])),
                   interval_score=float(scores.interval_score(pred.lower[m], pred.upper[m], y[m], e.alpha)))
    if pred.samples is not None and pred.samples.shape[0] > 1:  # both estimators, as uq_metrics
        out["crps"] = float(scores.crps_ensemble(pred.samples[:, m], y[m]))
        out["crps_fair"] = float(scores.crps_ensemble(pred.samples[:, m], y[m], fair=True))
    return out




# ------------------------------------------------------------------------------ evaluation


def _point_forecast(pred: Any, model: Any, exp: ExperimentConfig) -> Any:
    """``--uq samples`` of a deterministic model: its draws coincide, so the "interval" has zero width
    and a coverage of 0 would be a silent non-answer. Score the point forecast alone (no interval
    metrics) and say which methods give intervals."""
    if getattr(model, "stochastic", False):
        return pred
    warnings.warn(f"--uq samples: model {exp.model.name!r} is deterministic, so only its point forecast is "
                  "scored; for intervals use --uq conformal, ensemble, hmc, or mc-dropout (a model trained "
                  "with model.dropout > 0)", RuntimeWarning, stacklevel=2)
    return dataclasses.replace(pred, lower=None, upper=None)


def forecast_batch(batch, horizon: int | None, stride: int | None = None):
    """Forecast windows of ``horizon + 1`` steps (the first is the initial condition)."""
    T = batch.values.shape[1]
    h = T - 1 if horizon is None else min(horizon, T - 1)
    return windows(batch, h + 1, stride or max(1, (h + 1) // 2))


def uq_metrics(pred, truth: torch.Tensor, alpha: float, *, given: int = 1,
               lat: torch.Tensor | None = None) -> dict[str, Any]:
    """Scores of a predictive ``pred`` (``Prediction`` of shape ``(batch, time, *state)``) on the
    forecast steps (the first ``given`` steps of each window are the condition, not scored).

    With ``lat`` (fields ``(batch, time, channel, lat, lon)``) also the WeatherBench scores:
    latitude-weighted RMSE per lead and channel (Rasp et al. 2020, eq. 1) and, from samples,
    the latitude-weighted CRPS.

    ``crps`` is the CRPS of the empirical ensemble (the WeatherBench / Gneiting & Raftery 2007 form);
    ``crps_fair`` the fair estimator of the CRPS of the distribution the members are drawn from
    (Ferro 2014; what :func:`sciflow.uq.score_prediction` reports as ``crps``). They differ by
    ``E|X - X'| / (2m)`` for ``m`` members.
    """
    from sciflow.uq import scores

    g = given
    err = (pred.mean - truth)[:, g:]
    out: dict[str, Any] = {
        "rmse": float(err.pow(2).mean().sqrt()),
        "rmse_per_lead": err.pow(2).flatten(2).mean(dim=(0, 2)).sqrt().tolist(),
    }
    if lat is not None:
        from sciflow.models.neural_operator.weather import lat_weighted_crps, lat_weighted_rmse_per_lead

        per_lead = lat_weighted_rmse_per_lead(pred.mean[:, g:], truth[:, g:], lat)  # (lead, channel)
        out["lat_weighted_rmse"] = per_lead.mean(0).tolist()
        out["lat_weighted_rmse_per_lead"] = per_lead.tolist()
        if pred.samples is not None and pred.samples.shape[0] > 1:
            out["lat_weighted_crps"] = lat_weighted_crps(pred.samples[:, :, g:], truth[:, g:], lat).mean(0).tolist()
    if pred.lower is not None:
        lo, hi, y = pred.lower[:, g:], pred.upper[:, g:], truth[:, g:]
        inside = ((y >= lo) & (y <= hi)).float()
        out.update({
            "nominal_coverage": 1 - alpha,
            "coverage": float(inside.mean()),
            "coverage_per_lead": inside.flatten(2).mean(dim=(0, 2)).tolist(),
            "mean_interval_width": float((hi - lo).mean()),
            "interval_score": float(scores.interval_score(lo, hi, y, alpha).mean()),
        })
    if pred.samples is not None and pred.samples.shape[0] > 1:  # both estimators, named
        out["crps"] = float(scores.crps_ensemble(pred.samples[:, :, g:], truth[:, g:]).mean())
        out["crps_fair"] = float(scores.crps_ensemble(pred.samples[:, :, g:], truth[:, g:], fair=True).mean())
    return out


def load_members(exp: ExperimentConfig, run_dir: Path) -> list[Any]:
    """The trained model of ``run_dir``, or every member of an ensemble run, in eval mode."""
    return [load_trained(exp, d, i) for i, d in enumerate(member_dirs(run_dir))]


def point_predictor(exp: ExperimentConfig, models: Sequence[Any]):
    """The point forecast conformal methods wrap (``--uq conformal`` and ``online-conformal``): the
    ensemble mean of several members, else the model's single sample (its forecast if deterministic,
    one draw of a generative model)."""
    from sciflow.uq import UQ_METHODS

    return UQ_METHODS["ensemble"](models=list(models), alpha=exp.eval.alpha) if len(models) > 1 \
        else UQ_METHODS["samples"](models[0], n_samples=1, alpha=exp.eval.alpha)


HMC_MAX_WEIGHTS = 10_000  # beyond this, warn: HMC over a large network's weights neither mixes nor is quick


def _predictor(kind: str, exp: ExperimentConfig, run_dir: Path, splits: Splits):
    """The UQ predictor ``kind`` around the trained model(s) of ``run_dir``, built by
    :data:`sciflow.uq.UQ_METHODS` (conformal here: calibrated per lead time and component)."""
    from sciflow.uq import UQ_METHODS
    from sciflow.uq.base import target_for
    from sciflow.uq.conformal import AbsoluteResidual, SplitConformal

    if kind not in UQ_METHODS:
        raise ConfigError(f"--uq {kind!r}: allowed values: {', '.join(UQ_METHODS)}")
    e = exp.eval
    dirs = member_dirs(run_dir)
    if kind == "ensemble" and len(dirs) < 2:
        raise ConfigError(f"{str(run_dir)!r} holds one model; train an ensemble with eval.uq=ensemble "
                          "(eval.ensemble_size members) before `evaluate --uq ensemble`")
    models = load_members(exp, run_dir) if kind in ("ensemble", "conformal", "laplace") \
        else [load_trained(exp, dirs[0], 0)]
    if kind in ("hmc", "laplace") and models[0].stochastic:
        raise ConfigError(f"--uq {kind} puts a posterior on the weights of a point model; {exp.model.name!r} is "
                          "generative (its forecast is a draw): use --uq samples, ensemble or conformal")
    if kind == "ensemble":
        return UQ_METHODS["ensemble"](models=models, alpha=e.alpha)
    if kind == "samples":
        return UQ_METHODS["samples"](models[0], n_samples=e.n_samples, alpha=e.alpha)
    if kind == "mc-dropout":
        from sciflow.uq.mc_dropout import dropout_modules

        if not dropout_modules(models[0]):
            raise ConfigError(f"--uq mc-dropout: the trained {exp.model.name!r} has no dropout layers; train it "
                              "with model.dropout > 0 (e.g. model.dropout=0.1)")
        return UQ_METHODS["mc-dropout"](models[0], n_samples=max(2, e.n_samples), alpha=e.alpha)
    if kind == "conformal":
        base = point_predictor(exp, models)
        cal = forecast_batch(splits.val, e.horizon)
        # one quantile per lead time and component (separate_dims = time, state axes)
        conf = SplitConformal(base, e.alpha, AbsoluteResidual(), separate_dims=tuple(range(1, cal.values.ndim)))
        return conf.calibrate([cal], target=target_for)
    if kind == "laplace":  # an ensemble run: the mixture of its members' Laplace approximations (MoLA)
        from sciflow.uq import MixturePredictor

        laps = [laplace_predictor(m, splits, e) for m in models]
        return laps[0] if len(laps) == 1 else MixturePredictor(laps, alpha=e.alpha)
    if kind != "hmc":
        raise ConfigError(f"--uq {kind!r} has no evaluation path here; allowed: ensemble, samples, mc-dropout, "
                          f"conformal, hmc, laplace, online-conformal")
    # hmc: Gaussian prior N(0, 1) on the weights; likelihood noise = the trained model's residual std
    # over the forecast steps (the given ones are copied: residual 0)
    data = forecast_batch(splits.train, e.horizon)
    with torch.no_grad():
        pred = models[0].sample(data, 1)[0]
        g = _given_in(pred, data, splits)
        resid = pred[:, g:] - target_for(data, pred)[:, g:]
    noise = float(resid.flatten(2).std(dim=(0, 1)).mean().clamp_min(1e-3))
    n = max(4, e.n_samples)
    n_weights = sum(p.numel() for p in models[0].parameters() if p.requires_grad)
    if n_weights > HMC_MAX_WEIGHTS:
        warnings.warn(f"--uq hmc samples all {n_weights:,} weights of {exp.model.name!r}; HMC is meant for "
                      f"small networks (up to about {HMC_MAX_WEIGHTS:,} weights, docs/uq.md): expect a slow "
                      "run and chains that do not mix (read hmc_diagnostics)", RuntimeWarning, stacklevel=2)
    return UQ_METHODS["hmc"](models[0], train=[data], noise_std=noise, n_samples=n, n_warmup=n, n_chains=2,
                             n_leapfrog=10, mass_matrix=e.hmc_mass, seed=exp.train.seed, alpha=e.alpha)


def _given_in(pred: torch.Tensor, data: Any, splits: Splits) -> int:
    """How many leading steps of a forecast ``pred`` of the windows ``data`` are given, not forecast."""
    return int(splits.attrs.get("history", 1)) - (data.values.shape[1] - pred.shape[1])


LAPLACE_NOISE_ENTRIES = 2 ** 27   # noise per lead and first state axis while its K Gram matrices fit in 1 GB
LAPLACE_JACOBIAN_ENTRIES = 2 ** 24  # windows per Jacobian batch: at most this many (weight, output) pairs


def laplace_predictor(model: Any, splits: Splits, e: Any, noise_dims: Sequence[int] | None = None):
    """Linearised Laplace over the model's last linear layer: Gauss–Newton matrix from the training
    windows, noise fitted on the validation windows, both on the forecast steps only. ``noise_dims``
    (default): one noise variance per lead time and component (the first state axis: a channel,
    or a grid row), or per lead time where those groups' Gram matrices would not fit in memory."""
    from sciflow.uq import UQ_METHODS
    from sciflow.uq.linearized_laplace import subnetwork

    train, val = forecast_batch(splits.train, e.horizon), forecast_batch(splits.val, e.horizon)

    def observed(batch, pred):  # the forecast steps, not the given ones
        mask = torch.ones_like(pred, dtype=torch.bool)
        mask[:, :_given_in(pred, batch, splits)] = False
        return mask

    named = dict(model.named_parameters())
    n_weights = sum(named[k].numel() for k in subnetwork(model, None))
    per_window = max(1, n_weights * train.values[0].numel())
    size = max(1, LAPLACE_JACOBIAN_ENTRIES // per_window)
    chunks = lambda b: [b.index(slice(i, i + size)) for i in range(0, len(b), size)]  # noqa: E731
    shape = train.values.shape
    groups = shape[1] * (shape[2] if len(shape) > 2 else 1)
    if noise_dims is None:
        noise_dims = (1, 2) if len(shape) > 2 and groups * n_weights ** 2 <= LAPLACE_NOISE_ENTRIES else (1,)
    return UQ_METHODS["laplace"](model, train=chunks(train), calibration=chunks(val), observed=observed,
                                 noise_dims=noise_dims, n_samples=max(2, e.n_samples), alpha=e.alpha)


def _laplace_diagnostics(lap: Any) -> dict[str, Any]:
    """The fitted hyperparameters of the Laplace posterior (the noise variances over the
    ``noise_dims``: lead time, and component where present); of each member's, for a mixture."""
    from sciflow.uq import MixturePredictor

    if isinstance(lap, MixturePredictor):
        return {"mixture_of": len(lap.components), "members": [_laplace_diagnostics(c) for c in lap.components]}
    return {"weights": lap.weights.names, "n_params": lap.n_params, "prior_precision": lap.prior_precision,
            "effective_parameters": lap.effective_parameters, "noise_dims": list(lap.noise_dims),
            "observation_noise": lap.noise.tolist(), "noise_fit": lap.noise_fit}


def _hmc_diagnostics(hmc: Any, test: Any, mass_matrix: str) -> dict[str, Any]:
    """What says whether the HMC chains can be trusted: the function-space split-R̂ / ESS of the
    predictions at the test inputs (the one to read for a network, Izmailov et al. 2021), the
    weight-space summary with acceptance rate and divergences, and the mass matrix adapted."""
    fn = hmc.function_diagnostics(test).summary()
    converged = bool(fn["max_rhat"] < 1.05)
    if not converged:
        warnings.warn(f"HMC: the chains disagree on the test predictions (function-space max R-hat "
                      f"{fn['max_rhat']:.3g} >= 1.05, min bulk ESS {fn['min_ess_bulk']:.3g}); the intervals are not "
                      "yet a posterior's: run longer chains (eval.n_samples, or sciflow.uq.HMC.run), or adapt a "
                      "low-rank mass matrix (eval.hmc_mass=low_rank)",
                      RuntimeWarning, stacklevel=2)
    return {"function_space": fn, "weight_space": hmc.result.summary(), "converged": converged,
            "mass_matrix": mass_matrix}


def check_no_horizon(exp: ExperimentConfig) -> None:
    """A split by time has no ``eval.horizon``: its windows fix the forecast length."""
    if exp.eval.horizon is not None:
        raise ConfigError("eval.horizon does not apply to a split by time: every window has data.window steps, "
                          "the first data.history given")


def evaluate_run(run_dir: Path, uq: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a trained run on its test split with uncertainty; writes ``eval_<uq>.json``."""
    exp = load_run(run_dir, overrides)
    kind = uq or exp.eval.uq
    if kind == "online-conformal":
        from sciflow.cli.online_evaluation import evaluate_online

        metrics = evaluate_online(exp, Path(run_dir))
        _write_json(metrics, Path(run_dir) / f"eval_{kind}.json")
        return metrics
    splits = prepare_splits(exp)
    if is_irregular(exp):
        metrics = evaluate_irregular(exp, Path(run_dir), kind, splits)
        stem = "classification" if metrics["task"] == "classification" else kind  # no UQ method for accuracy
        _write_json(metrics, Path(run_dir) / f"eval_{stem}.json")
        return metrics
    if splits.attrs.get("split") == "time":
        check_no_horizon(exp)
    if is_superres(exp):
        metrics = evaluate_superres(exp, Path(run_dir), kind, splits)
        _write_json(metrics, Path(run_dir) / f"eval_{kind}.json")
        return metrics
    predictor = _predictor(kind, exp, Path(run_dir), splits)
    test = forecast_batch(splits.test, exp.eval.horizon)
    pred = predictor.predict(test, generator=torch.Generator().manual_seed(exp.train.seed))
    if kind == "samples":
        pred = _point_forecast(pred, predictor.model, exp)
    given = int(splits.attrs.get("history", 1))
    lat = torch.tensor(splits.attrs["lat"], dtype=test.values.dtype) if splits.attrs.get("split") == "time" else None
    metrics = {"uq": kind, "n_test_windows": len(test), "horizon": test.values.shape[1] - given, "given": given,
               **({"channels": splits.attrs["channels"]} if lat is not None else {}),
               **uq_metrics(pred, test.values, exp.eval.alpha, given=given, lat=lat)}
    if kind == "hmc":
        metrics["hmc_diagnostics"] = _hmc_diagnostics(predictor, test, exp.eval.hmc_mass)
    if kind == "laplace":
        metrics["laplace"] = _laplace_diagnostics(predictor)
    _write_json(metrics, Path(run_dir) / f"eval_{kind}.json")
    return metrics


