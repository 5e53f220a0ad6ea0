from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference"


def pytest_configure(config: pytest.Config) -> None:
    # two test workers on two cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(int(os.environ.get("SCIFLOW_TEST_THREADS", "1")))


@pytest.fixture
def shared_reference() -> Path:
    """``../shared/reference`` beside the checkout (present in sessions and CI)."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/reference not present")
    return SHARED_REFERENCE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # SCIFLOW_TEST_DEVICE (e.g. cpu) runs the gpu-marked tests on that device instead: a check of
    # tests/test_cuda.py itself where no GPU is lent (`SCIFLOW_TEST_DEVICE=cpu pytest -m gpu`)
    if torch.cuda.is_available() or os.environ.get("SCIFLOW_TEST_DEVICE"):
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
