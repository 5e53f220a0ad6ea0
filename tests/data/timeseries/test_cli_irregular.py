"""End to end: ``sciflow train`` / ``sciflow evaluate`` on the irregular-series data path."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sciflow import cli
from sciflow.config import ConfigError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ts"
TRAIN = {"max_steps": 4, "eval_every": 2, "log_every": 2, "progress": False, "device": "cpu"}


def _archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "Equal").mkdir(parents=True)
    for s in ("TRAIN", "TEST"):
        shutil.copy(FIX / f"Equal_{s}.ts", root / "Equal" / f"Equal_{s}.ts")
    return root


def test_train_and_evaluate_classification_by_dataset_name(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "uea.yaml"
    # the YAML says 1 channel / 3 classes: the data (2 channels, 2 classes) decides
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "stable_sde", "kind": "lnsde", "hidden_dim": 4, "input_channels": 1, "n_classes": 3},
        "data": {"name": "Equal", "root": str(_archive(tmp_path)), "val_fraction": 0.25, "test_fraction": 0.25,
                 "batch_size": 2},
        "train": TRAIN, "run_dir": str(tmp_path / "run")}))
    assert cli.main(["train", str(cfg), "data.missing_rate=0.5", "data.seed=1"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["input_channels"] == 2 and saved["model"]["n_classes"] == 2
    assert saved["data"]["missing_rate"] == 0.5
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "eval_classification.json").read_text())
    assert '"test_accuracy"' in capsys.readouterr().out
    # the reported accuracy is the checkpoint's accuracy on the (re-derived) test split, with the
    # readout's BatchNorm statistics recomputed on the training split ("precise BN")
    exp = cli.load_run(tmp_path / "run")
    splits = cli.prepare_splits(exp)
    model = cli.load_trained(exp, tmp_path / "run")
    model.calibrate(splits.train, generator=torch.Generator().manual_seed(exp.train.seed))
    logits = model.predict(splits.test, generator=torch.Generator().manual_seed(exp.train.seed))
    acc = float((logits.argmax(-1) == splits.test.labels).float().mean())
    assert report["task"] == "classification" and report["test_accuracy"] == pytest.approx(acc)
    assert report["test_nonfinite"] == 0 and report["n_test"] == len(splits.test) == 2
    # 2 of the 4 points of each channel dropped; the files' two '?' may or may not be among them
    assert 0.5 - 2 / 48 - 1e-9 <= splits.attrs["observed_fraction"] <= 0.5


def _lorenz_config(tmp_path: Path, kind: str, task: str, missing_rate: float) -> Path:
    """A tiny irregular-Lorenz experiment (12 trajectories of 12 observations, 3 targets)."""
    cfg = tmp_path / "lorenz.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "stable_sde", "kind": kind, "hidden_dim": 4, "task": task},
        "data": {"generator": "lorenz63", "params": {"n": 12, "n_time": 40, "dt": 0.02, "n_obs": 12,
                                                       "rtol": 1e-6, "atol": 1e-6},
                 "n_target": 3, "missing_rate": missing_rate, "val_fraction": 0.25, "test_fraction": 0.25,
                 "batch_size": 4},
        "train": TRAIN, "eval": {"uq": "samples", "n_samples": 6}, "run_dir": str(tmp_path / "run")}))
    return cfg


def test_irregular_forecasting_with_lorenz_and_errors(tmp_path: Path) -> None:
    cfg = _lorenz_config(tmp_path, "lsde", "forecasting", 0.25)
    assert cli.main(["train", str(cfg)]) == 0
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 0
    r = json.loads((tmp_path / "run" / "eval_samples.json").read_text())
    assert r["task"] == "forecasting" and 0.0 <= r["coverage"] <= 1.0 and r["crps"] > 0
    # the reported CRPS is that of the checkpoint's own sample paths on the test targets
    exp = cli.load_run(tmp_path / "run")
    splits = cli.prepare_splits(exp)
    model = cli.load_trained(exp, tmp_path / "run")
    with torch.no_grad():
        samples = model.sample(splits.test, 6, generator=torch.Generator().manual_seed(exp.train.seed))
    y = splits.test.targets
    crps = (samples - y).abs().mean(0) - 0.5 * (samples[:, None] - samples[None]).abs().mean((0, 1))
    assert r["crps"] == pytest.approx(float(crps.mean()), rel=1e-4)
    var = samples.var(0).clamp_min(1e-6)  # the NLL of the Gaussian moment-matched to the same draws
    nll = 0.5 * (torch.log(2 * math.pi * var) + (y - samples.mean(0)) ** 2 / var)
    assert r["nll"] == pytest.approx(float(nll.mean()), rel=1e-4)
    assert float(splits.train.mask.float().mean()) == pytest.approx(0.75, abs=0.1)  # missing_rate reached the generator
    with pytest.raises(ConfigError, match="data.n_target"):
        cli.prepare_splits(cli.load_experiment(cfg, ["data.n_target=null"]))
    with pytest.raises(ConfigError, match="not found"):
        cli.prepare_splits(cli.load_experiment(cfg, ["data.generator=null", "data.name=NoSuchProblem",
                                                     "data.root=" + str(tmp_path)]))
    with pytest.raises(ConfigError, match="does not fit the data"):
        exp = cli.load_experiment(cfg, ["data.generator=null", "data.name=Equal",
                                        "data.root=" + str(_archive(tmp_path))])
        cli.resolve_model_for_data(exp, cli.prepare_splits(exp))


def test_irregular_interpolation_holds_out_interior_observations(tmp_path: Path) -> None:
    cfg = _lorenz_config(tmp_path, "lnsde", "interpolation", 0.0)
    assert cli.main(["train", str(cfg)]) == 0
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 0
    r = json.loads((tmp_path / "run" / "eval_samples.json").read_text())
    assert r["task"] == "interpolation" and math.isfinite(r["nll"]) and 0.0 <= r["coverage"] <= 1.0
    s = cli.prepare_splits(cli.load_run(tmp_path / "run"))
    b = s.test
    assert (b.target_times > b.times[:, :1]).all() and (b.target_times < b.times[:, -1:]).all()
