"""A process that 'dies' right after a checkpoint is written: for the interrupt-and-resume tests of
the command line (``sciflow train ... --resume``)."""

from __future__ import annotations

from contextlib import contextmanager

from sciflow.training.checkpoint import CheckpointManager


class Interrupted(BaseException):  # like KeyboardInterrupt: not caught as a usage error
    pass


@contextmanager
def crash_after(monkeypatch, step: int):
    """:class:`Interrupted` is raised right after the checkpoint of ``step`` is written."""
    save = CheckpointManager.save

    def crashing(self, state):
        path = save(self, state)
        if state["step"] == step:
            raise Interrupted
        return path

    monkeypatch.setattr(CheckpointManager, "save", crashing)
    try:
        yield
    finally:
        monkeypatch.setattr(CheckpointManager, "save", save)
