"""The demo's steps run alone (``sciflow demo --step NAME``) and write metrics, plots and a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sciflow.cli import main
from sciflow.config import ConfigError
from sciflow.demo import STEPS, run_demo


def test_causal_pinn_step_alone(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--step", "causal_pinn_burgers", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "causal_pinn_burgers" / "metrics.json").read_text())
    # a short run, but training must have moved the solution towards burgers_shock.mat
    assert m["rel_l2"] < 0.8 * m["rel_l2_untrained"], m
    for name in ("solution.png", "causal_weights.png", "losses.png"):
        assert (out / "causal_pinn_burgers" / name).stat().st_size > 5_000
    report = (out / "report.md").read_text()
    assert ("Burgers: a PDE solved by a causal PINN" in report
            and "![solution](causal_pinn_burgers/solution.png)" in report)
    assert "Lorenz-63" not in report  # only the step that ran
    assert not (out / "metrics.json").exists()  # the Lorenz step's file is not written by other steps


@pytest.mark.skipif(not STEPS["stable_sde_irregular"].available(), reason="stable SDE family not installed")
def test_stable_sde_step_alone_beats_persistence(tmp_path: Path) -> None:
    m = run_demo(tmp_path, quick=True, steps=["stable_sde_irregular"])["stable_sde_irregular"]
    # the predictive distribution at the 4 held-out observations is better than repeating the last value
    assert m["crps"] < m["persistence_mae"], m
    assert 0.0 < m["coverage_90"] <= 1.0 and m["last_loss"] < m["first_loss"]
    assert (tmp_path / "stable_sde_irregular" / "forecast.png").stat().st_size > 5_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"stable_sde_irregular"}


def test_unknown_step_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown demo step"):
        run_demo(tmp_path, steps=["nope"])
    assert main(["demo", "--step", "nope", "--out", str(tmp_path)]) == 2


def test_default_steps_follow_the_issue_order() -> None:
    defaults = [k for k, s in STEPS.items() if s.default]
    assert defaults == ["lorenz_ensemble", "causal_pinn_burgers", "wdno_burgers", "stable_sde_irregular"]


@pytest.mark.slow
@pytest.mark.skipif(not STEPS["wdno_burgers"].available(), reason="WDNO family not installed")
def test_wdno_step_quick(tmp_path: Path) -> None:
    m = run_demo(tmp_path, quick=True, steps=["wdno_burgers"])["wdno_burgers"]
    assert m["last_loss"] < m["first_loss"] and 0.0 <= m["coverage_90"] <= 1.0
    assert (tmp_path / "wdno_burgers" / "wdno_band.png").is_file()
