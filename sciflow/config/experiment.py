"""The experiment schema: the model, data, train and eval sections of one YAML file.

A config file states only its deviations from the dataclass defaults::

    model:
      name: neural_ode        # a key of sciflow.models.registry.MODELS
      width: 64               # fields of that model's ``config_class``
    data:
      generator: lorenz63     # a key of sciflow.data.registry.GENERATORS
      params: {n: 32}         # keyword arguments of that generator
    train:
      max_steps: 500          # fields of sciflow.training.TrainConfig

and the command line overrides single leaves: ``train.max_steps=500 model.width=128``. Values
are parsed as YAML (``1e-3`` is accepted for a float, ``null`` is ``None``).

Errors are :class:`ConfigError` and name the offending dotted key together with the allowed
keys (with a "did you mean" hint) or the expected type / allowed values. Strings exist only at
this edge: what the library receives are frozen dataclass instances (DESIGN.md, "Registries +
config only at the edge").
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from sciflow.config.schema import (ConfigError, _unknown_key, apply_overrides, coerce, from_dict, parse_overrides,
                                   read_yaml, to_dict)
from sciflow.training.config import TrainConfig

__all__ = ["DataConfig", "EvalConfig", "ExperimentConfig", "ModelSection", "config_path", "experiment_from_dict",
           "is_mfm_config", "is_pinn_config", "load_experiment", "model_config_class", "packaged_config"]


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is cut into training examples.

    ``generator`` names an entry of ``sciflow.data.registry.GENERATORS`` called with ``params``
    (plus ``seed``); alternatively ``path`` loads a stored dataset (NetCDF/HDF5/zarr).
    Trajectories are cut into windows of ``window`` time steps every ``stride`` steps (``None``:
    whole trajectories). Samples (whole trajectories, before windowing) are split into
    train/val/test by ``val_fraction``/``test_fraction``. ``variable`` is the state; ``condition``
    names a second variable handed to the model as ``TrajectoryBatch.condition`` (the forcing ``f``
    of ``burgers-control`` for WDNO), cut into the same windows when it has the time axis.
    ``variables`` (instead of ``variable``) stacks several trajectory variables of the same grid on a
    channel axis after time, ``values (sample, time, channel, *space)``: the super-resolution WDNO
    refines state and forcing together.

    Irregular time series (models whose ``batch_type`` is ``IrregularBatch``): ``name`` is a
    UEA/UCR problem (``BasicMotions``, ...) found in ``root`` (an archive folder), the
    ``SCIFLOW_UEA_ROOT`` folders or the aeon/sktime bundled data; ``missing_rate`` of the values is
    removed per channel and the union of TRAIN and TEST is split stratified by class
    (``sciflow.data.timeseries``). With ``generator`` (Lorenz) instead, the last ``n_target``
    observations of each irregular trajectory are the forecast targets.

    Reanalysis (ERA5 / WeatherBench 2): with ``test_start`` set, ``path`` is an ERA5 source (GRIB,
    NetCDF or a WeatherBench-2 zarr store, :func:`sciflow.data.era5.open_era5`) split **by time
    before windowing**: training windows end before ``val_start`` (or ``test_start``), validation
    windows lie in ``[val_start, test_start)``, test windows from ``test_start`` on
    (:func:`sciflow.models.neural_operator.weather.era5_forecast_data`). ``channels`` names the
    variables (``2m_temperature``, ``geopotential@500``), ``window`` the time steps per sample, of
    which the first ``history`` are given (default: the model's ``n_initial``, else 1); training
    windows start every ``stride`` steps, validation and test windows every ``test_stride``; ``coarsen``
    block-averages the grid. ``anomalies``: the windows hold departures from the training period's
    hour-of-day climatology (the model then learns the weather, not the diurnal cycle; scores are
    unchanged by the shift, since forecast and truth move together). ``test_stride``: validation and
    test windows start every ``test_stride`` steps (``None``: every ``window`` steps, so they do not
    overlap; 1: a forecast issued every step, the stream ``sciflow evaluate --uq online-conformal``
    calibrates online).
    """

    generator: str | None = None
    name: str | None = None
    root: str | None = None
    missing_rate: float = 0.0
    n_target: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    variable: str | None = None
    variables: tuple[str, ...] | None = None
    condition: str | None = None
    window: int | None = None
    stride: int = 1
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    batch_size: int = 32
    seed: int = 0
    channels: tuple[str, ...] | None = None
    val_start: str | None = None
    test_start: str | None = None
    history: int | None = None
    coarsen: int = 1
    anomalies: bool = False
    test_stride: int | None = None

    def __post_init__(self) -> None:
        if self.test_start is not None:  # data.path is checked when the data are read (configs ship without it)
            if self.generator is not None or self.name is not None:
                raise ValueError("data.test_start (a split by time) reads an ERA5 source at data.path, "
                                 "not data.generator / data.name")
            if not self.channels:
                raise ValueError("data.test_start needs data.channels, e.g. [2m_temperature] or "
                                 "[geopotential@500, temperature@850]")
            if self.window is None:
                raise ValueError("data.test_start needs data.window (time steps per sample)")
        elif self.val_start is not None or self.channels is not None or self.anomalies:
            raise ValueError("data.val_start, data.channels and data.anomalies apply to a split by time: "
                             "set data.test_start too")
        if self.test_stride is not None:
            if self.test_stride < 1:
                raise ValueError(f"data.test_stride must be >= 1 (null: every data.window steps), "
                                 f"got {self.test_stride}")
            if self.test_start is None:
                raise ValueError("data.test_stride (the step between validation and test windows) applies to a "
                                 "split by time: set data.test_start too")
        if self.variables is not None:
            if self.variable is not None:
                raise ValueError("give data.variable (one state) or data.variables (stacked channels), not both")
            if not self.variables or len(set(self.variables)) != len(self.variables):
                raise ValueError(f"data.variables must name distinct variables, got {list(self.variables)}")
        if self.history is not None and self.history < 1:
            raise ValueError(f"data.history must be >= 1, got {self.history}")
        if self.coarsen < 1:
            raise ValueError(f"data.coarsen must be >= 1, got {self.coarsen}")
        if self.generator is not None and self.path is not None:
            raise ValueError("give either data.generator or data.path, not both")
        if self.name is not None and (self.generator is not None or self.path is not None):
            raise ValueError("give data.name (a UEA/UCR problem) or data.generator/data.path, not both")
        if not 0 <= self.missing_rate < 1:
            raise ValueError(f"data.missing_rate must be in [0, 1), got {self.missing_rate}")
        if self.n_target is not None and self.n_target < 1:
            raise ValueError(f"data.n_target must be >= 1, got {self.n_target}")
        if self.window is not None and self.window < 2:
            raise ValueError(f"data.window must be >= 2 time steps, got {self.window}")
        if self.stride < 1:
            raise ValueError(f"data.stride must be >= 1, got {self.stride}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum to < 1")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation with uncertainty: the UQ method, its size and the interval level.

    ``uq``: ``samples`` (the model's own ``sample``), ``ensemble`` (``ensemble_size`` models
    trained from different seeds), ``mc-dropout``, ``conformal`` (split conformal on the
    validation split around the point prediction), ``hmc``, ``laplace`` (linearised Laplace over the
    last linear layer, its noise per lead time fitted on the validation split), ``online-conformal`` (a split by time
    only: intervals recalibrated online along the test stream as the truths arrive, per lead time,
    starting from the validation scores; ``online`` names the method, ``aci``, ``dtaci``,
    ``quantile`` or ``pid`` (:func:`sciflow.uq.online_conformal`; ``pid``: quantile tracking with the
    error integrator, and with ``online_scorecaster=ar`` an AR scorecaster with a one-day seasonal
    lag); ``online_score``: ``absolute`` residuals or ``normalized`` by the forecast's spread
    (ensemble members or ``n_samples`` draws), ``online_rate`` its step size, ``None``:
    the method's default; ``dtaci`` picks its own). ``hmc_mass``: the mass matrix HMC adapts in
    warm-up (:meth:`sciflow.uq.HMC.run`: ``diag``, ``dense``, ``fisher_diag``, ``low_rank``).
    ``alpha``: miscoverage of the
    reported intervals (0.1 -> 90 % intervals). ``checkpoint``: ``last`` (the newest checkpoint,
    with its EMA average when trained with one) or ``best`` (``checkpoints/best.pt``, written with
    ``train.keep_best``).
    """

    uq: Literal["samples", "ensemble", "mc-dropout", "conformal", "hmc", "laplace", "online-conformal"] = "conformal"
    checkpoint: Literal["last", "best"] = "last"
    n_samples: int = 32
    ensemble_size: int = 3
    alpha: float = 0.1
    horizon: int | None = None
    online: Literal["aci", "dtaci", "quantile", "pid"] = "aci"
    online_rate: float | None = None
    online_scorecaster: Literal["none", "ar"] = "none"
    online_score: Literal["absolute", "normalized"] = "absolute"
    hmc_mass: Literal["diag", "dense", "fisher_diag", "low_rank"] = "diag"

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"eval.alpha must be in (0, 1), got {self.alpha}")
        if self.n_samples < 1 or self.ensemble_size < 1:
            raise ValueError("eval.n_samples and eval.ensemble_size must be >= 1")
        if self.online_scorecaster != "none" and self.online != "pid":
            raise ValueError(f"eval.online_scorecaster={self.online_scorecaster} is the D part of conformal PID: "
                             f"set eval.online=pid (got eval.online={self.online})")
        if self.online_rate is not None:
            if self.online == "dtaci":
                raise ValueError("eval.online=dtaci chooses its own step size from a grid (Gibbs & Candes 2024): "
                                 f"leave eval.online_rate unset, got {self.online_rate}")
            if not (math.isfinite(self.online_rate) and self.online_rate > 0):
                raise ValueError(f"eval.online_rate must be a finite number > 0, got {self.online_rate}")


@dataclass(frozen=True)
class ModelSection:
    """``name`` (a key of ``MODELS``) and that model's frozen ``config``."""

    name: str
    config: Any


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: model, data, training and evaluation, plus where the run is written."""

    model: ModelSection
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_dir: str = "runs/experiment"

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d["model"] = {"name": self.model.name, **to_dict(self.model.config)}
        return d


def _model_registry() -> Mapping[str, type]:
    from sciflow.models.registry import MODELS

    return MODELS


def _generator_registry() -> Mapping[str, Callable[..., Any]]:
    try:
        from sciflow.data.registry import GENERATORS
    except ImportError:
        return {}
    return GENERATORS


def model_config_class(name: str, models: Mapping[str, type]) -> type:
    """The frozen config dataclass a registered model declares as ``config_class``."""
    if name not in models:
        hint = difflib.get_close_matches(name, list(models), n=1)
        raise ConfigError(f"model.name = {name!r} is not registered"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; allowed values: {sorted(models)}")
    cls = models[name]
    cfg_cls = getattr(cls, "config_class", None)
    if cfg_cls is None or not dataclasses.is_dataclass(cfg_cls):
        raise ConfigError(f"model {name!r} ({cls.__name__}) declares no dataclass 'config_class'")
    return cfg_cls


def _check_generator_params(cfg: DataConfig, generators: Mapping[str, Callable[..., Any]]) -> None:
    if cfg.generator is None:
        return
    if generators and cfg.generator not in generators:
        hint = difflib.get_close_matches(cfg.generator, list(generators), n=1)
        raise ConfigError(f"data.generator = {cfg.generator!r} is not registered"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; allowed values: {sorted(generators)}")
    fn = generators.get(cfg.generator)
    if fn is None:
        return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    allowed = [n for n, p in sig.parameters.items()
               if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "seed"]
    for k in cfg.params:
        if k not in allowed:
            raise _unknown_key(k, "data.params", allowed)
    missing = [n for n in allowed if sig.parameters[n].default is inspect.Parameter.empty and n not in cfg.params]
    if missing:
        raise ConfigError(f"data.params lacks {missing}, required by generator {cfg.generator!r} "
                          f"(e.g. data.params.{missing[0]}=...); its parameters: {allowed}")


def experiment_from_dict(
    data: Mapping[str, Any],
    *,
    models: Mapping[str, type] | None = None,
    generators: Mapping[str, Callable[..., Any]] | None = None,
) -> ExperimentConfig:
    """Validate a nested mapping into an :class:`ExperimentConfig` (see module docstring)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"an experiment config must be a mapping, got {type(data).__name__}")
    data = dict(data)
    allowed = [f.name for f in dataclasses.fields(ExperimentConfig)]
    for k in data:
        if k not in allowed:
            raise _unknown_key(k, "", allowed)
    models = _model_registry() if models is None else models
    generators = _generator_registry() if generators is None else generators
    model_raw = data.get("model")
    if not isinstance(model_raw, Mapping) or "name" not in model_raw:
        raise ConfigError(f"'model' must be a mapping with a 'name'; allowed names: {sorted(models)}")
    model_raw = dict(model_raw)
    name = model_raw.pop("name")
    cfg_cls = model_config_class(name, models)
    model = ModelSection(name=name, config=from_dict(cfg_cls, model_raw, prefix="model"))
    kwargs: dict[str, Any] = {"model": model}
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        if section in data:
            kwargs[section] = coerce(data[section], cls, section)
    if "run_dir" in data:
        kwargs["run_dir"] = coerce(data["run_dir"], str, "run_dir")
    exp = ExperimentConfig(**kwargs)
    _check_generator_params(exp.data, generators)
    return exp


def packaged_config(name: str) -> Path:
    """Path of a YAML shipped in ``sciflow/configs`` (``"lorenz_neural_ode"`` or with ``.yaml``)."""
    root = Path(__file__).resolve().parents[1] / "configs"
    p = root / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not p.is_file():
        shipped = sorted(q.stem for q in root.glob("*.yaml"))
        raise ConfigError(f"no packaged config {name!r}; shipped: {shipped}")
    return p


def config_path(path: str | Path) -> Path:
    """A YAML path as given, or the packaged config of that name when no such file exists."""
    p = Path(path)
    return packaged_config(str(path)) if not p.exists() and p.parent == Path(".") else p


def is_pinn_config(raw: Mapping[str, Any]) -> bool:
    """Whether a YAML mapping is a causal-PINN config: flat :class:`sciflow.models.causal_pinn.Config`
    fields (a ``problem``, no ``model`` section)."""
    return "problem" in raw and "model" not in raw


def is_mfm_config(raw: Mapping[str, Any]) -> bool:
    """Whether a YAML mapping is a meta-flow-matching config: a ``model`` section of
    :class:`sciflow.models.meta_flow_matching.Config` fields (``knn_k``, no registry ``name``)."""
    model = raw.get("model")
    return isinstance(model, Mapping) and "name" not in model and "knn_k" in model


def family_config(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(what, how to run it)`` for a YAML that is not an experiment but a model family's own config
    (the packaged ``pinn_*`` and ``mfm_*`` files); ``None`` for an experiment."""
    if is_pinn_config(raw):
        return ("a causal-PINN config",
                "it configures sciflow.models.causal_pinn (CausalPINN(Config.from_yaml(path)), trained by "
                "causal_pinn.train, or causal_pinn.march for time marching); `sciflow train PATH --run-dir D` "
                "runs causal_pinn.train with checkpoints and --resume (sciflow.cli.pinn; see "
                "docs/models/causal_pinn.md)")
    if is_mfm_config(raw):
        return ("a meta-flow-matching config",
                "it configures sciflow.models.meta_flow_matching (model, data split recipe, TrainConfig); "
                "`sciflow train PATH --run-dir D` trains one seed with checkpoints and --resume (sciflow.cli.mfm); "
                "`sciflow benchmark mfm_letters` compares MFM, FM and CGFM over seeds "
                "(see docs/models/meta_flow_matching.md)")
    return None


def load_experiment(
    path: str | Path | None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    models: Mapping[str, type] | None = None,
    generators: Mapping[str, Callable[..., Any]] | None = None,
) -> ExperimentConfig:
    """YAML file (a path, or the name of a packaged config) + dotted overrides -> config."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(config_path(path))
        if (family := family_config(raw)) is not None:
            raise ConfigError(f"{str(path)!r} is {family[0]}, not an experiment config: {family[1]}")
    ov = parse_overrides(list(overrides)) if not isinstance(overrides, Mapping) else dict(overrides)
    return experiment_from_dict(apply_overrides(raw, ov), models=models, generators=generators)
