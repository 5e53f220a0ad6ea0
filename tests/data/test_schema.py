from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sciflow.data.schema import REQUIRED_ATTRS, DatasetError, validate
from tests.data._factory import tiny_dataset


def test_valid_dataset_passes_and_static_variables_are_allowed():
    ds = tiny_dataset(ny=6)
    ds["forcing"] = (("x", "y"), np.zeros((5, 6)))
    ds["nu"] = (("sample",), np.ones(3))
    assert validate(ds) is ds


@pytest.mark.parametrize("attr", REQUIRED_ATTRS)
def test_missing_attribute_is_named(attr):
    ds = tiny_dataset()
    del ds.attrs[attr]
    with pytest.raises(DatasetError, match=f"missing required attribute '{attr}'"):
        validate(ds)


def test_wrong_dims_are_named():
    ds = tiny_dataset().transpose("time", "sample", "x")
    with pytest.raises(DatasetError, match="no trajectory variable"):
        validate(ds)
    ds = tiny_dataset()
    ds["v"] = (("sample", "time"), np.zeros((3, 4)))
    with pytest.raises(DatasetError, match=r"variable 'v' has dims \('sample', 'time'\)"):
        validate(ds)
    ds = tiny_dataset()
    ds["w"] = (("x", "sample"), np.zeros((5, 3)))
    with pytest.raises(DatasetError, match="not an ordered subset"):
        validate(ds)


def test_missing_coordinate_is_named():
    ds = tiny_dataset().drop_vars("x")
    with pytest.raises(DatasetError, match="dimension 'x' has no coordinate"):
        validate(ds)


def test_non_monotonic_time_is_named_with_index():
    ds = tiny_dataset()
    ds = ds.assign_coords(time=[0.0, 0.5, 0.4, 1.0])
    with pytest.raises(DatasetError, match=r"not strictly increasing \(at index 2"):
        validate(ds)
    ds = ds.assign_coords(time=np.array(["2020-01-01", "2020-01-02", "2020-01-02", "2020-01-03"],
                                        dtype="datetime64[ns]"))
    with pytest.raises(DatasetError, match="not strictly increasing"):
        validate(ds)


def test_nan_is_located_and_path_is_named():
    ds = tiny_dataset()
    ds["u"][1, 2, 3] = np.nan
    with pytest.raises(DatasetError, match=r"1 non-finite value\(s\), first at \(sample=1, time=2, x=3\)") as e:
        validate(ds, path="/data/run.nc")
    assert str(e.value).startswith("/data/run.nc: ")
    assert e.value.path == "/data/run.nc"
    ds["u"].attrs["allow_nan"] = 1  # masked data opt out
    validate(ds)
    validate(tiny_dataset().chunk({"sample": 1}))  # lazy arrays are scanned too


def test_not_a_dataset():
    with pytest.raises(DatasetError, match="expected an xarray.Dataset"):
        validate(xr.DataArray([1.0]))  # type: ignore[arg-type]
