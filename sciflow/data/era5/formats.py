"""Recognising and opening ERA5 sources: zarr stores (local or remote), NetCDF-3, NetCDF-4/HDF5
and GRIB, from the file's first bytes; truncated or corrupt GRIB files are caught before cfgrib."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import xarray as xr

from sciflow.data.era5.layout import _GRIB_SUFFIXES, ERA5FormatError


def _sniff(path: Path) -> str:
    """'zarr' | 'grib' | 'netcdf3' | 'hdf5' from the file's content."""
    if path.is_dir():
        if any((path / m).exists() for m in (".zgroup", "zarr.json", ".zmetadata", ".zattrs")):
            return "zarr"
        raise ERA5FormatError(f"{path}: a directory but not a zarr store (no .zgroup / zarr.json)")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"GRIB"):
        return "grib"
    if head.startswith(b"CDF\x01") or head.startswith(b"CDF\x02") or head.startswith(b"CDF\x05"):
        return "netcdf3"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if path.suffix.lower() in _GRIB_SUFFIXES:
        with path.open("rb") as fh:
            if b"GRIB" in fh.read(4096):
                return "grib"  # GRIB after a leading header/padding
    if len(head) == 0:
        raise ERA5FormatError(f"{path}: empty file")
    raise ERA5FormatError(f"{path}: not GRIB, NetCDF or zarr (first bytes {head!r}); corrupt or unsupported file")


def _find(fh, token: bytes, offset: int, size: int, block: int = 1 << 16) -> int:
    """Byte offset of the next ``token`` at or after ``offset`` (-1 if none), reading in blocks."""
    while offset < size:
        fh.seek(offset)
        chunk = fh.read(block)
        k = chunk.find(token)
        if k >= 0:
            return offset + k
        if len(chunk) < block:
            return -1
        offset += block - len(token) + 1
    return -1


def _check_grib_structure(path: Path) -> None:
    """Walk the GRIB messages' length fields: a truncated file has a message running past its end.

    cfgrib silently skips a truncated last message, which would drop time steps unnoticed. Only
    the 16-byte headers and 4-byte end markers are read, so this is cheap for large files.
    """
    size = path.stat().st_size
    n_msg = 0
    with path.open("rb") as fh:
        offset = 0
        while True:
            start = _find(fh, b"GRIB", offset, size)
            if start < 0:
                break
            fh.seek(start)
            head = fh.read(16)
            if len(head) < 16:
                raise ERA5FormatError(f"{path}: truncated GRIB file (message {n_msg} header cut at byte {start})")
            edition = head[7]
            if edition == 1:
                length = int.from_bytes(head[4:7], "big")
                if length & 0x800000:
                    # GRIB1 large-message encoding: the length field is not the message length;
                    # the structure of the rest cannot be checked from headers alone
                    return
            elif edition == 2:
                length = int.from_bytes(head[8:16], "big")
            else:
                raise ERA5FormatError(
                    f"{path}: corrupt GRIB file (message {n_msg} at byte {start} has edition {edition})")
            end = start + length
            if end > size:
                raise ERA5FormatError(
                    f"{path}: truncated GRIB file (message {n_msg} needs {length} bytes from byte {start}, "
                    f"file has {size})")
            fh.seek(end - 4)
            if fh.read(4) != b"7777":
                raise ERA5FormatError(f"{path}: corrupt GRIB file (message {n_msg} does not end with '7777')")
            offset, n_msg = end, n_msg + 1
    if n_msg == 0:
        raise ERA5FormatError(f"{path}: no GRIB messages found")


def _open_raw(source: Any, chunks: Mapping[str, int] | None) -> tuple[xr.Dataset, str]:
    """Open any supported source; returns the dataset and a name for messages."""
    if isinstance(source, xr.Dataset):
        return source, str(source.encoding.get("source", "<dataset>"))
    if not isinstance(source, (str, os.PathLike)):
        # a zarr store object (MutableMapping / zarr.storage.*)
        try:
            return xr.open_zarr(source, chunks=chunks if chunks is not None else {}), repr(source)
        except Exception as e:  # noqa: BLE001 - re-raised with the source named
            raise ERA5FormatError(f"{source!r}: cannot be opened as a zarr store: {e}") from e
    if isinstance(source, str) and "://" in source:
        # remote zarr (e.g. gs://weatherbench2/...; needs fsspec + gcsfs/s3fs installed)
        try:
            return xr.open_zarr(source, chunks=chunks if chunks is not None else {}), source
        except Exception as e:  # noqa: BLE001 - re-raised with the source named
            raise ERA5FormatError(f"{source}: cannot be opened as a remote zarr store: {e}") from e
    path = Path(source)
    kind = _sniff(path)
    try:
        if kind == "zarr":
            ds = xr.open_zarr(path, chunks=chunks if chunks is not None else {})
        elif kind == "grib":
            _check_grib_structure(path)
            # indexpath="" keeps cfgrib from writing .idx files beside (possibly read-only) data
            ds = xr.open_dataset(path, engine="cfgrib", chunks=chunks,
                                 backend_kwargs={"indexpath": "", "errors": "raise"})
        elif kind == "netcdf3":
            ds = xr.open_dataset(path, engine="scipy", chunks=chunks)
        else:
            ds = xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
    except ERA5FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ERA5FormatError(f"{path}: cannot read {kind} file (truncated or corrupt?): {e}") from e
    return ds, str(path)


