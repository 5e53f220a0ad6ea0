from __future__ import annotations


import h5py
import numpy as np
import pytest
import xarray as xr

from sciflow.data import io
from sciflow.data.schema import DatasetError
from tests.data._factory import tiny_dataset

FORMATS = ["a.nc", "a.zarr"]


@pytest.mark.parametrize("name", FORMATS)
def test_roundtrip_is_exact_and_checksummed(tmp_path, name):
    ds = tiny_dataset(ny=4)
    ds["forcing"] = (("x", "y"), np.arange(20.0).reshape(5, 4))
    path = io.write(ds, tmp_path / name)
    back = io.read(path)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.attrs["checksum"] == io.checksum(ds)
    assert {k: back.attrs[k] for k in ds.attrs} == ds.attrs
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


@pytest.mark.parametrize("name", FORMATS)
def test_lazy_read_is_dask_backed_and_chunked(tmp_path, name):
    ds = tiny_dataset(n=6)
    io.write(ds, tmp_path / name, chunks={"sample": 2})
    lazy = io.read(tmp_path / name, chunks={"sample": 2})
    import dask.array as da

    assert isinstance(lazy["u"].data, da.Array)
    assert lazy["u"].data.chunks[0] == (2, 2, 2)
    np.testing.assert_array_equal(lazy["u"].values, ds["u"].values)


def test_checksum_is_independent_of_chunking_and_sensitive_to_data():
    ds = tiny_dataset(n=4)
    assert io.checksum(ds) == io.checksum(ds.chunk({"sample": 1}))
    other = ds.copy(deep=True)
    other["u"][0, 0, 0] += 1e-12
    assert io.checksum(other) != io.checksum(ds)


def test_tampered_data_fails_checksum(tmp_path):
    path = io.write(tiny_dataset(), tmp_path / "d.nc")
    with h5py.File(path, "r+") as fh:
        fh["u"][0, 0, 0] = 42.0
    with pytest.raises(DatasetError, match="checksum mismatch") as e:
        io.read(path)
    assert str(path) in str(e.value)
    io.read(path, verify=False)  # still a valid dataset


def test_truncated_file_names_the_file(tmp_path):
    path = io.write(tiny_dataset(n=20, nt=20, nx=50), tmp_path / "t.nc")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as e:
        io.read(path)
    assert str(e.value).startswith(str(path))
    garbage = tmp_path / "g.nc"
    garbage.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DatasetError, match=f"{garbage}: cannot be read"):
        io.read(garbage)
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        io.read(tmp_path / "missing.nc")


def _raw_write(ds, path):
    ds.to_netcdf(path, engine="h5netcdf")  # bypasses validation: simulates a foreign file
    return path


def test_bad_files_name_file_and_problem(tmp_path):
    ds = tiny_dataset()
    nan = ds.copy(deep=True)
    nan["u"][0, 1, 2] = np.nan
    with pytest.raises(DatasetError, match=r"n.nc: variable 'u' has 1 non-finite"):
        io.read(_raw_write(nan, tmp_path / "n.nc"), verify=False)
    bad_t = ds.assign_coords(time=[0.0, 2.0, 1.0, 3.0])
    with pytest.raises(DatasetError, match="t.nc: coordinate 'time' is not strictly increasing"):
        io.read(_raw_write(bad_t, tmp_path / "t.nc"), verify=False)
    dims = ds.rename({"time": "step"})
    with pytest.raises(DatasetError, match="d.nc: no trajectory variable"):
        io.read(_raw_write(dims, tmp_path / "d.nc"), verify=False)
    with pytest.raises(DatasetError, match="c.nc: no 'checksum' attribute"):
        io.read(_raw_write(ds, tmp_path / "c.nc"))
    with pytest.raises(DatasetError, match="w.nc: missing required attribute 'equation'"):
        io.write(ds.drop_attrs(), tmp_path / "w.nc")
    assert not (tmp_path / "w.nc").exists()


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = io.write(tiny_dataset(seed=1), tmp_path / "keep.nc")
    before = path.read_bytes()

    def broken(self, target, **kw):
        with open(target, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write(tiny_dataset(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nc"]


def test_zarr_overwrite_replaces_store(tmp_path):
    io.write(tiny_dataset(seed=1), tmp_path / "s.zarr")
    new = tiny_dataset(seed=2)
    io.write(new, tmp_path / "s.zarr")
    np.testing.assert_array_equal(io.read(tmp_path / "s.zarr")["u"].values, new["u"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


@pytest.mark.parametrize("ny", [None, 4])
def test_pdebench_roundtrip(tmp_path, ny):
    ds = tiny_dataset(ny=ny)
    path = io.write_pdebench(ds, tmp_path / "p.hdf5")
    with h5py.File(path) as fh:
        assert fh["tensor"].shape == ds["u"].shape
        assert "x-coordinate" in fh and ("y-coordinate" in fh) == (ny is not None)
    back = io.read_pdebench(path)
    np.testing.assert_array_equal(back["tensor"].values, ds["u"].values)
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    assert back.attrs["equation"] == ds.attrs["equation"]


def test_pdebench_layout_quirks_and_errors(tmp_path):
    path = tmp_path / "pb.hdf5"
    with h5py.File(path, "w") as fh:  # PDEBench 1D files store T+1 cell-edge times
        fh["tensor"] = np.zeros((2, 3, 8), np.float32)
        fh["x-coordinate"] = np.linspace(0, 1, 8)
        fh["t-coordinate"] = np.linspace(0, 2, 4)
        fh.attrs["Nu"] = 0.01
    ds = io.read_pdebench(path)
    assert ds["time"].values.tolist() == [0.0, 2 / 3, 4 / 3]
    assert '"Nu": 0.01' in ds.attrs["parameters"]
    with h5py.File(path, "a") as fh:
        del fh["tensor"]
        fh["density"] = np.zeros((2, 3, 8))
    with pytest.raises(DatasetError, match=r"pb.hdf5: missing variable 'tensor'.*'density'"):
        io.read_pdebench(path)
    with h5py.File(path, "a") as fh:
        fh["tensor"] = np.zeros((2, 5, 8))
    with pytest.raises(DatasetError, match="'t-coordinate' has 4 entries but the data have 5"):
        io.read_pdebench(path)
    with h5py.File(path, "a") as fh:
        fh["density"][0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="pb.hdf5: variable 'density' has 1 non-finite"):
        io.read_pdebench(path, variables=("density",))
    trunc = tmp_path / "tr.hdf5"
    trunc.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match="tr.hdf5: cannot be opened as HDF5"):
        io.read_pdebench(trunc)


def test_write_json_is_strict_and_atomic(tmp_path):
    import json
    import math

    import torch

    from sciflow.data.io import write_json

    path = write_json({"q": math.inf, "lo": -math.inf, "x": float("nan"), "t": torch.tensor([1.5, math.inf]),
                       "nested": [{"a": np.float32(2.0)}]}, tmp_path / "m.json")
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    assert back == {"q": "inf", "lo": "-inf", "x": "nan", "t": [1.5, "inf"], "nested": [{"a": 2.0}]}
    assert float(back["q"]) == math.inf
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left behind
