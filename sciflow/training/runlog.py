"""Run logs: one JSON object per line (``metrics.jsonl``), optionally mirrored to TensorBoard.

Only rank 0 writes. Each record carries ``step`` and flat metric names (``train/loss``,
``train/terms/residual``, ``val/loss``, ``lr``, ``samples_per_s``, ...).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf; keep them readable
    return v


class JSONLLogger:
    """Append records to ``<run_dir>/metrics.jsonl``; ``tensorboard=True`` also writes events
    under ``<run_dir>/tb`` if the ``tensorboard`` package is installed (a warning otherwise)."""

    def __init__(self, run_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.jsonl" if (run_dir is not None and enabled) else None
        self._tb = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except Exception:  # tensorboard is an optional extra
                    warnings.warn("train.tensorboard=true but the 'tensorboard' package is not installed; "
                                  "logging to metrics.jsonl only (pip install 'sciflow[tensorboard]')",
                                  stacklevel=2)
                else:
                    self._tb = SummaryWriter(str(self.path.parent / "tb"))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        record = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a truncated last line, from a killed run, is dropped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
