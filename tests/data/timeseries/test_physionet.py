"""PhysioNet 2012 / 2019 loaders on tiny files generated in the challenge formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sciflow.data.timeseries import (
    PHYSIONET2012_VARIABLES,
    PHYSIONET2019_VARIABLES,
    PhysioNetFormatError,
    load_physionet2012,
    load_physionet2019,
)

from tests.data.timeseries._physionet_fixture import write_physionet2012, write_physionet2019


def test_physionet2012_values_times_static_and_labels(tmp_path: Path) -> None:
    truth = write_physionet2012(tmp_path, n=4, seed=0)
    d = load_physionet2012(tmp_path / "set-a")
    b = d.batch
    assert b.values.shape[2] == 37 and len(b) == 4
    assert d.static_names == ("Age", "Gender", "Height", "ICUType", "Weight")
    for i, rid in enumerate(d.record_ids.tolist()):
        tr = truth[rid]
        L = len(tr["times"])
        torch.testing.assert_close(b.times[i, :L], torch.tensor(tr["times"], dtype=torch.float32))
        assert (b.times[i, L:] == b.times[i, L - 1]).all() and not b.mask[i, L:].any()
        assert int(b.mask[i].sum()) == len(tr["values"])  # nothing invented, nothing lost
        for (t, var), v in tr["values"].items():
            k = tr["times"].index(t)
            assert bool(b.mask[i, k, PHYSIONET2012_VARIABLES.index(var)])
            assert float(b.values[i, k, PHYSIONET2012_VARIABLES.index(var)]) == pytest.approx(v, rel=1e-6)
        np.testing.assert_array_equal(d.static[i], [tr["static"][k] for k in d.static_names])
        assert int(b.labels[i]) == tr["death"]
    assert np.isnan(d.static[list(d.record_ids).index(132539), 2])  # Height -1 -> unknown


@pytest.mark.parametrize("line, fragment", [
    ("07:5x,HR,70", "line 9: time '07:5x' is not HH:MM"),
    ("07:50,Colour,3", "line 9: unknown parameter 'Colour'"),
    ("07:50,HR,fast", "line 9: value 'fast' is not a number"),
    ("07:50,HR", "line 9: expected 3 comma-separated fields"),
])
def test_physionet2012_corrupt_record(tmp_path: Path, line: str, fragment: str) -> None:
    write_physionet2012(tmp_path, n=2, seed=1)
    p = sorted((tmp_path / "set-a").glob("*.txt"))[0]
    rows = p.read_text().splitlines()
    p.write_text("\n".join(rows[:8] + [line] + rows[8:]) + "\n")
    with pytest.raises(PhysioNetFormatError) as e:
        load_physionet2012(tmp_path / "set-a")
    assert fragment in str(e.value) and p.name in str(e.value)


def test_physionet2012_missing_outcome_is_an_error(tmp_path: Path) -> None:
    write_physionet2012(tmp_path, n=3, seed=2)
    out = tmp_path / "Outcomes-a.txt"
    out.write_text("\n".join(out.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(PhysioNetFormatError, match="no outcome for RecordID"):
        load_physionet2012(tmp_path / "set-a")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_physionet2012(tmp_path / "set-b")


def test_physionet2019_hourly_rows_nan_missing_and_sepsis_label(tmp_path: Path) -> None:
    truth = write_physionet2019(tmp_path / "training_setA", n=3, seed=0)
    d = load_physionet2019(tmp_path / "training_setA")
    b = d.batch
    V = len(PHYSIONET2019_VARIABLES)
    assert b.values.shape[2] == V == 34
    for i, stem in enumerate(d.record_ids.tolist()):
        table = truth[stem]["table"]
        T = table.shape[0]
        obs = ~np.isnan(table[:, :V])
        np.testing.assert_array_equal(b.mask[i, :T].numpy(), obs)
        np.testing.assert_allclose(b.values[i, :T].numpy()[obs], table[:, :V][obs], rtol=1e-6)
        np.testing.assert_array_equal(b.times[i, :T].numpy(), table[:, V + 5])  # ICULOS hours
        np.testing.assert_array_equal(d.static[i], table[0, V:V + 5])
        np.testing.assert_array_equal(d.hourly_labels[i, :T], table[:, -1])
        assert (d.hourly_labels[i, T:] == -1).all()
        assert int(b.labels[i]) == truth[stem]["sepsis"]


def test_physionet2019_wrong_header_and_field_count(tmp_path: Path) -> None:
    write_physionet2019(tmp_path, n=1, seed=0)
    p = next(tmp_path.glob("*.psv"))
    rows = p.read_text().splitlines()
    p.write_text("\n".join([rows[0], rows[1] + "|1"] + rows[2:]) + "\n")
    with pytest.raises(PhysioNetFormatError, match="line 2: expected 41 '|'-separated fields, got 42"):
        load_physionet2019(tmp_path)
    p.write_text("\n".join([rows[0].replace("HR", "HeartRate", 1)] + rows[1:]) + "\n")
    with pytest.raises(PhysioNetFormatError, match="line 1: header must be the 41 challenge columns"):
        load_physionet2019(tmp_path)
