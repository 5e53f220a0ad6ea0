"""Two-process DDP (torchrun, gloo) through the sciflow trainer follows the single-process run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.mark.distributed
def test_two_process_loss_curve_matches_single_process(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed")
    import ddp_scaling

    assert ddp_scaling.main(["--steps", "4", "--n-traj", "6", "--n-time", "31", "--width", "16",
                             "--batch", "16", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "ddp_scaling.json").read_text())
    assert r["nproc"] == 2 and r["backend"] == "gloo" and len(r["curves"]["ddp"]) == 4
    # same parameter trajectory: the per-step validation losses agree to float32 round-off ...
    assert r["max_rel_val_loss_diff"] < 1e-4, r["curves"]
    # ... while training does move them (a test that cannot fail would be worthless)
    assert r["val_loss_first_last"]["single"][0] != r["val_loss_first_last"]["single"][1]
    assert 0 < r["scaling_efficiency"] and r["median_step_s"]["ddp"] > 0
