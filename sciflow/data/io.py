"""Storage of schema datasets: NetCDF4/HDF5 (h5netcdf), zarr, and the PDEBench HDF5 layout.

* Writes are atomic: data go to a temporary sibling which is renamed over the target only once
  complete, so a crash never leaves a half-written file under the final name.
* A SHA-256 checksum of every variable and coordinate (dtype + shape + little-endian C-order
  bytes, streamed block by block so lazy data never has to fit in memory) is stored in
  ``attrs["checksum"]`` and verified on load.
* ``read(path, chunks=...)`` opens lazily with dask for data larger than memory; without
  ``chunks`` the data are loaded and the file is closed.
* Every failure (missing file, truncated/corrupt file, missing variable, wrong dims, NaNs,
  non-monotonic time, checksum mismatch) raises :class:`~sciflow.data.schema.DatasetError` whose
  message starts with the file name.

PDEBench layout (Takamoto et al. 2022): HDF5 with ``tensor`` ``[batch, t, x(, y(, z))]`` (or one
dataset per field), ``x-coordinate``, ``y-coordinate``, ``t-coordinate`` and file attributes.
PDEBench's ``t-coordinate`` may hold one more entry than the tensor's time axis (cell edges); the
first ``T`` entries are then used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import xarray as xr

from sciflow.data.schema import DatasetError, validate

CHECKSUM_ATTR = "checksum"
_NETCDF_SUFFIXES = {".nc", ".nc4", ".h5", ".hdf5", ".netcdf"}


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("netcdf", "zarr"):
            raise ValueError(f"unknown format {fmt!r} (expected 'netcdf' or 'zarr')")
        return fmt
    if path.suffix == ".zarr":
        return "zarr"
    if path.suffix in _NETCDF_SUFFIXES:
        return "netcdf"
    raise ValueError(f"{path}: cannot infer format from suffix {path.suffix!r}; use .nc/.h5 or .zarr, or format=")


def _blocks(arr: Any, rows: int = 1 << 16) -> Iterator[np.ndarray]:
    """Contiguous leading-axis blocks of an (optionally lazy) array, as numpy."""
    shape = arr.shape
    if len(shape) == 0:
        yield np.asarray(arr)
        return
    per_row = int(np.prod(shape[1:], dtype=np.int64)) or 1
    step = max(1, (1 << 24) // per_row)  # ~16M elements per block
    for s in range(0, shape[0], step):
        yield np.asarray(arr[s:s + step])


def checksum(ds: xr.Dataset) -> str:
    """SHA-256 over names, dims, dtypes, shapes and bytes of all variables and coordinates."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        dtype = np.dtype(var.dtype)
        if dtype.kind in "OUS":
            h.update(f"{name}|{var.dims}|str|".encode())
            h.update("\x00".join(map(str, np.asarray(var.values).ravel())).encode())
            continue
        h.update(f"{name}|{var.dims}|{dtype.str.lstrip('<>|=')}|{var.shape}|".encode())
        data = var.data
        for block in _blocks(data):
            h.update(np.ascontiguousarray(block, dtype=dtype.newbyteorder("<")).tobytes())
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it over ``path`` (file or directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmpdir / path.name
    try:
        yield tmp
        if tmp.is_dir():
            backup = None
            if path.exists():
                backup = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, backup)
            os.replace(tmp, path)
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        else:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _strict_json(x: Any) -> Any:
    """Non-finite floats → ``"inf"``/``"-inf"``/``"nan"`` strings; tensors/arrays → lists (recursively)."""
    if isinstance(x, dict):
        return {str(k): _strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict_json(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy / torch scalars and arrays
        return _strict_json(x.tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as strict JSON (RFC 8259: no ``Infinity``/``NaN`` tokens), atomically.

    Non-finite floats — e.g. an infinite split-conformal interval when there are too few
    calibration points — become the strings ``"inf"``, ``"-inf"``, ``"nan"``, which every JSON
    parser reads and ``float()`` converts back.
    """
    path = Path(path)
    text = json.dumps(_strict_json(obj), indent=2, allow_nan=False) + "\n"
    with _atomic_target(path) as tmp:
        tmp.write_text(text)
    return path


def write(ds: xr.Dataset, path: str | os.PathLike, *, format: str | None = None,
          chunks: Mapping[str, int] | None = None) -> Path:
    """Validate ``ds``, store its checksum in attrs and write it atomically.

    ``format``: ``"netcdf"`` (NetCDF4/HDF5 via h5netcdf) or ``"zarr"``; inferred from the suffix
    (``.nc``/``.h5`` or ``.zarr``) if omitted. ``chunks`` (dim -> size, default one sample per
    chunk) sets the on-disk chunking so ``read(..., chunks=...)`` streams data lazily.
    """
    path = Path(path)
    fmt = _format(path, format)
    validate(ds, path=str(path))
    ds = ds.copy()
    ds.attrs[CHECKSUM_ATTR] = checksum(ds)
    chunks = dict(chunks or {"sample": 1})
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        cs = tuple(min(int(chunks.get(d, n)), n) or 1 for d, n in zip(var.dims, var.shape))
        if not var.dims:
            continue
        if fmt == "netcdf":
            encoding[name] = {"chunksizes": cs, "zlib": True, "complevel": 1}
        else:
            encoding[name] = {"chunks": cs}
    with _atomic_target(path) as tmp:
        if fmt == "netcdf":
            ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        else:
            for name in ds.data_vars:  # dask chunks would otherwise clash with the zarr encoding
                ds[name].encoding.pop("chunks", None)
                ds[name].encoding.pop("preferred_chunks", None)
            ds.to_zarr(tmp, mode="w", encoding=encoding, consolidated=False)
    return path


def _open(path: Path, fmt: str, chunks: Mapping[str, int] | str | None) -> xr.Dataset:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    try:
        if fmt == "netcdf":
            return xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
        return xr.open_zarr(path, chunks=chunks, consolidated=False)
    except Exception as err:  # h5py/zarr raise many types for damaged files
        raise DatasetError(f"cannot be read as {'NetCDF4/HDF5' if fmt == 'netcdf' else 'zarr'} "
                           f"(truncated or corrupt file?): {type(err).__name__}: {err}", str(path)) from err


def read(path: str | os.PathLike, *, format: str | None = None, chunks: Mapping[str, int] | str | None = None,
         verify: bool = True) -> xr.Dataset:
    """Read a dataset written by :func:`write` (or any schema-conforming file), validate it and
    verify its checksum.

    ``chunks`` (e.g. ``{"sample": 8}`` or ``"auto"``) returns a lazy dask-backed dataset; then the
    NaN scan and checksum stream through the file block by block. Without ``chunks`` the data are
    loaded into memory and the file is closed.
    """
    path = Path(path)
    fmt = _format(path, format)
    ds = _open(path, fmt, chunks)
    try:
        if chunks is None:
            try:
                ds = ds.load()
            except Exception as err:
                raise DatasetError(f"data cannot be read (truncated or corrupt file?): {type(err).__name__}: {err}",
                                   str(path)) from err
            finally:
                ds.close()
        validate(ds, path=str(path))
        if verify:
            stored = ds.attrs.get(CHECKSUM_ATTR)
            if stored is None:
                raise DatasetError(f"no {CHECKSUM_ATTR!r} attribute to verify (pass verify=False to skip)", str(path))
            body = ds.copy()
            body.attrs = {k: v for k, v in ds.attrs.items() if k != CHECKSUM_ATTR}
            try:
                actual = checksum(body)
            except Exception as err:
                raise DatasetError(f"data cannot be read (truncated or corrupt file?): {type(err).__name__}: {err}",
                                   str(path)) from err
            if actual != stored:
                raise DatasetError(f"checksum mismatch (stored {stored}, computed {actual}): the data were "
                                   "modified or corrupted", str(path))
    except Exception:
        ds.close()
        raise
    return ds


# ----------------------------------------------------------------------------- PDEBench

_SPACE_KEYS = ("x-coordinate", "y-coordinate", "z-coordinate")


def read_pdebench(path: str | os.PathLike, *, variables: Sequence[str] = ("tensor",), equation: str | None = None,
                  licence: str = "CC-BY-4.0 (PDEBench, Takamoto et al. 2022)") -> xr.Dataset:
    """Import a PDEBench HDF5 file as a schema dataset (variables keep their HDF5 names).

    Each variable must be ``[batch, t, x(, y(, z))]`` with matching ``x-/y-/z-coordinate`` and
    ``t-coordinate`` datasets. File attributes become ``parameters``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        fh = h5py.File(path, "r")
    except Exception as err:
        raise DatasetError(f"cannot be opened as HDF5 (truncated or corrupt file?): {err}", str(path)) from err
    with fh:
        keys = sorted(fh.keys())
        for key in (*variables, "t-coordinate", "x-coordinate"):
            if key not in fh:
                raise DatasetError(f"missing variable {key!r} of the PDEBench layout (file has {keys})", str(path))
        try:
            data = {v: np.asarray(fh[v][...]) for v in variables}
            t = np.asarray(fh["t-coordinate"][...]).ravel()
            first = data[variables[0]]
            n_space = first.ndim - 2
            if n_space < 1 or n_space > 3:
                raise DatasetError(f"variable {variables[0]!r} has shape {first.shape}; "
                                   "expected [batch, t, x(, y(, z))]", str(path))
            coords = {}
            dims = ("x", "y", "z")[:n_space]
            for d, key in zip(dims, _SPACE_KEYS):
                if key not in fh:
                    raise DatasetError(f"missing variable {key!r} for a {n_space}-D field (file has {keys})", str(path))
                coords[d] = np.asarray(fh[key][...]).ravel()
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in fh.attrs.items()}
        except DatasetError:
            raise
        except Exception as err:
            raise DatasetError(f"cannot read data (truncated or corrupt file?): {type(err).__name__}: {err}",
                               str(path)) from err
    for v, arr in data.items():
        if arr.shape != first.shape:
            raise DatasetError(f"variable {v!r} has shape {arr.shape}, expected {first.shape}", str(path))
    nt = first.shape[1]
    if t.size == nt + 1:
        t = t[:nt]
    if t.size != nt:
        raise DatasetError(f"'t-coordinate' has {t.size} entries but the data have {nt} time steps", str(path))
    for d, n in zip(dims, first.shape[2:]):
        if coords[d].size != n:
            raise DatasetError(f"'{d}-coordinate' has {coords[d].size} entries but the data have {n}", str(path))
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
    ds = xr.Dataset({v: (("sample", "time", *dims), a) for v, a in data.items()},
                    coords={"sample": np.arange(first.shape[0]), "time": t, **coords},
                    attrs={"equation": equation or str(attrs.get("equation", "unknown (PDEBench file)")),
                           "parameters": json.dumps(params, default=str, sort_keys=True),
                           "generator": f"PDEBench file {path.name}", "version": "PDEBench",
                           "seed": (int(attrs.get("seed", -1)) if str(attrs.get("seed", "-1")).lstrip("-").isdigit()
                                    else -1),
                           "licence": licence})
    return validate(ds, path=str(path))


def write_pdebench(ds: xr.Dataset, path: str | os.PathLike, *, variable: str | None = None) -> Path:
    """Export one trajectory variable as a PDEBench HDF5 file (``tensor`` plus coordinates), atomically.

    Scalar attrs and the decoded ``parameters`` are written as HDF5 attributes.
    """
    path = Path(path)
    validate(ds, path=str(path))
    from sciflow.data.schema import trajectory_variables

    names = trajectory_variables(ds)
    variable = variable or names[0]
    if variable not in names:
        raise DatasetError(f"no trajectory variable {variable!r} (have {names})", str(path))
    da = ds[variable]
    space = da.dims[2:]
    if len(space) > 3:
        raise DatasetError(f"PDEBench supports up to 3 space dims, {variable!r} has {space}", str(path))
    with _atomic_target(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("tensor", data=np.asarray(da.values), chunks=True)
            fh.create_dataset("t-coordinate", data=np.asarray(ds["time"].values, dtype=np.float64))
            for d, key in zip(space, _SPACE_KEYS):
                fh.create_dataset(key, data=np.asarray(ds[d].values))
            for k, v in ds.attrs.items():
                if isinstance(v, (str, int, float, np.number)):
                    fh.attrs[k] = v
            with contextlib.suppress(Exception):
                for k, v in json.loads(ds.attrs.get("parameters", "{}")).items():
                    if isinstance(v, (int, float, str)) and k not in fh.attrs:
                        fh.attrs[k] = v
    return path
