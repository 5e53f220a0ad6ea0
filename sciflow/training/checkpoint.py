"""Atomic, keep-last-k checkpoints that load with ``torch.load(weights_only=True)``.

Writing: serialise to ``<name>.tmp.<pid>`` in the same directory, ``fsync`` the file,
``os.replace`` it onto the final name (atomic on POSIX and Windows), ``fsync`` the directory.
A crash (even SIGKILL or power loss after the fsyncs) therefore leaves either the previous
checkpoint set or the new complete file, never a half-written ``ckpt-*.pt``.

Reading: newest first; a file that fails to load (truncated, corrupt, not a checkpoint) is
reported with a :class:`CorruptCheckpointWarning` naming the file and the error, and the next
older one is tried. Only tensors and primitive containers are stored, so the safe unpickler
(``weights_only=True``) suffices and loading a checkpoint cannot execute code.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")
#: The best-validation model (``TrainConfig.keep_best``), beside the numbered checkpoints.
BEST = "best.pt"


class CheckpointError(RuntimeError):
    """No usable checkpoint (all candidates corrupt) or a checkpoint of the wrong shape."""


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint file could not be loaded and was skipped."""


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # persist the rename itself
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # directories cannot be opened on some platforms
        pass
    return path


def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load one checkpoint with the safe unpickler; raise :class:`CheckpointError` on failure."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad magic, unsafe global, ...
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be loaded ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or "step" not in obj:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a sciflow checkpoint (no 'step' entry)")
    return obj


class CheckpointManager:
    """Numbered checkpoints ``ckpt-<step>.pt`` in ``directory``; keeps the newest ``keep_last``."""

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any]) -> Path:
        path = save_atomic(state, self.directory / f"ckpt-{int(state['step']):08d}.pt")
        for old in self.paths()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, map_location: Any = "cpu") -> tuple[dict[str, Any], Path] | None:
        """Newest loadable checkpoint and its path; ``None`` if there is none at all.

        Corrupt newer files are skipped with a :class:`CorruptCheckpointWarning`; if every
        file is corrupt a :class:`CheckpointError` lists them.
        """
        candidates = self.paths()
        if not candidates:
            return None
        errors = []
        for path in reversed(candidates):
            try:
                return load(path, map_location), path
            except CheckpointError as e:
                errors.append(str(e))
                warnings.warn(f"{e}; falling back to the previous checkpoint", CorruptCheckpointWarning,
                              stacklevel=2)
        raise CheckpointError("no usable checkpoint in " + str(self.directory) + ":\n  " + "\n  ".join(errors))
