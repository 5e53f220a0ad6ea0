"""The ``.ts`` reader on hand-written fixtures of every variant, corrupt files, and aeon's bundled data."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sciflow.data.timeseries import DatasetNotFoundError, TSFormatError, find_uea, load_uea, read_ts

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ts"
HAS_AEON = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(not HAS_AEON, reason="aeon (test extra) not installed")
nan = np.nan


def test_equal_length_multivariate_with_missing() -> None:
    d = read_ts(FIX / "Equal_TRAIN.ts")
    assert d.name == "Equal" and d.class_names == ("up", "down")
    assert d.values.shape == (4, 4, 2)
    np.testing.assert_array_equal(d.lengths, [4, 4, 4, 4])
    np.testing.assert_array_equal(d.labels, [0, 0, 1, 1])
    np.testing.assert_array_equal(d.values[1, :, 1], [11, nan, 31, 41])  # '?'
    np.testing.assert_array_equal(d.values[3, :, 1], [41, 31, 21, nan])  # 'NaN'
    np.testing.assert_array_equal(d.values[2, :, 0], [4, 3, 2, 1])
    assert np.isnan(d.values).sum() == 2 and d.times is None


def test_unequal_length_univariate_is_nan_padded() -> None:
    d = read_ts(FIX / "Unequal.ts")
    np.testing.assert_array_equal(d.lengths, [3, 5, 2, 4])
    assert d.values.shape == (4, 5, 1)
    np.testing.assert_array_equal(d.values[2, :, 0], [9, 10, nan, nan, nan])
    np.testing.assert_allclose(d.values[3, :4, 0], [-0.15, 20.0, 3.25, 4.0])
    np.testing.assert_array_equal(d.labels, [0, 1, 2, 0])


def test_time_stamped_channels_merge_on_the_union_of_times() -> None:
    d = read_ts(FIX / "Stamped.ts")
    np.testing.assert_array_equal(d.lengths, [4, 2])
    np.testing.assert_array_equal(d.times, [[0, 1, 2, 3], [0.5, 1.5, nan, nan]])
    np.testing.assert_array_equal(d.values[0, :, 0], [1, 2, nan, 4])
    np.testing.assert_array_equal(d.values[0, :, 1], [10, nan, 30, 40])
    np.testing.assert_array_equal(d.values[1, :2], [[7, nan], [nan, 8]])  # '?' at 1.5 in dimension 0


def test_date_time_stamps_become_seconds_and_unlabelled_files_have_no_labels() -> None:
    d = read_ts(FIX / "DateStamped.ts")
    assert d.labels is None and d.class_names == ()
    np.testing.assert_array_equal(np.diff(d.times[0]), [60.0, 3540.0])
    assert d.times[1, 0] - d.times[0, 0] == 86400.0
    np.testing.assert_array_equal(d.values[0, :, 0], [1.5, 2.5, 3.5])


def test_regression_targets() -> None:
    d = read_ts(FIX / "Regression.ts")
    np.testing.assert_array_equal(d.targets, [0.5, -2.25])
    assert d.labels is None


HEAD = "@problemName X\n@timeStamps false\n@univariate false\n@classLabel true a b\n@data\n"


@pytest.mark.parametrize("text, fragment", [
    (HEAD + "1,2:3,4:a\n1,2:a\n", "line 7: case has 1 dimension(s), earlier cases have 2"),
    (HEAD + "1,abc:3,4:a\n", "line 6, dimension 0: 'abc' is not a number"),
    (HEAD + "1,2:3,4:c\n", "case 0 has class label 'c'"),
    ("@problemName X\n@classLabel true a\n", "no @data line"),
    ("@problemName X\n@missing maybe\n@data\n1:a\n", "line 2: @missing must be 'true' or 'false'"),
    ("@problemName X\n@equalLength true\n@classLabel true a\n@data\n1,2:a\n1:a\n", "@equalLength true but case 1"),
    (HEAD + "1,2:3,4:a\n@data\n", "line 7: header line"),
    ("@timeStamps true\n@classLabel false\n@data\n(2,1),(1,2)\n",
     "line 4, dimension 0: time stamps are not strictly increasing"),
    ("@colour red\n@data\n1\n", "line 1: unknown header tag @colour"),
    ("@dimensions 3\n@classLabel true a\n@data\n1:2:a\n", "header declares 3 dimension(s), the first case has 2"),
    ("@classLabel true a\n@data\n1,,2:a\n", None),  # an empty token reads as missing: valid
    ("1,2,3\n", "line 1: expected a '@tag' header line"),
    (HEAD, "holds no cases"),
])
def test_corrupt_files_name_line_and_problem(tmp_path: Path, text: str, fragment: str | None) -> None:
    p = tmp_path / "bad.ts"
    p.write_text(text)
    if fragment is None:
        d = read_ts(p)
        np.testing.assert_array_equal(d.values[0, :, 0], [1, nan, 2])
        return
    with pytest.raises(TSFormatError) as e:
        read_ts(p)
    assert fragment in str(e.value) and "bad.ts" in str(e.value)


def test_user_archive_folder_and_not_found_error(tmp_path: Path) -> None:
    (tmp_path / "Equal").mkdir()
    for s in ("TRAIN", "TEST"):
        shutil.copy(FIX / f"Equal_{s}.ts", tmp_path / "Equal" / f"Equal_{s}.ts")
    d = load_uea("Equal", root=tmp_path)
    assert len(d) == 6  # TRAIN (4) then TEST (2)
    np.testing.assert_array_equal(d.labels, [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(d.values[4, :, 0], [0.5, 1.5, 2.5, 3.5])
    assert len(load_uea("Equal", root=tmp_path, split="test")) == 2
    with pytest.raises(DatasetNotFoundError) as e:
        find_uea("NoSuchProblem", root=tmp_path)
    assert "NoSuchProblem" in str(e.value) and str(tmp_path) in str(e.value)


@needs_aeon
def test_bundled_basic_motions_from_aeon_without_importing_it() -> None:
    code = ("import sys; from sciflow.data.timeseries import load_uea; d = load_uea('BasicMotions'); "
            "print(d.values.shape, d.values[0, 0, 0], sorted(set(d.labels.tolist())), 'aeon' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # 40 + 40 cases of 6 channels x 100 points; first value of the TRAIN file is 0.079106
    assert " ".join(out) == "(80, 100, 6) 0.079106 [0, 1, 2, 3] False"


@needs_aeon
def test_bundled_japanese_vowels_has_unequal_lengths() -> None:
    d = load_uea("JapaneseVowels")
    assert d.values.shape == (640, 29, 12) and d.lengths.min() == 7 and d.lengths.max() == 29
    for i in (0, 300, 639):  # NaN exactly on the padding
        assert not np.isnan(d.values[i, : d.lengths[i]]).any() and np.isnan(d.values[i, d.lengths[i]:]).all()
    assert np.bincount(d.labels).tolist() == [61, 65, 118, 74, 59, 54, 70, 80, 59]
