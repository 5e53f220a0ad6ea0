"""Run folders of the model families that bring their own training loop (causal PINN, meta flow
matching): ``config.yaml`` and ``checkpoints/ckpt-<step>.pt`` written by
:class:`~sciflow.training.checkpoint.CheckpointManager`, the newest :data:`KEEP_LAST` kept. The
loop's ``resume_mismatch(state)`` says why a checkpoint does not belong to the config at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from sciflow.config import ConfigError
from sciflow.training.checkpoint import CheckpointManager

#: Checkpoints kept per run (older ones are deleted after each write).
KEEP_LAST = 3

Mismatch = Callable[[Mapping[str, Any]], "str | None"]


def open_run(run_dir: Path, config: Mapping[str, Any], mismatch: Mismatch,
             resume: bool) -> tuple[CheckpointManager, dict[str, Any] | None]:
    """The run's checkpoints and the state to continue from (``None``: a new run), after writing
    ``config.yaml`` atomically. Without ``resume`` a folder that already holds checkpoints is refused
    (its newer checkpoints would shadow the new run's); with it, a checkpoint of another config is."""
    ckpts = CheckpointManager(run_dir / "checkpoints", KEEP_LAST)
    state = None
    if resume:
        found = ckpts.load_latest()
        if found is not None:
            state, path = found
            if (why := mismatch(state)) is not None:
                raise ConfigError(f"--resume from {str(path)!r}: {why}")
            print(f"resuming from {path} (step {state['step']}, phase {state['phase']})")
    elif ckpts.paths():
        raise ConfigError(f"{str(run_dir)!r} already holds checkpoints: add --resume to continue that run, or "
                          "choose a new --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    tmp.replace(run_dir / "config.yaml")
    return ckpts, state


def latest_state(run_dir: Path, mismatch: Mismatch) -> tuple[dict[str, Any], Path]:
    """The newest good checkpoint of a trained run and its path; no checkpoint, or one of another
    config, is a :class:`ConfigError`."""
    found = CheckpointManager(run_dir / "checkpoints", KEEP_LAST).load_latest()
    if found is None:
        raise ConfigError(f"no checkpoint in {str(run_dir / 'checkpoints')!r}; train with `sciflow train`")
    state, path = found
    if (why := mismatch(state)) is not None:
        raise ConfigError(f"{str(path)!r} does not belong to {str(run_dir / 'config.yaml')!r}: {why}")
    return state, path
