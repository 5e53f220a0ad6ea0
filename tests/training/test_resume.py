"""Exact resume: a run SIGKILLed mid-way and resumed ends bit-for-bit where an uninterrupted
run ends (same seed, same device, same thread count)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from _trainer_toy import ToyRegressor, train_toy

SCRIPT = Path(__file__).resolve().parent / "_train_script.py"
REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _check_kill_resume(tmp_path: Path, optimizer: str) -> None:
    torch.set_num_threads(1)
    ref = train_toy(tmp_path / "ref", optimizer=optimizer)
    # killed (SIGKILL, no cleanup) after step 13: checkpoints of steps 5 and 10 exist, 11-13 are lost
    killed = _run(str(tmp_path / "run"), str(tmp_path / "run.pt"), "--kill-at", "13", "--optimizer", optimizer)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "run.pt").exists()
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts == ["ckpt-00000005.pt", "ckpt-00000010.pt"]
    res = train_toy(tmp_path / "run", resume=True, optimizer=optimizer)
    assert ref.steps == res.steps == 30
    a, b = ref.model.state_dict(), res.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after resume"
    for k in ref.ema.shadow:
        assert torch.equal(ref.ema.shadow[k], res.ema.shadow[k]), f"EMA of {k} differs after resume"
    assert ref.val_history[-1]["val/loss"] == res.val_history[-1]["val/loss"]
    # training moved the parameters, so equality is not vacuous
    torch.manual_seed(0)
    assert not torch.equal(ToyRegressor().state_dict()["net.0.weight"], a["net.0.weight"])
    final = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))
    assert final == ["ckpt-00000025.pt", "ckpt-00000030.pt"]  # keep_last=2


def test_sigkill_then_resume_equals_uninterrupted_adam(tmp_path: Path) -> None:
    _check_kill_resume(tmp_path, "adam")


def test_sigkill_then_resume_equals_uninterrupted_lbfgs(tmp_path: Path) -> None:
    _check_kill_resume(tmp_path, "lbfgs")


def test_resume_without_checkpoints_starts_fresh(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    a = train_toy(tmp_path / "a", resume=True, steps=10)  # nothing to resume: fresh start
    b = train_toy(tmp_path / "b", steps=10)
    assert torch.equal(a.model.net[0].weight, b.model.net[0].weight)


def test_resume_restores_early_stopping_and_the_histories(tmp_path: Path) -> None:
    """EarlyStopping's patience count and the train/val histories are in the checkpoint: a run that
    crashed after the checkpoint of step 4 (one evaluation without improvement counted) stops at step
    6 like the uninterrupted run. A fresh count would stop at step 10, and ``val_history`` would
    lack the evaluations before the crash."""
    import pytest

    from sciflow.training import Callback, EarlyStopping

    class Crash(Callback):
        def on_step_end(self, state, logs):
            if state.step == 5:
                raise RuntimeError("crash")

    torch.set_num_threads(1)
    # min_delta huge: only the first evaluation improves, so the stop falls at the third (step 6)
    kw = dict(steps=20, eval_every=2, checkpoint_every=2, log_every=2, keep_last=5)
    ref = train_toy(tmp_path / "ref", callbacks=[EarlyStopping(patience=2, min_delta=1e9)], **kw)
    assert ref.steps == 6 and ref.stop_reason.startswith("early stopping")
    with pytest.raises(RuntimeError, match="crash"):
        train_toy(tmp_path / "run", callbacks=[EarlyStopping(patience=2, min_delta=1e9), Crash()], **kw)
    res = train_toy(tmp_path / "run", resume=True, callbacks=[EarlyStopping(patience=2, min_delta=1e9)], **kw)
    assert res.steps == 6 and res.stop_reason == ref.stop_reason
    assert [r["step"] for r in res.val_history] == [2, 4, 6] and res.val_history == ref.val_history
    assert [r["step"] for r in res.history] == [r["step"] for r in ref.history] == [2, 4, 6]
