"""sciflow: learning physical dynamics with neural differential equations.

The public API is curated here and resolved lazily, so ``import sciflow`` stays cheap and a
subpackage's optional dependencies are only imported when that subpackage is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (extended as subsystems land)
_API: dict[str, str] = {
    "LossOutput": "sciflow.models.base",
    "SciflowModel": "sciflow.models.base",
    "TrajectoryBatch": "sciflow.data.batches",
    "CollocationBatch": "sciflow.data.batches",
    "IrregularBatch": "sciflow.data.batches",
    "PopulationBatch": "sciflow.data.batches",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'sciflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
