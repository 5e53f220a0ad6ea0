"""Helpers shared by the demo steps: atomic strict-JSON metrics and a headless matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _write_json(obj: Any, path: Path) -> None:
    from sciflow.data.io import write_json  # strict JSON, atomic

    write_json(obj, path)



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


