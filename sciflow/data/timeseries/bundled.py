"""Locate UEA/UCR problems: a user's archive folder, or the ``.ts`` files bundled in aeon/sktime.

The PyPI packages ``aeon`` and ``sktime`` ship a few archive problems as package data under
``<package>/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts``. They are found with
:func:`importlib.util.find_spec` on the top-level package, which locates the package folder
**without importing it** (importing aeon pulls in numba and scikit-learn), and read with
:func:`sciflow.data.timeseries.uea.read_ts`.

Search order for ``load_uea(name, root=...)``: ``root`` (``root/<Name>/<Name>_TRAIN.ts`` as in the
archive zip, or ``root/<Name>_TRAIN.ts``), the folders in the ``SCIFLOW_UEA_ROOT`` environment
variable (``os.pathsep``-separated), then aeon's and sktime's bundled data. Licences: see
``docs/datasets/irregular.md`` (the archive asks users to cite Bagnall et al. 2018 / Dau et al. 2019).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

from sciflow.data.timeseries.uea import TSData, read_ts

__all__ = ["BUNDLED", "DatasetNotFoundError", "find_uea", "load_uea", "package_data_roots"]

#: problems bundled in aeon (>= 1.0) that the tests and benchmarks rely on
BUNDLED: tuple[str, ...] = ("BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand")


class DatasetNotFoundError(FileNotFoundError):
    """No ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` in any searched folder (the message lists them)."""


def package_data_roots() -> list[Path]:
    """Data folders of the installed aeon / sktime packages (located without importing them)."""
    roots = []
    for pkg in ("aeon", "sktime"):
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            d = Path(loc) / "datasets" / "data"
            if d.is_dir():
                roots.append(d)
    return roots


def _search_roots(root: str | Path | None) -> list[Path]:
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env = os.environ.get("SCIFLOW_UEA_ROOT", "")
    roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return roots + package_data_roots()


def find_uea(name: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """Paths of ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` (see the module docstring for the
    search order). Raises :class:`DatasetNotFoundError` naming the dataset and every folder searched."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"dataset name must be a bare problem name like 'BasicMotions', got {name!r}")
    searched = []
    for r in _search_roots(root):
        for folder in (r / name, r):
            searched.append(str(folder))
            train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
            if train.is_file() and test.is_file():
                return train, test
    hint = ("" if package_data_roots() else
            " (neither aeon nor sktime is installed: `pip install aeon` bundles "
            + ", ".join(BUNDLED) + ")")
    raise DatasetNotFoundError(
        f"UEA/UCR dataset {name!r} not found: no {name}_TRAIN.ts and {name}_TEST.ts in any of "
        f"{searched or ['(no folders: pass root= or set SCIFLOW_UEA_ROOT)']}{hint}")


def load_uea(name: str, root: str | Path | None = None,
             split: Literal["all", "train", "test"] = "all") -> TSData:
    """Read a UEA/UCR problem. ``split="all"`` concatenates TRAIN then TEST (the stable-SDE /
    neural-CDE protocol re-splits the union; see :mod:`sciflow.data.timeseries.missing`)."""
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    train, test = find_uea(name, root)
    if split == "train":
        return read_ts(train, name=name)
    if split == "test":
        return read_ts(test, name=name)
    return TSData.concatenate([read_ts(train, name=name), read_ts(test, name=name)])
