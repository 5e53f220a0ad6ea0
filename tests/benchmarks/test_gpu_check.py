"""``benchmarks/gpu_check.sh --dry-run`` runs its whole pipeline on CPU and writes its summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_dry_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = run("--dry-run", "--no-tests", "--only", "ns_generation", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["dry_run"] is True and summary["scale"] == "smoke"
    assert summary["device"]["cuda_available"] == torch.cuda.is_available()
    assert summary["benchmarks"]["ns_generation"]["status"] == "ok"
    rec = json.loads((out / "suite" / "ns_generation.json").read_text())
    assert rec["metrics"][0]["value"] > 0 and (out / "ns_generation.json").is_file()


def test_refuses_a_real_run_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = run("--out", str(tmp_path))
    assert proc.returncode == 3 and "no CUDA device" in proc.stderr


def test_rejects_unknown_options() -> None:
    proc = run("--frobnicate")
    assert proc.returncode == 2 and "unknown option" in proc.stderr


@pytest.mark.slow
def test_full_dry_run_with_test_collection(tmp_path: Path) -> None:
    proc = run("--dry-run", "--out", str(tmp_path / "gpu"), "--speed-budget", "1200", "--accuracy-budget", "1200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu" / "gpu_check.json").read_text())
    assert summary["pytest_gpu"] == "passed"
    assert all(v["status"] == "ok" for v in summary["benchmarks"].values()), summary["benchmarks"]
