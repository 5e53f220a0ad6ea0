"""Split recipes of the population datasets (sciflow.data.population_splits): which populations
each split holds, the oracle draw, the packaged configs' data sections, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sciflow.config import ConfigError, from_dict
from sciflow.data.population_splits import AggregationSplits, LettersSplits, splits_class
from sciflow.data.populations import ALPHABET, letter_population, letters

CONFIGS = Path(__file__).resolve().parents[2] / "sciflow" / "configs"
SMALL_LETTERS = dict(n_points=24, n_eval_points=32, val_points=16, n_rotations=3, val_rotations=1,
                     test_rotations=2, seen_letters=2, seen_rotations=2)


def test_letter_splits_hold_the_right_letters_rotations_and_sizes():
    r = LettersSplits(**SMALL_LETTERS)
    tr, va, te, seen = (r.split(n) for n in ("train", "val", "test", "seen"))
    n_train = len(ALPHABET) - 5
    assert tr.source.shape == (n_train * 3, 24, 2) and va.source.shape == (2 * 1, 16, 2)
    assert te.source.shape == (3 * 2, 32, 2) and seen.source.shape == (2 * 2, 32, 2)
    rot = lambda b: (b.population_id % 3).tolist()  # noqa: E731
    letter = lambda b: {ALPHABET[i // 3] for i in b.population_id.tolist()}  # noqa: E731
    assert letter(va) == {"X", "K"} and rot(va) == [0, 0]
    assert letter(te) == {"Y", "G", "M"} and rot(te) == [0, 1] * 3
    assert not letter(tr) & (letter(va) | letter(te))
    assert r.row_labels("test") == ["Y", "Y", "G", "G", "M", "M"] and r.num_populations == 26 * 3
    # test = the first rotations of the held-out letters, as letters() draws them
    full = letters("test", n_points=32, n_rotations=3, val_letters=("X", "K"), test_letters=("Y", "G", "M"))
    assert torch.equal(te.target, full.target[[0, 1, 3, 4, 6, 7]])
    # seen: training letters at rotation indices 3, 4 (never in training), letters spread over A-Z
    a, _ = letter_population("A", 3, n_points=32, noise_scale=0.05, source_noise_scale=0.5, seed=0)
    assert torch.allclose(seen.source[0], torch.as_tensor(a, dtype=torch.float32))
    # the oracle: the same letters and rotations, fresh points
    oracle = r.split("test", draw=1)
    assert torch.equal(oracle.population_id, te.population_id) and not torch.equal(oracle.target, te.target)
    assert "seen" not in LettersSplits(**{**SMALL_LETTERS, "seen_letters": 0}).names


def test_aggregation_splits_have_unique_ids_and_the_given_sizes():
    r = AggregationSplits(n_points=8, n_eval_points=12, val_points=10, n_train=4, n_val=2, n_test=3, steps=4)
    b = {n: r.split(n) for n in r.names}
    assert [tuple(b[n].source.shape) for n in r.names] == [(4, 8, 2), (2, 10, 2), (3, 12, 2)]
    assert torch.cat([b[n].population_id for n in r.names]).tolist() == list(range(9)) == list(range(r.num_populations))
    assert not torch.equal(r.split("test", draw=1).source, b["test"].source)
    assert r.row_labels("val") == ["val 0", "val 1"]


@pytest.mark.parametrize("name, cls", [("mfm_letters.yaml", LettersSplits),
                                       ("mfm_aggregation.yaml", AggregationSplits)])
def test_packaged_data_sections_are_recipes(name, cls):
    data = yaml.safe_load((CONFIGS / name).read_text())["data"]
    assert splits_class(data) is cls
    recipe = from_dict(cls, data, prefix="data")
    assert all(getattr(recipe, k) == (tuple(v) if isinstance(v, list) else v) for k, v in data.items())


def test_bad_recipes_name_the_problem():
    with pytest.raises(ValueError, match="overlap"):
        LettersSplits(val_letters=("Y",), test_letters=("Y",))
    with pytest.raises(ValueError, match=r"test_rotations must be in \[1, n_rotations=3\]"):
        LettersSplits(n_rotations=3, test_rotations=4)
    with pytest.raises(ValueError, match="n_eval_points must be >= 2"):
        AggregationSplits(n_eval_points=1)
    with pytest.raises(ValueError, match="split must be one of"):
        LettersSplits().split("seen")  # seen_letters = 0
    with pytest.raises(ValueError, match="names neither letters"):
        splits_class({"n_points": 3})
    with pytest.raises(ConfigError, match="data.n_test"):
        from_dict(AggregationSplits, {"n_test": "many"}, prefix="data")
