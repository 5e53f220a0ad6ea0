"""``sciflow train`` / ``sciflow evaluate`` on meta-flow-matching configs (sciflow.cli.mfm): the run
folder, interrupt + ``--resume`` equal to the uninterrupted run, evaluation equal to training's
scores, the FM / CGFM baselines by one override, the particle-system config, a CPU budget that ends
the run early, and the errors (unknown key, another config on resume, a used folder, an unfinished
run, ``--uq``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sciflow.cli import main
from sciflow.training.checkpoint import CheckpointManager
from tests._interrupt import Interrupted, crash_after

MODEL = ["model.knn_k=8", "model.gnn_hidden=16", "model.embedding_dim=16", "model.field_width=32",
         "model.field_depth=2", "model.time_embedding_dim=16", "model.fourier_features=16", "model.solver=rk4",
         "model.nfe=8"]
LETTERS = [*MODEL, "data.n_points=48", "data.n_eval_points=48", "data.val_points=48", "data.n_rotations=2",
           "data.val_rotations=1", "data.test_rotations=1", "data.seen_letters=2", "data.seen_rotations=1",
           "train.steps=12", "train.eval_every=4", "train.check_every=3", "train.points_per_population=16"]


def _train(run: Path, *extra: str, config: str = "mfm_letters") -> int:
    return main(["train", config, "--run-dir", str(run), *LETTERS, *extra])


def test_train_interrupt_resume_evaluate(tmp_path: Path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _train(ref) == 0
    m = json.loads((ref / "metrics.json").read_text())
    assert (m["method"], m["seed"], m["steps"], m["selection"]) == ("MFM", 0, 12, "best_val")  # seeds[0] of the yaml
    assert [h["step"] for h in m["history"]] == [4, 8, 12] and m["best_step"] in (4, 8, 12)
    assert m["best_val_W2"] == min(h["val"] for h in m["history"])
    test, seen = m["scores"]["test"], m["scores"]["seen"]
    assert (test["populations"], test["points"], seen["populations"]) == (3, 48, 2)  # Y G M; two seen letters
    for s in (test, seen):
        assert all(math.isfinite(v) for v in s["method"].values())  # MMD² is the unbiased estimate: may be < 0
        assert min(s["method"][k] for k in ("W1", "W2", "energy")) > 0
        gap = (s["identity"]["W2"] - s["method"]["W2"]) / (s["identity"]["W2"] - s["oracle"]["W2"])
        assert s["gap_closed"]["W2"] == pytest.approx(gap)
    assert m["test_W2"] == test["method"]["W2"]
    assert {"config.yaml", "metrics.json", "predictions.png"} <= {p.name for p in ref.iterdir()}
    assert [p.name for p in CheckpointManager(ref / "checkpoints").paths()] == \
        ["ckpt-00000006.pt", "ckpt-00000009.pt", "ckpt-00000012.pt"]

    with pytest.raises(Interrupted), crash_after(monkeypatch, 6):
        _train(run)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2  # stopped before model selection
    assert "stopped at step 6 of 12 (before model selection)" in capsys.readouterr().err
    assert _train(run) == 2
    assert "already holds checkpoints: add --resume" in capsys.readouterr().err
    assert _train(run, "train.lr=0.01", "--resume") == 2
    assert "another train_config: lr = 0.002 there, 0.01 here" in capsys.readouterr().err
    assert _train(run, "--resume") == 0
    assert "ckpt-00000006.pt (step 6, phase train)" in capsys.readouterr().out
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["scores"] == m["scores"] and resumed["history"] == m["history"]
    a = CheckpointManager(ref / "checkpoints").load_latest()[0]["model"]
    b = CheckpointManager(run / "checkpoints").load_latest()[0]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    assert main(["evaluate", str(run)]) == 0
    e = json.loads((run / "eval_mfm.json").read_text())
    assert e["scores"] == m["scores"] and e["checkpoint"].endswith("ckpt-00000012.pt")
    assert main(["evaluate", str(run), "--uq", "ensemble"]) == 2
    assert "--uq and overrides do not apply" in capsys.readouterr().err


def test_baselines_by_one_override_and_the_particle_system(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    assert _train(tmp_path / "cgfm", "model.conditioning=population_id") == 0
    c = json.loads((tmp_path / "cgfm" / "metrics.json").read_text())
    assert c["method"] == "CGFM" and "seen" not in c["scores"]  # no one-hot for populations without an id
    cfg = (tmp_path / "cgfm" / "config.yaml").read_text()
    assert "num_populations: 52" in cfg  # 26 letters x 2 rotations: every split's ids

    agg = [*MODEL, "data.n_points=32", "data.n_eval_points=32", "data.val_points=32", "data.n_train=8",
           "data.n_val=2", "data.n_test=2", "data.steps=5", "train.steps=6", "train.eval_every=3",
           "train.check_every=3", "train.points_per_population=16", "model.conditioning=none", "train.seed=4"]
    assert main(["train", "mfm_aggregation", "--run-dir", str(tmp_path / "agg"), *agg]) == 0
    a = json.loads((tmp_path / "agg" / "metrics.json").read_text())
    assert (a["method"], a["seed"], a["scores"]["test"]["populations"]) == ("FM", 4, 2)
    assert set(a["scores"]) == {"test"} and math.isfinite(a["test_W2"])


def test_cpu_budget_override_ends_the_run_early(tmp_path: Path) -> None:
    """``train.time_budget_s`` (CPU seconds) stops after step 1: validated, selected, saved as the
    final checkpoint and scored; ``metrics.json`` says so, and ``evaluate`` scores the run alike."""
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert _train(run, "train.time_budget_s=1e-4") == 0
    m = json.loads((run / "metrics.json").read_text())
    assert (m["steps"], m["stopped_by_budget"], m["best_step"]) == (1, True, 1)
    assert [h["step"] for h in m["history"]] == [1] and m["best_val_W2"] == m["history"][0]["val"] > 0
    assert math.isfinite(m["test_W2"]) and m["test_W2"] == m["scores"]["test"]["method"]["W2"]
    assert [p.name for p in CheckpointManager(run / "checkpoints").paths()] == ["ckpt-00000001.pt"]
    assert "time_budget_s: 0.0001" in (run / "config.yaml").read_text()
    assert main(["evaluate", str(run)]) == 0
    e = json.loads((run / "eval_mfm.json").read_text())
    assert (e["steps"], e["stopped_by_budget"]) == (1, True) and e["scores"] == m["scores"]


@pytest.mark.parametrize("override, message", [
    ("train.foo=1", "train.foo"),
    ("model.knn=3", "model.knn"),
    ("data.test_letters=[X]", "val and test letters overlap: ['X']"),
    ("train.seeds=[]", "train.seeds must be a non-empty list of integers"),
    ("train.selection=best", "selection must be one of ('last', 'best_val')"),
    ("train.time_budget_s=0", "time_budget_s (CPU seconds) must be > 0 or None, got 0"),
    ("extra.x=1", "unknown section(s) ['extra']"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, capsys, override: str, message: str) -> None:
    assert _train(tmp_path / "bad", override) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
