"""The experiment pipeline behind ``sciflow train``: data splits (regular trajectories and irregular
time series), model construction, training runs and their folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from sciflow.cli.registries import _generators, _models
from sciflow.config import ConfigError, ExperimentConfig, load_experiment


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


def dataset_to_batch(ds, variable: str | None = None, dtype: torch.dtype = torch.float32,
                     condition: str | None = None, variables: Sequence[str] | None = None):
    """``(sample, time, *space)`` variable of a schema dataset -> ``TrajectoryBatch``; ``variables``:
    several such variables stacked on a channel axis, ``(sample, time, channel, *space)``; ``condition``:
    another variable of the dataset (``(sample, ...)``) as the batch's ``condition``."""
    import numpy as np

    from sciflow.data.batches import TrajectoryBatch
    from sciflow.data.schema import trajectory_variables

    names = trajectory_variables(ds)
    key = "data.variables" if variables else "data.variable"
    chosen = list(variables) if variables else [variable or ("state" if "state" in names else
                                                             (names[0] if names else None))]
    for v in chosen:
        if v is None or v not in names:
            raise ConfigError(f"{key} = {v!r} is not a trajectory variable; available: {names}")
    name = chosen[0]
    if variables:
        dims = {v: ds[v].dims for v in chosen}
        if len(set(dims.values())) > 1:
            raise ConfigError(f"data.variables must share one grid to be stacked, got dims {dims}")
        values = torch.as_tensor(np.stack([np.asarray(ds[v].values) for v in chosen], axis=2), dtype=dtype)
    else:
        values = torch.as_tensor(np.array(ds[name].values), dtype=dtype)
    t = np.asarray(ds["time"].values)
    if not np.issubdtype(t.dtype, np.number):  # datetimes -> hours since the first time
        t = (t - t[0]) / np.timedelta64(1, "h")
    cond = None
    if condition is not None:
        if condition not in ds.data_vars or ds[condition].dims[:1] != ("sample",):
            per_sample = [k for k in ds.data_vars if ds[k].dims[:1] == ("sample",) and k != name]
            raise ConfigError(f"data.condition = {condition!r} is not a per-sample variable of the dataset; "
                              f"available: {per_sample}")
        cond = torch.as_tensor(np.array(ds[condition].values), dtype=dtype)
    return TrajectoryBatch(values=values, times=torch.as_tensor(np.array(t, dtype=np.float64), dtype=dtype),
                           condition=cond)


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
    n_windows = v.shape[1]
    v = v.movedim(-1, 2).reshape(-1, window, *batch.values.shape[2:])
    c = batch.condition
    if c is not None:  # with a time axis: the same windows; else one copy per window
        c = c.unfold(1, window, stride).movedim(-1, 2).reshape(-1, window, *c.shape[2:]) \
            if c.ndim >= 2 and c.shape[1] == T else c.repeat_interleave(n_windows, dim=0)
    t = batch.times
    dt = t.diff(dim=-1)
    if t.ndim == 1 and bool(torch.allclose(dt, dt[0].expand_as(dt), rtol=1e-4, atol=0)):
        return TrajectoryBatch(values=v, times=t[:window] - t[0], condition=c)
    tw = (t if t.ndim == 2 else t.expand(batch.values.shape[0], -1)).unfold(1, window, stride)
    return TrajectoryBatch(values=v, times=tw.reshape(-1, window), condition=c)


def prepare_splits(exp: ExperimentConfig) -> Splits:
    if is_irregular(exp):
        return prepare_irregular_splits(exp)
    if exp.data.test_start is not None:
        return prepare_time_splits(exp)
    ds = load_dataset(exp)
    full = dataset_to_batch(ds, exp.data.variable, condition=exp.data.condition, variables=exp.data.variables)
    train, val, test = split_samples(full, exp.data.val_fraction, exp.data.test_fraction, exp.data.seed)
    return Splits(train, val, test, dict(ds.attrs))


def history_steps(exp: ExperimentConfig) -> int:
    """Time steps given at the start of each window of a split by time: ``data.history``, else the
    model's ``n_initial`` (WDNO), else 1; the two must agree when both are set."""
    from sciflow.data.batches import TrajectoryBatch

    cls = _models().get(exp.model.name)
    n_initial = getattr(exp.model.config, "n_initial", None) \
        if cls is not None and cls.batch_type is TrajectoryBatch else None
    h = exp.data.history
    if h is not None and n_initial is not None and h != n_initial:
        raise ConfigError(f"data.history = {h} differs from model.n_initial = {n_initial} (the frames the model is "
                          "given); set one of them")
    return int(h or n_initial or 1)


def prepare_time_splits(exp: ExperimentConfig) -> Splits:
    """Windows of an ERA5 / WeatherBench-2 source split by time before windowing (no test time step
    in training; :func:`sciflow.models.neural_operator.weather.era5_forecast_data`); ``attrs``
    carry the channel names, latitudes (for area-weighted scores), the given ``history`` and
    ``test_stride``, the steps between the starts of consecutive validation / test windows."""
    from sciflow.models.neural_operator.weather import channel_climatologies, departures, era5_forecast_data

    d = exp.data
    if d.path is None:
        raise ConfigError("data.test_start (a split by time) needs data.path: an ERA5 GRIB/NetCDF file or a "
                          "WeatherBench-2 zarr store")
    history = history_steps(exp)
    try:
        fd = era5_forecast_data(d.path, list(d.channels), test_start=d.test_start, val_start=d.val_start,
                                window=d.window, history=history, train_stride=d.stride, test_stride=d.test_stride,
                                coarsen=d.coarsen)
    except ValueError as e:  # ERA5FormatError included: the message names the file and the problem
        raise ConfigError(f"data: {e}") from e
    val = fd.val if fd.val is not None else fd.train.index(torch.zeros(0, dtype=torch.long))
    parts = {"train": (fd.train, fd.train_init), "val": (val, fd.val_init), "test": (fd.test, fd.test_init)}
    if d.anomalies:  # departures from the training period's hour-of-day climatology, every step
        clims = channel_climatologies(fd, "hour")
        parts = {k: (departures(fd, b, init, clims) if len(b) else b, init) for k, (b, init) in parts.items()}
    attrs = {"split": "time", "source": str(d.path), "channels": fd.channels, "history": history,
             "lat": fd.lat.tolist(), "lon": fd.lon.tolist(), "time_step_hours": fd.time_step_hours,
             "test_start": d.test_start, "val_start": d.val_start, "anomalies": d.anomalies,
             "test_stride": d.test_stride or d.window,
             "n_windows": {"train": len(fd.train), "val": len(val), "test": len(fd.test)}}
    return Splits(parts["train"][0], parts["val"][0], parts["test"][0], attrs)


# --- irregular time series (models whose batch_type is IrregularBatch; sciflow.data.timeseries)


def is_irregular(exp: ExperimentConfig) -> bool:
    """Whether the experiment's model takes ``IrregularBatch`` (declared ``batch_type``)."""
    from sciflow.data.batches import IrregularBatch

    cls = _models().get(exp.model.name)
    return cls is not None and cls.batch_type is IrregularBatch


def prepare_irregular_splits(exp: ExperimentConfig) -> Splits:
    """Train/val/test ``IrregularBatch`` splits: a UEA/UCR problem by ``data.name`` (classification,
    ``data.missing_rate`` removed per channel, stratified split) or an irregular Lorenz dataset by
    ``data.generator`` (forecasting of the last ``data.n_target`` observations, or with
    ``model.task=interpolation`` of ``data.n_target`` observations spread over the window's interior)."""
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
            task = "interpolation" if getattr(exp.model.config, "task", None) == "interpolation" else "forecasting"
            batch = to_irregular_batch(ds, n_target=d.n_target,
                                       hold_out="interior" if task == "interpolation" else "last")
            s = forecasting_splits(batch, seed=d.seed, fractions=fractions, task=task,
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




def build_model(exp: ExperimentConfig, seed: int):
    from sciflow.training import seed_everything

    seed_everything(seed)  # parameter initialisation is drawn from the seeded global RNG
    return _models()[exp.model.name](exp.model.config)


def model_for_data(exp: ExperimentConfig, splits: Splits, seed: int):
    """The untrained model of ``exp`` (initialised from ``seed``) with its normalisation buffers
    fitted to the training split (``fit_scaler``; a no-op by default): what training starts from."""
    model = build_model(exp, seed)
    model.fit_scaler(splits.train)
    return model


def train_experiment(exp: ExperimentConfig, run_dir: Path, *, resume: bool = False, splits: Splits | None = None,
                     member: int | None = None):
    """Train one model of ``exp`` into ``run_dir`` (``member`` i: seed ``train.seed + i``)."""
    from dataclasses import replace

    from sciflow.training import BatchLoader, fit

    splits = splits or prepare_splits(exp)
    seed = exp.train.seed + (member or 0)
    cfg = replace(exp.train, seed=seed)
    model = model_for_data(exp, splits, seed)
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
    """An ensemble's ``member_<i>`` folders in the order ``i`` (``member_10`` after ``member_9``), or
    ``[run_dir]`` for a single model."""
    index = {p: p.name.removeprefix("member_") for p in Path(run_dir).glob("member_*") if p.is_dir()}
    members = [p for p, i in index.items() if i.isdigit()]
    return sorted(members, key=lambda p: int(index[p])) or [Path(run_dir)]


def load_trained(exp: ExperimentConfig, run_dir: Path, member: int = 0):
    """The newest checkpoint's model, in eval mode; with its EMA weights when it was trained with
    ``train.ema_decay`` (the weights the validation losses of training were measured with).
    ``eval.checkpoint=best``: ``checkpoints/best.pt`` instead (``train.keep_best``)."""
    from sciflow.training import CheckpointManager
    from sciflow.training.checkpoint import BEST, load

    model = build_model(exp, exp.train.seed + member)
    if exp.eval.checkpoint == "best":
        path = Path(run_dir) / "checkpoints" / BEST
        if not path.is_file():
            raise ConfigError(f"eval.checkpoint=best: no {str(path)!r}; train with train.keep_best=true")
        model.load_state_dict(load(path)["model"])  # already the validated (EMA-averaged) weights
        return model.eval()
    found = CheckpointManager(Path(run_dir) / "checkpoints").load_latest()
    if found is None:
        raise ConfigError(f"no checkpoint in {str(run_dir)!r}/checkpoints")
    ckpt = found[0]
    ema = ckpt.get("ema")  # its shadow is keyed by parameter name, like the state dict
    model.load_state_dict({**ckpt["model"], **(ema["shadow"] if ema is not None else {})})
    return model.eval()


