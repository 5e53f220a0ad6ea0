"""Mutation guards for the generic data layer: schema checks with messages naming the bad
coordinate/variable, and atomic dataset writes that never leave a half-written file."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sciflow.data import io
from sciflow.data.schema import DatasetError, validate
from tests.data._factory import tiny_dataset


def test_duplicate_time_rejected_with_index():
    """Kills: strictly increasing check relaxed to non-decreasing (`>` -> `>=`)."""
    ds = tiny_dataset(nt=4).assign_coords(time=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(DatasetError, match=r"'time' is not strictly increasing \(at index 2: 0.5 -> 0.5\)"):
        validate(ds)


def test_non_finite_value_message_and_allow_nan():
    """Kills: NaN check dropped / wrong first-bad location / `allow_nan` ignored."""
    ds = tiny_dataset(n=3, nt=4, nx=5)
    ds["u"].values[1, 2, 3] = np.nan
    ds["u"].values[2, 0, 0] = np.inf
    with pytest.raises(DatasetError,
                       match=r"variable 'u' has 2 non-finite value\(s\), first at \(sample=1, time=2, x=3\)"):
        validate(ds)
    validate(ds, check_values=False)
    ds["u"].attrs["allow_nan"] = 1
    validate(ds)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    """Kills: non-atomic write (writing straight to the target path) that leaves a torn file."""
    path = tmp_path / "d.nc"
    ds = tiny_dataset()
    io.write(ds, path)
    before = path.read_bytes()

    def torn(self, target, *args, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", torn)
    with pytest.raises(OSError, match="disk full"):
        io.write(ds, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.nc"]
