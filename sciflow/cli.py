"""The ``sciflow`` command: the only module that knows every registry.

    sciflow list [models|datasets|solvers|configs]
    sciflow generate NAME --n 32 --seed 0 --out data.nc [key=value ...]
    sciflow train CONFIG.yaml [train.max_steps=500 ...] [--run-dir DIR] [--resume]
    sciflow evaluate RUN_DIR [--uq conformal|samples|ensemble|mc-dropout|hmc]
    sciflow demo [--out runs/demo] [--quick] [--step NAME ...]
    sciflow benchmark [NAMES ...] --scale smoke|cpu|gpu [--out DIR]

Experiments here are trajectory forecasting (models taking a ``TrajectoryBatch``); other model
families ship their own scripts and benchmarks until they declare a data pipeline.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import yaml

from sciflow.config import ConfigError, ExperimentConfig, load_experiment, parse_overrides

def _write_json(obj: Any, path: Path) -> None:
    from sciflow.data.io import write_json  # strict JSON (non-finite → "inf"/"nan"), atomic

    write_json(obj, path)


# ------------------------------------------------------------------------------ registries


def _models() -> Mapping[str, type]:
    from sciflow.models.registry import MODELS

    return MODELS


def _generators() -> Mapping[str, Callable[..., Any]]:
    try:
        from sciflow.data.registry import GENERATORS
    except ImportError:  # the data subsystem is optional for listing
        return {}
    return GENERATORS


def _solvers() -> Mapping[str, type]:
    try:
        from sciflow.solvers.registry import SOLVERS
    except ImportError:
        return {}
    return SOLVERS


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else ""


# ------------------------------------------------------------------------------ data pipeline


@dataclass(frozen=True)
class Splits:
    """Whole trajectories (``TrajectoryBatch``) split by sample, plus their source dataset attrs."""

    train: Any
    val: Any
    test: Any
    attrs: dict[str, Any]


def load_dataset(exp: ExperimentConfig):
    """The experiment's ``xarray.Dataset``: generated in-process or read from ``data.path``."""
    d = exp.data
    if d.path is not None:
        from sciflow.data.io import read

        return read(d.path)
    if d.generator is None:
        raise ConfigError("set data.generator (see `sciflow list datasets`) or data.path")
    gens = _generators()
    if d.generator not in gens:
        raise ConfigError(f"data.generator = {d.generator!r} is not registered; allowed values: {sorted(gens)}")
    return gens[d.generator](**dict(d.params), seed=d.seed)


def dataset_to_batch(ds, variable: str | None = None, dtype: torch.dtype = torch.float32):
    """``(sample, time, *space)`` variable of a schema dataset -> ``TrajectoryBatch``."""
    import numpy as np

    from sciflow.data.batches import TrajectoryBatch
    from sciflow.data.schema import trajectory_variables

    names = trajectory_variables(ds)
    name = variable or ("state" if "state" in names else (names[0] if names else None))
    if name is None or name not in ds.data_vars:
        raise ConfigError(f"data.variable = {name!r} is not a trajectory variable; available: {names}")
    values = torch.as_tensor(np.array(ds[name].values), dtype=dtype)
    t = np.asarray(ds["time"].values)
    if not np.issubdtype(t.dtype, np.number):  # datetimes -> hours since the first time
        t = (t - t[0]) / np.timedelta64(1, "h")
    return TrajectoryBatch(values=values, times=torch.as_tensor(np.array(t, dtype=np.float64), dtype=dtype))


def split_samples(batch, val_fraction: float, test_fraction: float, seed: int):
    """Random split of whole trajectories (no window straddles two splits)."""
    n = len(batch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ConfigError(f"{n} trajectories cannot be split into train/val/test with "
                          f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}")
    test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return batch.index(train.sort().values), batch.index(val.sort().values), batch.index(test.sort().values)


def windows(batch, window: int | None, stride: int):
    """Cut ``(batch, time, *state)`` trajectories into ``(n_windows, window, *state)`` pieces.

    A uniform grid gives every window the shared relative grid ``times[:window] - times[0]``
    (autonomous dynamics); otherwise windows carry their own absolute times.
    """
    from sciflow.data.batches import TrajectoryBatch

    if window is None:
        return batch
    T = batch.values.shape[1]
    if window > T:
        raise ConfigError(f"data.window = {window} exceeds the {T} time steps of the trajectories")
    v = batch.values.unfold(1, window, stride)  # (B, nW, *state, window)
    v = v.movedim(-1, 2).reshape(-1, window, *batch.values.shape[2:])
    t = batch.times
    dt = t.diff(dim=-1)
    if t.ndim == 1 and bool(torch.allclose(dt, dt[0].expand_as(dt), rtol=1e-4, atol=0)):
        return TrajectoryBatch(values=v, times=t[:window] - t[0])
    tw = (t if t.ndim == 2 else t.expand(batch.values.shape[0], -1)).unfold(1, window, stride)
    return TrajectoryBatch(values=v, times=tw.reshape(-1, window))


def prepare_splits(exp: ExperimentConfig) -> Splits:
    if is_irregular(exp):
        return prepare_irregular_splits(exp)
    ds = load_dataset(exp)
    full = dataset_to_batch(ds, exp.data.variable)
    train, val, test = split_samples(full, exp.data.val_fraction, exp.data.test_fraction, exp.data.seed)
    return Splits(train, val, test, dict(ds.attrs))


# --- irregular time series (models whose batch_type is IrregularBatch; sciflow.data.timeseries)


def is_irregular(exp: ExperimentConfig) -> bool:
    """Whether the experiment's model takes ``IrregularBatch`` (declared ``batch_type``)."""
    from sciflow.data.batches import IrregularBatch

    cls = _models().get(exp.model.name)
    return cls is not None and cls.batch_type is IrregularBatch


def prepare_irregular_splits(exp: ExperimentConfig) -> Splits:
    """Train/val/test ``IrregularBatch`` splits: a UEA/UCR problem by ``data.name`` (classification,
    ``data.missing_rate`` removed per channel, stratified split) or an irregular Lorenz dataset by
    ``data.generator`` (forecasting of the last ``data.n_target`` observations)."""
    from sciflow.data.timeseries import classification_splits, forecasting_splits, load_uea

    d = exp.data
    if d.window is not None:
        raise ConfigError("data.window does not apply to irregular time series (whole series are used)")
    fractions = (1.0 - d.val_fraction - d.test_fraction, d.val_fraction, d.test_fraction)
    try:
        if d.name is not None:
            s = classification_splits(load_uea(d.name, d.root), missing_rate=d.missing_rate, seed=d.seed,
                                      fractions=fractions)
        elif d.generator is not None or d.path is not None:
            from sciflow.data.pdes.lorenz import to_irregular_batch

            if d.n_target is None:
                raise ConfigError("forecasting irregular series needs data.n_target (observations to forecast)")
            if d.generator is not None and d.missing_rate and "missing_rate" not in d.params:
                from dataclasses import replace

                exp = replace(exp, data=replace(d, params={**d.params, "missing_rate": d.missing_rate}))
            ds = load_dataset(exp)
            s = forecasting_splits(to_irregular_batch(ds, n_target=d.n_target), seed=d.seed, fractions=fractions,
                                   info={"name": d.generator or d.path, "missing_rate": d.missing_rate})
        else:
            raise ConfigError("set data.name (a UEA/UCR problem, e.g. BasicMotions) or data.generator "
                              "(an irregular Lorenz dataset with data.n_target) for this model")
    except (FileNotFoundError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"data: {e}") from e
    attrs = {**s.info, "class_names": list(s.class_names), "n_channels": s.n_channels, "n_classes": s.n_classes,
             "mean": s.mean.tolist(), "std": s.std.tolist()}
    return Splits(s.train, s.val, s.test, attrs)


def resolve_model_for_data(exp: ExperimentConfig, splits: Splits) -> ExperimentConfig:
    """Set the data-defined fields of the model config (``input_channels``, ``n_classes``) from
    the irregular splits, so one YAML serves every dataset; a task the data cannot serve is an error."""
    import dataclasses

    if not is_irregular(exp):
        return exp
    cfg = exp.model.config
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    if "input_channels" in fields:
        changes["input_channels"] = splits.attrs["n_channels"]
    if "task" in fields:
        classify = splits.attrs.get("task") == "classification"
        if (cfg.task == "classification") != classify:
            raise ConfigError(f"model.task = {cfg.task!r} does not fit the data ({splits.attrs.get('task')}: "
                              + ("set model.task=classification" if classify else "use data.name for classification")
                              + ")")
        if classify and "n_classes" in fields:
            changes["n_classes"] = splits.attrs["n_classes"]
    if not changes:
        return exp
    model = dataclasses.replace(exp.model, config=dataclasses.replace(cfg, **changes))
    return dataclasses.replace(exp, model=model)


def evaluate_irregular(exp: ExperimentConfig, run_dir: Path, kind: str, splits: Splits) -> dict[str, Any]:
    """Test-split scores of an irregular-series run: accuracy / cross-entropy (classification) or
    CRPS, interval coverage and width, RMSE (forecasting; ``kind`` = samples | conformal | ensemble)."""
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
    y, m = splits.test.targets, splits.test.target_mask
    m = torch.ones_like(y, dtype=torch.bool) if m is None else m
    out = {"task": "forecasting", "uq": kind, **base, "alpha": e.alpha,
           "rmse": float((pred.mean - y)[m].pow(2).mean().sqrt()),
           "coverage": float(scores.interval_coverage(pred.lower[m], pred.upper[m], y[m])),
           "mean_interval_width": float(scores.interval_width(pred.lower[m], pred.upper[m])),
           "interval_score": float(scores.interval_score(pred.lower[m], pred.upper[m], y[m], e.alpha))}
    if pred.samples is not None and pred.samples.shape[0] > 1:
        out["crps"] = float(scores.crps_ensemble(pred.samples[:, m], y[m]))
    return out


def build_model(exp: ExperimentConfig, seed: int):
    from sciflow.training import seed_everything

    seed_everything(seed)  # parameter initialisation is drawn from the seeded global RNG
    return _models()[exp.model.name](exp.model.config)


def _prepare_model_for_data(model, train_batch) -> None:
    model.fit_scaler(train_batch)  # normalisation buffers from the training split (no-op by default)


def train_experiment(exp: ExperimentConfig, run_dir: Path, *, resume: bool = False, splits: Splits | None = None,
                     member: int | None = None):
    """Train one model of ``exp`` into ``run_dir`` (``member`` i: seed ``train.seed + i``)."""
    from dataclasses import replace

    from sciflow.training import BatchLoader, fit

    splits = splits or prepare_splits(exp)
    seed = exp.train.seed + (member or 0)
    cfg = replace(exp.train, seed=seed)
    model = build_model(exp, seed)
    _prepare_model_for_data(model, splits.train)
    tr = windows(splits.train, exp.data.window, exp.data.stride)
    va = windows(splits.val, exp.data.window, exp.data.stride) if len(splits.val) else None
    train_loader = BatchLoader(tr, exp.data.batch_size, seed=seed)
    val_loader = BatchLoader(va, max(exp.data.batch_size, 256), shuffle=False) if va is not None else None
    result = fit(model, train_loader, val_loader, cfg, run_dir=run_dir, resume=resume, config=exp.to_dict())
    return model, result


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0  # torchrun sets RANK; rank 0 writes files


def write_config(exp: ExperimentConfig, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    if _is_main_process():
        tmp = path.with_name("config.yaml.tmp")
        tmp.write_text(yaml.safe_dump(exp.to_dict(), sort_keys=False))
        tmp.replace(path)
    return path


def load_run(run_dir: Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run folder (no config.yaml); train one with `sciflow train`")
    return load_experiment(path, overrides)


def member_dirs(run_dir: Path) -> list[Path]:
    members = sorted(p for p in Path(run_dir).glob("member_*") if p.is_dir())
    return members or [Path(run_dir)]


def load_trained(exp: ExperimentConfig, run_dir: Path, member: int = 0):
    from sciflow.training import CheckpointManager

    model = build_model(exp, exp.train.seed + member)
    found = CheckpointManager(Path(run_dir) / "checkpoints").load_latest()
    if found is None:
        raise ConfigError(f"no checkpoint in {str(run_dir)!r}/checkpoints")
    model.load_state_dict(found[0]["model"])
    model.eval()
    return model


# ------------------------------------------------------------------------------ evaluation


def forecast_batch(batch, horizon: int | None, stride: int | None = None):
    """Forecast windows of ``horizon + 1`` steps (the first is the initial condition)."""
    T = batch.values.shape[1]
    h = T - 1 if horizon is None else min(horizon, T - 1)
    return windows(batch, h + 1, stride or max(1, (h + 1) // 2))


def uq_metrics(pred, truth: torch.Tensor, alpha: float) -> dict[str, Any]:
    """Scores of a predictive ``pred`` (``Prediction`` of shape ``(batch, time, *state)``)."""
    from sciflow.uq import scores

    err = (pred.mean - truth)[:, 1:]
    out: dict[str, Any] = {
        "rmse": float(err.pow(2).mean().sqrt()),
        "rmse_per_lead": err.pow(2).flatten(2).mean(dim=(0, 2)).sqrt().tolist(),
    }
    if pred.lower is not None:
        lo, hi, y = pred.lower[:, 1:], pred.upper[:, 1:], truth[:, 1:]
        inside = ((y >= lo) & (y <= hi)).float()
        out.update({
            "nominal_coverage": 1 - alpha,
            "coverage": float(inside.mean()),
            "coverage_per_lead": inside.flatten(2).mean(dim=(0, 2)).tolist(),
            "mean_interval_width": float((hi - lo).mean()),
            "interval_score": float(scores.interval_score(lo, hi, y, alpha).mean()),
        })
    if pred.samples is not None and pred.samples.shape[0] > 1:
        out["crps"] = float(scores.crps_ensemble(pred.samples[:, :, 1:], truth[:, 1:]).mean())
    return out


def _predictor(kind: str, exp: ExperimentConfig, run_dir: Path, splits: Splits):
    """The UQ predictor ``kind`` around the trained model(s) of ``run_dir``."""
    from sciflow.uq.base import target_for
    from sciflow.uq.conformal import AbsoluteResidual, SplitConformal
    from sciflow.uq.ensemble import DeepEnsemble
    from sciflow.uq.mc_dropout import MCDropout
    from sciflow.uq.sampling import SamplingPredictor

    e = exp.eval
    dirs = member_dirs(run_dir)
    if kind == "ensemble":
        if len(dirs) < 2:
            raise ConfigError(f"{str(run_dir)!r} holds one model; train an ensemble with eval.uq=ensemble "
                              "(eval.ensemble_size members) before `evaluate --uq ensemble`")
        return DeepEnsemble([load_trained(exp, d, i) for i, d in enumerate(dirs)], alpha=e.alpha)
    model = load_trained(exp, dirs[0], 0)
    if kind == "samples":
        return SamplingPredictor(model, e.n_samples, e.alpha)
    if kind == "mc-dropout":
        return MCDropout(model, max(2, e.n_samples), e.alpha)
    if kind == "conformal":
        base = DeepEnsemble([load_trained(exp, d, i) for i, d in enumerate(dirs)], alpha=e.alpha) \
            if len(dirs) > 1 else SamplingPredictor(model, 1, e.alpha)
        cal = forecast_batch(splits.val, e.horizon)
        # one quantile per lead time and component (separate_dims = time, state axes)
        conf = SplitConformal(base, e.alpha, AbsoluteResidual(), separate_dims=tuple(range(1, cal.values.ndim)))
        return conf.calibrate([cal], target=target_for)
    if kind == "hmc":
        from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior
        from sciflow.uq.hmc import HMC

        data = forecast_batch(splits.train, e.horizon)
        with torch.no_grad():
            resid = model.sample(data, 1)[0] - data.values
        noise = float(resid.flatten(2).std(dim=(0, 1)).mean().clamp_min(1e-3))
        hmc = HMC(model, GaussianPrior(1.0), GaussianLikelihood(noise), [data], alpha=e.alpha)
        hmc.run(n_samples=max(4, e.n_samples), n_warmup=max(4, e.n_samples), n_chains=2, n_leapfrog=10,
                generator=torch.Generator().manual_seed(exp.train.seed))
        return hmc
    raise ConfigError(f"--uq {kind!r}: allowed values: samples, ensemble, mc-dropout, conformal, hmc")


def evaluate_run(run_dir: Path, uq: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a trained run on its test split with uncertainty; writes ``eval_<uq>.json``."""
    exp = load_run(run_dir, overrides)
    kind = uq or exp.eval.uq
    splits = prepare_splits(exp)
    if is_irregular(exp):
        metrics = evaluate_irregular(exp, Path(run_dir), kind, splits)
        stem = "classification" if metrics["task"] == "classification" else kind  # no UQ method for accuracy
        _write_json(metrics, Path(run_dir) / f"eval_{stem}.json")
        return metrics
    predictor = _predictor(kind, exp, Path(run_dir), splits)
    test = forecast_batch(splits.test, exp.eval.horizon)
    pred = predictor.predict(test, generator=torch.Generator().manual_seed(exp.train.seed))
    metrics = {"uq": kind, "n_test_windows": len(test), "horizon": test.values.shape[1] - 1,
               **uq_metrics(pred, test.values, exp.eval.alpha)}
    _write_json(metrics, Path(run_dir) / f"eval_{kind}.json")
    return metrics


# ------------------------------------------------------------------------------ commands


def _uea_datasets() -> dict[str, str]:
    """UEA/UCR problems for ``data.name=`` (irregular-series models), with where they are found."""
    from sciflow.data.timeseries.bundled import BUNDLED, DatasetNotFoundError, find_uea

    out = {}
    for name in BUNDLED:
        try:
            where = f"UEA/UCR .ts archive ({find_uea(name)[0].parent})"
        except DatasetNotFoundError:
            where = "UEA/UCR .ts archive (not found: pip install aeon, or data.root=FOLDER)"
        out[name] = where
    return out


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    sections = {
        "models": lambda: {k: _first_line(v) for k, v in _models().items()},
        "datasets": lambda: {k: _first_line(v) for k, v in _generators().items()} | _uea_datasets(),
        "solvers": lambda: {k: _first_line(v) for k, v in _solvers().items()},
        "configs": lambda: {p.stem: str(p) for p in sorted((Path(__file__).parent / "configs").glob("*.yaml"))},
    }
    for name in ([what] if what != "all" else list(sections)):
        entries = sections[name]()
        print(f"{name}:")
        if not entries:
            print("  (none registered yet)")
        for k, doc in entries.items():
            print(f"  {k:<24} {doc}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    gens = _generators()
    if args.name not in gens:
        raise ConfigError(f"unknown dataset {args.name!r}; allowed values: {sorted(gens)}")
    params = parse_overrides(args.params)
    t0 = time.perf_counter()
    gen = gens[args.name]
    bar = None
    if "progress" in inspect.signature(gen).parameters and not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"generate {args.name}", unit="step", dynamic_ncols=True)

        def _progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        params["progress"] = _progress
    try:
        ds = gen(n=args.n, seed=args.seed, **params)
    finally:
        if bar is not None:
            bar.close()
    from sciflow.data.io import write

    path = write(ds, args.out)
    print(f"wrote {args.name} (n={args.n}, seed={args.seed}) to {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    exp = load_experiment(args.config, args.overrides)
    run_dir = Path(args.run_dir or exp.run_dir)
    splits = prepare_splits(exp)
    exp = resolve_model_for_data(exp, splits)  # irregular series: input_channels / n_classes from the data
    write_config(exp, run_dir)
    n_members = exp.eval.ensemble_size if exp.eval.uq == "ensemble" else 1
    summary = []
    for i in range(n_members):
        d = run_dir / f"member_{i}" if n_members > 1 else run_dir
        _, res = train_experiment(exp, d, resume=args.resume, splits=splits, member=i)
        summary.append({"member": i, "steps": res.steps, "skipped_steps": res.skipped_steps,
                        "final_val_loss": res.final_val, "checkpoint": res.last_checkpoint})
        if _is_main_process():
            print(f"member {i}: {res.steps} steps, final val loss {res.final_val}, checkpoint {res.last_checkpoint}")
    if _is_main_process():
        _write_json(summary, run_dir / "train_summary.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics = evaluate_run(Path(args.run_dir), args.uq, args.overrides)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sciflow.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress, steps=args.step)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run.py`` of the source checkout (the suite is not part of the wheel)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    if not path.is_file():
        raise ConfigError(f"the benchmark suite ships with the source repository ({path} not found); "
                          "run `sciflow benchmark` from a git checkout of sciflow")
    spec = importlib.util.spec_from_file_location("sciflow_benchmarks_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    argv = [*args.names, "--scale", args.scale]
    for flag, value in (("--out", args.out), ("--seed", args.seed), ("--timeout", args.timeout)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--list"] if args.list else []
    argv += ["--dry-run"] if args.dry_run else []
    return int(run.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sciflow",
        description="Learning physical dynamics with neural differential equations.",
        epilog="Start with `sciflow demo`; see `sciflow COMMAND --help` for each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list registered models, datasets, solvers and packaged configs",
                       description="List what the registries hold.")
    s.add_argument("what", nargs="?", default="all", choices=["all", "models", "datasets", "solvers", "configs"])
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("generate", help="generate a dataset and write it (NetCDF/HDF5 or zarr)",
                       description="Run a registered generator and write a schema-valid dataset.",
                       epilog="example: sciflow generate lorenz63 --n 64 --out lorenz.nc n_time=1000 dt=0.01")
    s.add_argument("name", help="dataset name (see `sciflow list datasets`)")
    s.add_argument("--n", type=int, default=32, help="number of samples (default 32)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--out", required=True, help="output path: .nc/.h5 (NetCDF4) or .zarr")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("params", nargs="*", help="generator keyword arguments as key=value")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("train", help="train a model from a YAML config with dotted overrides",
                       description="Train from CONFIG (a YAML path or a packaged config name) over the "
                                   "dataclass defaults; overrides look like train.max_steps=500.",
                       epilog="example: sciflow train lorenz_neural_ode train.max_steps=500 model.width=128")
    s.add_argument("config", help="YAML file or packaged config name (see `sciflow list configs`)")
    s.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    s.add_argument("--run-dir", help="output folder (default: run_dir of the config)")
    s.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a trained run on its test split, with uncertainty",
                       description="Score a run folder's model on held-out forecasts: RMSE per lead time, "
                                   "interval coverage and width, CRPS; writes eval_<uq>.json.")
    s.add_argument("run_dir", help="a folder written by `sciflow train` or `sciflow demo`")
    s.add_argument("--uq", choices=["samples", "ensemble", "mc-dropout", "conformal", "hmc"],
                   help="uncertainty method (default: eval.uq of the run's config)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.alpha=0.05 eval.horizon=50")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("demo", help="the main job: Lorenz-63 -> neural ODE ensemble -> conformal UQ -> plots",
                       description="Generate Lorenz-63 in-process, train a deep ensemble of neural ODEs, "
                                   "calibrate split-conformal intervals and write metrics, checkpoints and plots.")
    s.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    s.add_argument("--quick", action="store_true", help="a smaller run for smoke tests (~20 s)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.add_argument("--step", action="append", default=None, metavar="NAME",
                   help="run only this step (repeatable): lorenz_ensemble, causal_pinn_burgers, "
                        "stable_sde_irregular, wdno_burgers (default: all but wdno_burgers)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("benchmark", help="run registered benchmarks (smoke / cpu / gpu scale), one JSON each",
                       description="Run benchmarks/run.py: every registered benchmark (or NAMES) at a scale; "
                                   "writes <out>/suite/<name>.json with device, versions, git SHA, seed, wall "
                                   "time, peak memory, metrics, anchors and ratios.",
                       epilog="example: sciflow benchmark ns_generation burgers_generation --scale smoke --out /tmp/b")
    s.add_argument("names", nargs="*", help="benchmark names (default: all; see --list)")
    s.add_argument("--scale", choices=["smoke", "cpu", "gpu"], default="smoke")
    s.add_argument("--out", help="output folder (default: benchmarks/results[/<scale>])")
    s.add_argument("--seed", type=int, default=None, help="seed for benchmarks that take one")
    s.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    s.add_argument("--list", action="store_true", help="list the registry and exit")
    s.add_argument("--dry-run", action="store_true", help="print the commands only")
    s.set_defaults(fn=cmd_benchmark)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value items may follow options (`generate NAME --out x.nc n_time=100`)
    listed = "overrides" if hasattr(args, "overrides") else "params" if hasattr(args, "params") else None
    if extra:
        if listed is None or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, listed, [*getattr(args, listed), *extra])
    try:
        return int(args.fn(args) or 0)
    except ConfigError as e:
        print(f"sciflow {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
