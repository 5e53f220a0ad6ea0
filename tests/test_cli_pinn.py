"""``sciflow train`` / ``sciflow evaluate`` on a causal-PINN config (sciflow.cli.pinn): run folder,
interrupt + ``--resume`` equal to the uninterrupted run, corrupt-checkpoint fallback, and the errors
(unknown key, another config on resume, a used run folder, ``--uq``), and a time-marching config
(Lorenz-63 in three windows) interrupted inside a window, resumed and scored against the Dopri5 trajectory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sciflow.cli import main
from sciflow.training.checkpoint import CheckpointManager, CorruptCheckpointWarning
from tests._interrupt import Interrupted, crash_after

TINY = ["width=8", "depth=2", "steps=20", "n_interior=64", "n_chunks=8", "n_initial=16", "n_boundary=16",
        "check_every=5", "lbfgs_steps=120", "dtype=float64"]


def _train(run: Path, *extra: str) -> int:
    return main(["train", "pinn_burgers", "--run-dir", str(run), *TINY, *extra])


def test_train_interrupt_resume_evaluate(tmp_path: Path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _train(ref) == 0
    metrics = json.loads((ref / "metrics.json").read_text())
    assert math.isfinite(metrics["rel_l2"]) and metrics["rel_l2"] < 2
    assert (metrics["phase"], metrics["steps"], metrics["adam_steps"], metrics["lbfgs_iterations"]) == ("done", 140,
                                                                                                        20, 120)
    assert metrics["train_cpu_s"] > 0 and metrics["train_wall_s"] > 0
    assert {"config.yaml", "metrics.json", "solution.png", "losses.png", "causal_weights.png"} <= \
        {p.name for p in ref.iterdir()}
    # keep-last-3 of the checkpoints at 5 ... 20 (Adam), 120 (L-BFGS block boundary), 140 (end)
    assert [p.name for p in CheckpointManager(ref / "checkpoints").paths()] == \
        ["ckpt-00000020.pt", "ckpt-00000120.pt", "ckpt-00000140.pt"]

    with pytest.raises(Interrupted), crash_after(monkeypatch, 120):  # the checkpoint inside L-BFGS
        _train(run)
    assert not (run / "metrics.json").exists()
    capsys.readouterr()
    assert _train(run) == 2  # a used folder without --resume
    assert "already holds checkpoints: add --resume" in capsys.readouterr().err
    assert _train(run, "lr=0.01", "--resume") == 2
    assert "another Config: lr = 0.002 there, 0.01 here" in capsys.readouterr().err
    assert _train(run, "--resume") == 0
    assert "ckpt-00000120.pt (step 120, phase lbfgs)" in capsys.readouterr().out
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["rel_l2"] == metrics["rel_l2"] and resumed["steps"] == 140
    a = CheckpointManager(ref / "checkpoints").load_latest()[0]["model"]
    b = CheckpointManager(run / "checkpoints").load_latest()[0]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    assert main(["evaluate", str(run)]) == 0
    ev = json.loads((run / "eval_pinn.json").read_text())
    assert ev["rel_l2"] == metrics["rel_l2"] and ev["checkpoint"].endswith("ckpt-00000140.pt")
    assert main(["evaluate", str(run), "--uq", "conformal"]) == 2
    assert "--uq and overrides do not apply" in capsys.readouterr().err
    # a corrupt newest checkpoint: a warning, and the previous one is used
    (run / "checkpoints" / "ckpt-00000140.pt").write_bytes(b"not a zip")
    with pytest.warns(CorruptCheckpointWarning, match="ckpt-00000140.pt"):
        assert main(["evaluate", str(run)]) == 0
    ev = json.loads((run / "eval_pinn.json").read_text())
    assert ev["checkpoint"].endswith("ckpt-00000120.pt") and ev["phase"] == "lbfgs"
    assert ev["rel_l2"] != metrics["rel_l2"]


def test_pinn_config_errors_and_list_mark(tmp_path: Path, capsys) -> None:
    assert _train(tmp_path / "a", "widht=8") == 2
    assert "unknown key 'widht' (did you mean 'width'?)" in capsys.readouterr().err
    assert _train(tmp_path / "b", "t_final=2.0") == 2
    assert "problem 'burgers' has a fixed time span" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["list", "configs"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  pinn_")}
    assert all("causal-PINN config: `sciflow train`" in ln for ln in lines.values()), lines


def test_cpu_budget_override_stops_training(tmp_path: Path, capsys) -> None:
    """``time_budget_s`` (CPU seconds) ends Adam at its first check and skips L-BFGS; the run is
    finished (metrics written, evaluable); a non-positive budget is refused before any work."""
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert _train(run, "time_budget_s=1e-9") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["phase"], metrics["adam_steps"], metrics["lbfgs_iterations"]) == ("done", 1, 0)
    assert main(["evaluate", str(run)]) == 0
    assert _train(tmp_path / "bad", "time_budget_s=0") == 2
    assert "time_budget_s (CPU seconds) must be > 0 or None, got 0" in capsys.readouterr().err


LORENZ = ["width=16", "steps=12", "time_windows=3", "t_final=0.3", "check_every=4", "epsilon_schedule=[1.0]",
          "dtype=float64"]


def test_time_marching_run_interrupt_resume_evaluate(tmp_path: Path, monkeypatch, capsys) -> None:
    """Three Lorenz windows of 12 steps; the process dies after the checkpoint of step 20 (window
    2 of 3); ``--resume`` ends where the uninterrupted run ends, and both score against the
    Dopri5 reference. Evaluating a run stopped mid-way says which window it stopped in."""
    torch.set_num_threads(1)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", "pinn_lorenz63", "--run-dir", str(ref), *LORENZ]) == 0
    metrics = json.loads((ref / "metrics.json").read_text())
    assert (metrics["phase"], metrics["steps"], metrics["windows_done"]) == ("done", 36, 3)
    assert math.isfinite(metrics["rel_l2"]) and metrics["max_abs"] > 0

    with pytest.raises(Interrupted), crash_after(monkeypatch, 20):
        main(["train", "pinn_lorenz63", "--run-dir", str(run), *LORENZ])
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    assert "stopped in window 2 of 3" in capsys.readouterr().err
    assert main(["train", "pinn_lorenz63", "--run-dir", str(run), *LORENZ, "--resume"]) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["rel_l2"] == metrics["rel_l2"] and resumed["steps"] == 36
    a = CheckpointManager(ref / "checkpoints").load_latest()[0]["windows"]
    b = CheckpointManager(run / "checkpoints").load_latest()[0]["windows"]
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x) and len(b) == 3
    assert main(["evaluate", str(run)]) == 0
    assert json.loads((run / "eval_pinn.json").read_text())["rel_l2"] == metrics["rel_l2"]
