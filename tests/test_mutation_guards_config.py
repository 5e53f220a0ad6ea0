"""Mutation guards for the config layer: typed coercion in ``from_dict`` (bool/int/float, unions,
tuples, mappings, required keys), override parsing and merging, YAML reading, the data/eval
section bounds and the file lookup of ``load_experiment``.

Each test kills one or more plausible bugs that ``tests/test_config.py`` let through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import pytest

from sciflow.config import (ConfigError, apply_overrides, experiment_from_dict, from_dict, load_experiment,
                            parse_overrides, read_yaml)


@dataclass(frozen=True)
class _Section:
    name: str
    flag: bool = False
    count: int = 1
    rate: float = 0.5
    size: int | str = 1
    values: tuple[float, ...] = ()
    weights: dict[str, int] = field(default_factory=dict)


def _section(**data) -> _Section:
    return from_dict(_Section, {"name": "a", **data}, prefix="s")


@pytest.mark.parametrize("data, message", [
    ({"flag": 1}, r"^'s.flag' must be a bool \(true/false\), got 1$"),
    ({"count": 2.5}, r"^'s.count' must be an int, got 2.5$"),
    ({"rate": True}, r"^'s.rate' must be a float, got True$"),
    ({"size": None}, r"^'s.size' must not be null; expected int \| str$"),
    ({"values": ["1e-3", "x"]}, r"^'s.values\[1\]' must be a float, got 'x'$"),
    ({"weights": {"w": "heavy"}}, r"^'s.weights.w' must be an int, got 'heavy'$"),
])
def test_coercion_rejects_wrong_types_naming_the_key(data, message) -> None:
    """Kills bool accepting ints, ``2.5`` truncated to an int, ``True`` read as a float, ``None``
    accepted by a non-optional union, tuple items and mapping values left unchecked."""
    with pytest.raises(ConfigError, match=message):
        _section(**data)


def test_coercion_converts_yaml_forms() -> None:
    """Kills lists kept as lists, tuple items not converted to float, mapping values not coerced."""
    s = _section(count=3.0, values=["1e-3", 2], weights={"w": 4.0})
    assert s.count == 3 and type(s.count) is int
    assert s.values == (1e-3, 2.0) and type(s.values) is tuple and all(type(v) is float for v in s.values)
    assert s.weights == {"w": 4} and type(s.weights["w"]) is int


def test_missing_required_key_is_named() -> None:
    """Kills the removed required-key check (a bare TypeError from the constructor instead)."""
    with pytest.raises(ConfigError, match=r"^missing required key\(s\) \['s.name'\]$"):
        from_dict(_Section, {"count": 2}, prefix="s")


def test_override_values_keep_equals_signs_and_empty_strings() -> None:
    """Kills ``split('=')`` without maxsplit and an empty value parsed as ``None`` instead of ``''``."""
    assert parse_overrides(["run_dir=runs/a=b", "data.variable="]) == {"run_dir": "runs/a=b", "data.variable": ""}


def test_override_with_an_empty_key_part_is_refused() -> None:
    """Kills the check on empty dotted parts (``train..lr`` would create a key ``''``)."""
    with pytest.raises(ConfigError, match=r"override 'train\.\.lr=1' has an empty key part"):
        parse_overrides(["train..lr=1"])


def test_apply_overrides_leaves_the_input_untouched() -> None:
    """Kills a shallow copy (nested mappings or lists of the file's config mutated in place)."""
    raw = {"train": {"lr": 0.1}, "data": {"channels": ["t2m"]}}
    out = apply_overrides(raw, {"train.lr": 0.2})
    out["data"]["channels"].append("z500")
    assert raw == {"train": {"lr": 0.1}, "data": {"channels": ["t2m"]}} and out["train"]["lr"] == 0.2


def test_read_yaml_keeps_dates_as_strings_and_reads_an_empty_file_as_empty(tmp_path: Path) -> None:
    """Kills the timestamp resolver left in (dates become ``datetime.date``) and an empty file
    returning ``None`` (a confusing error later instead of the missing-model message)."""
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  test_start: 2019-03-25\n")
    assert read_yaml(p) == {"data": {"test_start": "2019-03-25"}}
    p.write_text("")
    assert read_yaml(p) == {}
    with pytest.raises(ConfigError, match="'model' must be a mapping with a 'name'"):
        load_experiment(p)


@pytest.mark.parametrize("section, value, message", [
    ("data", {"missing_rate": 1.0}, r"data.missing_rate must be in \[0, 1\), got 1.0"),
    ("data", {"val_fraction": 0.5, "test_fraction": 0.5}, r"must be in \[0, 1\) and sum to < 1"),
    ("data", {"stride": 0}, r"data.stride must be >= 1, got 0"),
    ("data", {"history": 0}, r"data.history must be >= 1, got 0"),
    ("data", {"coarsen": 0}, r"data.coarsen must be >= 1, got 0"),
    ("data", {"anomalies": True}, r"data.anomalies apply to a split by time: set data.test_start too"),
    ("eval", {"alpha": 0.0}, r"eval.alpha must be in \(0, 1\), got 0.0"),
    ("eval", {"ensemble_size": 0}, r"eval.n_samples and eval.ensemble_size must be >= 1"),
    ("run_dir", 5, r"^'run_dir' must be a string, got 5$"),
])
def test_section_bounds_are_enforced(section, value, message) -> None:
    """Kills loosened bounds (``<=`` for ``<``, ``>= 0`` for ``>= 1``), dropped clauses and an
    unchecked ``run_dir``."""
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict({"model": {"name": "neural_ode"}, section: value})


def test_window_of_two_steps_is_the_smallest_allowed() -> None:
    """Kills ``window <= 2`` rejecting the smallest valid window."""
    assert experiment_from_dict({"model": {"name": "neural_ode"}, "data": {"window": 2}}).data.window == 2


def test_generator_with_var_keywords_accepts_any_params() -> None:
    """Kills the ``**kwargs`` escape of the generator-parameter check."""
    def toy(n: int, seed: int = 0, **options):
        return None

    exp = experiment_from_dict({"model": {"name": "neural_ode"}, "data": {"generator": "toy",
                                                                          "params": {"n": 3, "extra": 1}}},
                               generators={"toy": toy})
    assert dict(exp.data.params) == {"n": 3, "extra": 1}


def test_local_file_wins_over_packaged_name_and_overrides_win_over_the_file(tmp_path: Path, monkeypatch) -> None:
    """Kills the packaged config being read although a file of that name exists in the working
    directory; checks the order dataclass defaults < file < overrides."""
    monkeypatch.chdir(tmp_path)
    Path("lorenz_neural_ode.yaml").write_text(
        "model: {name: neural_ode, state_dim: 3, width: 5}\ntrain: {max_steps: 7, lr: 0.01}\n")
    exp = load_experiment("lorenz_neural_ode.yaml", ["train.max_steps=9"])
    assert exp.model.config.width == 5 and exp.data.generator is None
    assert exp.train.max_steps == 9 and exp.train.lr == 0.01
    assert exp.eval.alpha == 0.1  # dataclass default
