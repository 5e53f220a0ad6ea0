"""Experiment configs: YAML over frozen dataclass defaults, dotted overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sciflow.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_from_dict,
    from_dict,
    load_experiment,
    parse_overrides,
)
from sciflow.models.neural_ode import Config as NODEConfig
from sciflow.training import TrainConfig


def test_defaults_and_partial_mapping() -> None:
    cfg = from_dict(TrainConfig, {"max_steps": 7, "lr": "1e-3", "betas": [0.8, 0.9], "grad_clip": None})
    assert cfg.max_steps == 7 and cfg.lr == 1e-3 and cfg.betas == (0.8, 0.9) and cfg.grad_clip is None
    assert cfg.optimizer == TrainConfig().optimizer


@pytest.mark.parametrize("data, message", [
    ({"max_step": 5}, r"unknown key 'train.max_step' \(did you mean 'train.max_steps'\?\)"),
    ({"max_steps": "many"}, r"'train.max_steps' must be an int, got 'many'"),
    ({"max_steps": True}, r"'train.max_steps' must be an int"),
    ({"optimizer": "adagrad"},
     r"'train.optimizer' = 'adagrad' is not allowed; allowed values: \['adam', 'adamw', 'sgd', 'lbfgs'\]"),
    ({"compile": "yes"}, r"'train.compile' must be a bool"),
    ({"betas": [0.9]}, r"'train.betas' must have 2 entries"),
    ({"lr": -1.0}, r"train: TrainConfig: invalid value for 'lr'"),
])
def test_errors_name_key_and_allowed(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, data, prefix="train")


def test_overrides_parse_yaml_values_and_nest() -> None:
    ov = parse_overrides(["train.lr=1e-3", "model.width=128", "data.params.n=5", "train.grad_clip=null"])
    assert ov == {"train.lr": 1e-3, "model.width": 128, "data.params.n": 5, "train.grad_clip": None}
    out = apply_overrides({"train": {"lr": 0.1}}, ov)
    assert out["train"] == {"lr": 1e-3, "grad_clip": None} and out["data"]["params"]["n"] == 5
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match="'train.lr' is not a mapping"):
        apply_overrides({"train": {"lr": 0.1}}, {"train.lr.x": 1})


def test_packaged_config_with_overrides_round_trips() -> None:
    exp = load_experiment("lorenz_neural_ode", ["train.max_steps=12", "model.width=8", "eval.alpha=0.2"])
    assert isinstance(exp, ExperimentConfig)
    assert exp.train.max_steps == 12 and exp.model.config == NODEConfig(state_dim=3, width=8, depth=2, solver="rk4")
    assert exp.eval.alpha == 0.2 and exp.data.generator == "lorenz63"
    again = experiment_from_dict(exp.to_dict())
    assert again == exp


def test_model_section_errors() -> None:
    with pytest.raises(ConfigError,
                       match=r"model.name = 'neural_oed' is not registered \(did you mean 'neural_ode'\?\)"):
        experiment_from_dict({"model": {"name": "neural_oed"}})
    with pytest.raises(ConfigError, match=r"unknown key 'model.widht'.*allowed keys under 'model'"):
        experiment_from_dict({"model": {"name": "neural_ode", "widht": 3}})
    with pytest.raises(ConfigError, match=r"'model.solver' = 'rk5' is not allowed; allowed values: \[.*'rk4'"):
        experiment_from_dict({"model": {"name": "neural_ode", "solver": "rk5"}})
    with pytest.raises(ConfigError, match="'model' must be a mapping with a 'name'"):
        experiment_from_dict({"train": {}})
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        experiment_from_dict({"model": {"name": "neural_ode"}, "trian": {}})


def test_data_section_checks_generator_and_its_parameters() -> None:
    with pytest.raises(ConfigError,
                       match=r"data.generator = 'lorenz64' is not registered.*allowed values: \[.*'lorenz63'"):
        experiment_from_dict({"model": {"name": "neural_ode"}, "data": {"generator": "lorenz64"}})
    with pytest.raises(ConfigError, match=r"unknown key 'data.params.n_tim' \(did you mean 'data.params.n_time'\?\)"):
        experiment_from_dict({"model": {"name": "neural_ode"},
                              "data": {"generator": "lorenz63", "params": {"n_tim": 4}}})
    with pytest.raises(ConfigError, match="data.window must be >= 2"):
        experiment_from_dict({"model": {"name": "neural_ode"}, "data": {"window": 1}})


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_experiment(lst)
    with pytest.raises(ConfigError, match="no packaged config 'nope'"):
        load_experiment("nope")


def test_generator_params_without_a_required_one_name_it() -> None:
    from sciflow.data.registry import GENERATORS

    with pytest.raises(ConfigError, match=r"data.params lacks \['n'\], required by generator 'burgers-control'"):
        experiment_from_dict({"model": {"name": "wdno"}, "data": {"generator": "burgers-control", "params": {"nx": 9}}},
                             generators=GENERATORS)


def test_every_packaged_config_is_an_experiment_or_says_what_runs_it() -> None:
    """``sciflow train NAME`` works for every packaged experiment (all required generator parameters
    present, super-resolution WDNO included); the family configs (PINN, MFM) are refused by the
    experiment loader with a pointer to `sciflow train`, which runs them through sciflow.cli.pinn / mfm."""
    from sciflow.cli.registries import _generators, _models
    from sciflow.config.experiment import family_config, packaged_config
    from sciflow.config.schema import read_yaml

    root = packaged_config("lorenz_neural_ode").parent
    kinds = {}
    for p in sorted(root.glob("*.yaml")):
        what = family_config(read_yaml(p))
        if what is None:
            load_experiment(p, models=_models(), generators=_generators())
        else:
            with pytest.raises(ConfigError, match="sciflow train PATH --run-dir"):
                load_experiment(p.stem)
        kinds[p.stem] = what is None
    assert sum(kinds.values()) >= 15 and not kinds["pinn_burgers"] and not kinds["mfm_letters"]
    assert kinds["wdno_burgers"] and kinds["wdno_burgers_superres"]


@pytest.mark.parametrize("params, message", [(5, "'data.params' must be a mapping, got 5"),
                                             ([1, 2], r"'data.params' must be a mapping, got \[1, 2\]")])
def test_mapping_fields_are_checked(params, message) -> None:
    """``Mapping[...]``-typed fields are validated (their origin is ``collections.abc.Mapping``, not
    ``typing.Mapping``: compared with the latter they slipped through to a ``TypeError`` deep inside)."""
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict({"model": {"name": "neural_ode"}, "data": {"generator": "lorenz63", "params": params}})
