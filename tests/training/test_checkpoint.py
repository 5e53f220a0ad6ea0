"""Atomic checkpoints, keep-last-k, safe loading and fallback past a corrupt newest file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _trainer_toy import train_toy

from sciflow.training import CheckpointError, CheckpointManager, CorruptCheckpointWarning, save_atomic
from sciflow.training.checkpoint import load


def _state(step: int) -> dict:
    return {"step": step, "w": torch.full((3,), float(step))}


def test_keep_last_k_and_no_temp_files(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep_last=2)
    for s in (1, 2, 3, 10):
        m.save(_state(s))
    assert [p.name for p in m.paths()] == ["ckpt-00000003.pt", "ckpt-00000010.pt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    ckpt, path = m.load_latest()
    assert ckpt["step"] == 10 and torch.equal(ckpt["w"], torch.full((3,), 10.0))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_newest_falls_back_to_previous_with_warning(tmp_path: Path, damage: str) -> None:
    m = CheckpointManager(tmp_path, keep_last=3)
    for s in (5, 10):
        m.save(_state(s))
    newest = m.paths()[-1]
    raw = newest.read_bytes()
    newest.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00not a zip" * 10, "empty": b""}[damage])
    with pytest.warns(CorruptCheckpointWarning, match="ckpt-00000010.pt"):
        ckpt, path = m.load_latest()
    assert ckpt["step"] == 5 and path.name == "ckpt-00000005.pt"


def test_all_corrupt_is_an_error_listing_files(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path)
    m.save(_state(1))
    m.paths()[0].write_bytes(b"junk")
    with pytest.warns(CorruptCheckpointWarning), pytest.raises(CheckpointError, match="ckpt-00000001.pt"):
        m.load_latest()


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt-00000001.pt"
    torch.save({"step": 1, "obj": torch.nn.Linear(1, 1)}, path)  # a pickled class, not tensors
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load(path)


def test_save_atomic_failure_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    save_atomic({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert load(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_training_resumes_from_previous_good_checkpoint(tmp_path: Path) -> None:
    """A run crashes after step 22; its newest checkpoint (step 20) is then truncated. Resuming
    warns, restarts from step 15 and still ends exactly like an uninterrupted run."""
    from sciflow.training import Callback

    class Crash(Callback):
        def on_step_end(self, state, logs):
            if state.step == 22:
                raise KeyboardInterrupt

    class Steps(Callback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, state, logs):
            self.seen.append(state.step)

    torch.set_num_threads(1)
    ref = train_toy(tmp_path / "ref", steps=30)
    with pytest.raises(KeyboardInterrupt):
        train_toy(tmp_path / "run", steps=30, callbacks=[Crash()])
    newest = tmp_path / "run" / "checkpoints" / "ckpt-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:-100])
    steps = Steps()
    with pytest.warns(CorruptCheckpointWarning, match="ckpt-00000020.pt"):
        res = train_toy(tmp_path / "run", steps=30, resume=True, callbacks=[steps])
    assert steps.seen[0] == 16
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k])


def test_keep_best_writes_the_validated_weights_of_the_lowest_validation_loss(tmp_path) -> None:
    """``keep_best``: ``checkpoints/best.pt`` holds the step of the lowest validation loss, that loss,
    and weights (the EMA average: what was validated) that give exactly that loss again."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _trainer_toy import ToyRegressor, toy_data, train_toy

    from sciflow.training import BatchLoader
    from sciflow.training._evaluation import evaluate_batches
    from sciflow.training.checkpoint import BEST, load

    torch.set_num_threads(1)
    # a constant, too large step: the validation loss goes up and down, its minimum in between
    res = train_toy(tmp_path, steps=30, eval_every=3, keep_best=True, lr=0.5, schedule="constant")
    losses = [r["val/loss"] for r in res.val_history]
    best = load(tmp_path / "checkpoints" / BEST)
    k = min(range(len(losses)), key=losses.__getitem__)
    assert 0 < k < len(losses) - 1  # the best is not simply the first or the last evaluation
    assert best["step"] == res.val_history[k]["step"] and best["val_loss"] == losses[k] == res.best_val
    model = ToyRegressor()
    model.load_state_dict(best["model"])
    model.eval()
    again, _ = evaluate_batches(model, BatchLoader(toy_data(16, seed=9), 8, shuffle=False), torch.device("cpu"), False)
    assert again["val/loss"] == pytest.approx(losses[k], rel=1e-12)
