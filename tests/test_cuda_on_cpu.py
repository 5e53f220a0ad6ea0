"""The GPU tests (``tests/test_cuda.py``, marked ``gpu``, run on a CUDA machine by
``benchmarks/gpu_check.sh``) run on the CPU, so a GPU session never finds an error in the tests
themselves: the same comparisons with ``SCIFLOW_TEST_DEVICE=cpu`` (device-placement checks then
compare CPU with CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_tests_pass_on_the_cpu():
    env = dict(os.environ, SCIFLOW_TEST_DEVICE="cpu")
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                          "tests/test_cuda.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
