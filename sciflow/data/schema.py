"""The one data-at-rest schema of sciflow (DESIGN.md, CONTRIBUTING.md "Data").

A dataset is an ``xarray.Dataset`` whose trajectory variables have dims
``("sample", "time", *space)`` — the same spatial dims, in the same order, for every trajectory
variable — plus optional per-sample or static variables whose dims are an ordered subsequence of
those (e.g. a forcing field ``(x, y)`` or parameters ``(sample,)``). Every dim has a coordinate;
``time`` is strictly increasing (numeric or datetime); values are finite (a variable may opt out
for masked data by setting the attr ``allow_nan = 1``, with NaN as its missing-value marker).
Required attrs: ``equation, parameters, generator, version, seed, licence``.

:func:`validate` raises :class:`DatasetError` naming the first violation (and the file, if the
dataset was read from one).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

REQUIRED_ATTRS: tuple[str, ...] = ("equation", "parameters", "generator", "version", "seed", "licence")
SAMPLE, TIME = "sample", "time"


class DatasetError(ValueError):
    """A dataset or file violates the sciflow schema; the message names the problem and the file."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def _source(ds: xr.Dataset, path: str | None) -> str | None:
    return path if path is not None else ds.encoding.get("source")


def trajectory_variables(ds: xr.Dataset) -> list[str]:
    """Names of the data variables with dims starting ``(sample, time, ...)``."""
    return [k for k, v in ds.data_vars.items() if v.dims[:2] == (SAMPLE, TIME)]


def validate(ds: xr.Dataset, *, path: str | None = None, check_values: bool = True) -> xr.Dataset:
    """Check ``ds`` against the schema; return it unchanged or raise :class:`DatasetError`.

    ``check_values=False`` skips the finiteness scan (which reads all data of a lazy dataset).
    """
    if not isinstance(ds, xr.Dataset):
        raise DatasetError(f"expected an xarray.Dataset, got {type(ds).__name__}", path)
    src = _source(ds, path)

    def fail(msg: str) -> None:
        raise DatasetError(msg, src)

    traj = trajectory_variables(ds)
    if not traj:
        fail("no trajectory variable with dims ('sample', 'time', *space); found "
             + (", ".join(f"{k}{tuple(v.dims)}" for k, v in ds.data_vars.items()) or "no data variables"))
    space = ds[traj[0]].dims[2:]
    full = (SAMPLE, TIME, *space)
    for name, var in ds.data_vars.items():
        dims = var.dims
        if name in traj:
            if dims != full:
                fail(f"variable {name!r} has dims {dims}, expected {full} like {traj[0]!r}")
            continue
        it = iter(full)
        if not all(any(d == e for e in it) for d in dims):
            fail(f"variable {name!r} has dims {dims}, not an ordered subset of {full}")
    for dim in ds.dims:
        if dim not in ds.coords:
            fail(f"dimension {dim!r} has no coordinate")
    time = ds[TIME].values
    if time.ndim != 1:
        fail("coordinate 'time' must be 1-D")
    if time.size > 1:
        diffs = np.diff(time)
        zero = np.zeros((), dtype=diffs.dtype)
        if np.issubdtype(time.dtype, np.number) and not np.isfinite(time).all():
            fail("coordinate 'time' contains NaN/inf")
        if not (diffs > zero).all():
            i = int(np.argmax(~(diffs > zero)))
            fail(f"coordinate 'time' is not strictly increasing (at index {i + 1}: {time[i]} -> {time[i + 1]})")
    for dim in space:
        c = ds[dim].values
        if np.issubdtype(c.dtype, np.number) and not np.isfinite(c).all():
            fail(f"coordinate {dim!r} contains NaN/inf")
    for key in REQUIRED_ATTRS:
        if key not in ds.attrs:
            fail(f"missing required attribute {key!r} (required: {', '.join(REQUIRED_ATTRS)})")
    if check_values:
        for name, var in ds.data_vars.items():
            if not np.issubdtype(var.dtype, np.number) or int(var.attrs.get("allow_nan", 0)):
                continue
            bad = ~np.isfinite(var.data)
            n_bad = int(bad.sum())
            if n_bad:
                first = np.unravel_index(int(np.argmax(np.asarray(bad).ravel())), var.shape)
                where = ", ".join(f"{d}={i}" for d, i in zip(var.dims, first))
                fail(f"variable {name!r} has {n_bad} non-finite value(s), first at ({where})")
    return ds
