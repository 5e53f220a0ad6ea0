"""The registries the command line resolves names in: models, data generators, solvers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping


def _write_json(obj: Any, path: Path) -> None:
    from sciflow.data.io import write_json  # strict JSON (non-finite → "inf"/"nan"), atomic

    write_json(obj, path)


def _models() -> Mapping[str, type]:
    from sciflow.models.registry import MODELS

    return MODELS


def _generators() -> Mapping[str, Callable[..., Any]]:
    try:
        from sciflow.data.registry import GENERATORS
    except ImportError:  # the data subsystem is optional for listing
        return {}
    return GENERATORS


def _solvers() -> Mapping[str, type]:
    try:
        from sciflow.solvers.registry import SOLVERS
    except ImportError:
        return {}
    return SOLVERS


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else ""


