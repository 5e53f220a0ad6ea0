"""Mutation guards for ``sciflow.training``: exact resume of the counters the loop keeps
(best validation loss, skipped and consecutive non-finite steps), checkpoint files (ordering,
validation, leftover temp files, the final checkpoint, rank-0-only writing), the
EMA/validation/logging arithmetic of ``fit``, the learning-rate schedule as ``fit`` applies it,
gradient clipping below the threshold, the L-BFGS reset after a non-finite step and its loss
under DDP, the wall-clock budget, and RNG capture/restore and seeding.

Each test kills at least one plausible bug (a mutant) that the rest of ``tests/training`` let
through."""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _trainer_toy import ToyRegressor, toy_data

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.training import (
    BatchLoader,
    Callback,
    CheckpointError,
    CheckpointManager,
    CorruptCheckpointWarning,
    DistInfo,
    NonFiniteLossError,
    TrainConfig,
    TrainState,
    fit,
    rng_state,
    save_atomic,
    set_rng_state,
)
from sciflow.training._resume import save_checkpoint
from sciflow.training.checkpoint import load


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=10, optimizer="sgd", momentum=0.0, lr=0.1, eval_every=0, log_every=0,
                progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


class Shift(SciflowModel):
    """``loss = mean((values - w)^2)``: gradient descent pulls ``w`` to the mean of the batch values."""

    batch_type = TrajectoryBatch

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(dim))

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        return LossOutput((batch.values[:, 0] - self.w).pow(2).mean())

    def sample(self, batch, n_samples=1, *, generator=None):
        return self.w.expand(n_samples, batch.values.shape[0], -1)


def _const(value: float, n: int = 2) -> TrajectoryBatch:
    return TrajectoryBatch(values=torch.full((n, 1, 3), value), times=torch.tensor([0.0]))


class _Interrupt(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, state, logs):
        if state.step == self.at:
            raise KeyboardInterrupt


# ------------------------------------------------------------------ exact resume of the counters
def test_resume_restores_best_val_and_skipped_steps(tmp_path: Path) -> None:
    """Kills: best_val not restored; skipped_steps not saved; best_val = last instead of min.

    Training pulls ``w`` to +1 while the validation data sit at -1, so the validation loss grows
    and the best one is the first (step 2), before the checkpoint of step 4."""
    train = [_const(1.0), _const(1.0), _const(float("nan")), _const(1.0)]  # step 3 and 7 skipped
    val = [_const(-1.0)]
    cfg = _cfg(eval_every=2, checkpoint_every=4)
    ref = fit(Shift(), train, val, cfg, run_dir=tmp_path / "ref")
    assert ref.skipped_steps == 2
    losses = [r["val/loss"] for r in ref.val_history]
    assert losses == sorted(losses) and ref.best_val == losses[0]
    with pytest.raises(KeyboardInterrupt):
        fit(Shift(), train, val, cfg, [_Interrupt(6)], run_dir=tmp_path / "run")
    res = fit(Shift(), train, val, cfg, run_dir=tmp_path / "run", resume=True)
    assert res.steps == 10 and torch.equal(res.model.w, ref.model.w)
    assert res.skipped_steps == ref.skipped_steps
    assert res.best_val == ref.best_val


def test_resume_keeps_the_nonfinite_streak(tmp_path: Path) -> None:
    """Kills: consecutive_nonfinite not restored. The streak of steps 2-3 (checkpointed at step 3)
    continues into step 4 after resuming, reaching max_nonfinite=3 there, as without the restart."""
    nan = _const(float("nan"))
    train = [_const(1.0), nan, nan, nan, _const(1.0)]
    cfg = _cfg(max_nonfinite=3, checkpoint_every=3)
    msg = r"stopping at step 4: 3 consecutive steps"
    with pytest.raises(NonFiniteLossError, match=msg):
        fit(Shift(), train, None, cfg, run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=msg):
        fit(Shift(), train, None, cfg, run_dir=tmp_path, resume=True)


def test_resume_with_ema_from_checkpoint_without_ema_names_the_mismatch(tmp_path: Path) -> None:
    """Kills: the EMA/no-EMA check on resume removed (then a TypeError says nothing useful)."""
    fit(Shift(), [_const(1.0)], None, _cfg(max_steps=2), run_dir=tmp_path)
    with pytest.raises(ValueError, match="resuming with EMA on from a checkpoint written without EMA"):
        fit(Shift(), [_const(1.0)], None, _cfg(max_steps=4, ema_decay=0.9), run_dir=tmp_path, resume=True)


# ------------------------------------------------------------------ checkpoint files
def test_only_rank_zero_writes_checkpoints(tmp_path: Path) -> None:
    """Kills: every rank writes checkpoints; ``is_main`` testing the last rank instead of rank 0."""
    assert DistInfo(0, 2).is_main and not DistInfo(1, 2).is_main and not DistInfo(3, 4).is_main
    tr = SimpleNamespace(ckpt=CheckpointManager(tmp_path), dist=DistInfo(rank=1, world_size=2),
                         state=TrainState(), callbacks=[])
    save_checkpoint(tr)
    assert list(tmp_path.iterdir()) == [] and tr.state.last_checkpoint is None


def test_checkpoints_are_ordered_by_step_beyond_eight_digits(tmp_path: Path) -> None:
    """Kills: checkpoints ordered by file name ('ckpt-100000000.pt' < 'ckpt-99999999.pt')."""
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save({"step": 99_999_999})
    m.save({"step": 100_000_000})
    assert [p.name for p in m.paths()] == ["ckpt-100000000.pt"]
    ckpt, path = m.load_latest()
    assert ckpt["step"] == 100_000_000


def test_checkpoint_without_step_is_rejected_by_name(tmp_path: Path) -> None:
    """Kills: the "no 'step' entry" validation of ``load`` removed (resume would then KeyError)."""
    m = CheckpointManager(tmp_path)
    m.save({"step": 3, "w": torch.ones(2)})
    bad = save_atomic({"w": torch.ones(2)}, tmp_path / "ckpt-00000007.pt")
    with pytest.raises(CheckpointError, match=r"ckpt-00000007.pt' is not a sciflow checkpoint \(no 'step' entry\)"):
        load(bad)
    with pytest.warns(CorruptCheckpointWarning, match="no 'step' entry"):
        ckpt, path = m.load_latest()
    assert ckpt["step"] == 3


def test_leftover_temp_file_of_a_killed_write_is_not_a_checkpoint(tmp_path: Path) -> None:
    """Kills: the checkpoint-name pattern not anchored at the end (``ckpt-*.pt.tmp.<pid>`` of a
    write killed before its rename would count as the newest checkpoint)."""
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save({"step": 5})
    (tmp_path / "ckpt-00000010.pt.tmp.4242").write_bytes(b"half a zip")
    assert [p.name for p in m.paths()] == ["ckpt-00000005.pt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt, path = m.load_latest()
    assert ckpt["step"] == 5


def test_fit_ends_with_a_checkpoint_of_its_last_step(tmp_path: Path) -> None:
    """Kills: no final checkpoint when ``max_steps`` is not a multiple of ``checkpoint_every``
    (resuming a finished run would then repeat its last steps)."""
    class Count(Callback):
        def __init__(self):
            self.steps = 0

        def on_step_end(self, state, logs):
            self.steps += 1

    res = fit(Shift(), [_const(1.0)], None, _cfg(max_steps=7, checkpoint_every=5), run_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt-00000005.pt", "ckpt-00000007.pt"] and res.last_checkpoint.endswith(names[-1])
    count = Count()
    again = fit(Shift(), [_const(1.0)], None, _cfg(max_steps=7, checkpoint_every=5), [count],
                run_dir=tmp_path, resume=True)
    assert again.steps == 7 and count.steps == 0 and torch.equal(again.model.w, res.model.w)


# ------------------------------------------------------------------ the arithmetic of fit
def test_cosine_warmup_floor_as_applied_by_fit() -> None:
    """Kills: ``min_lr_ratio`` not passed from TrainConfig to the schedule (and warm-up/cosine
    off-by-ones): the lr of every step equals ``lr * warmup * (r + (1-r)(1+cos(pi s/S))/2)``."""
    lr, W, T, r = 0.1, 3, 10, 0.2
    res = fit(Shift(), [_const(1.0)], None, _cfg(max_steps=T, lr=lr, schedule="cosine", warmup_steps=W,
                                                 min_lr_ratio=r, log_every=1))
    expected = [lr * min(1.0, (k + 1) / W) * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * max(k - W, 0) / (T - W))))
                for k in range(T)]
    assert [h["lr"] for h in res.history] == pytest.approx(expected, rel=1e-12)


def test_grad_clip_above_the_norm_leaves_the_step_unchanged() -> None:
    """Kills: clipping that rescales the gradient to ``grad_clip`` also when its norm is smaller."""
    m = Shift()
    fit(m, [_const(2.0)], None, _cfg(max_steps=1, grad_clip=100.0))
    # one SGD step from w = 0: grad = -2 (2 - 0) / 3 per entry (norm 2.31 < 100), w = 0.1 * 4 / 3
    assert torch.allclose(m.w.detach(), torch.full((3,), 0.4 / 3), rtol=0, atol=1e-7)


def test_ema_skips_nonfinite_steps() -> None:
    """Kills: EMA updated on skipped (non-finite) steps as well."""
    train = [_const(1.0), _const(float("nan")), _const(1.0)]
    res = fit(Shift(), train, None, _cfg(max_steps=9, ema_decay=0.5))
    assert res.skipped_steps == 3 and res.ema.num_updates == 6
    assert torch.isfinite(res.ema.shadow["w"]).all()


def test_nonfinite_streak_resets_after_a_good_step() -> None:
    """Kills: ``consecutive_nonfinite`` never reset (isolated bad steps would end the run)."""
    train = [_const(1.0), _const(float("nan"))]
    res = fit(Shift(), train, None, _cfg(max_steps=10, max_nonfinite=2))
    assert res.steps == 10 and res.skipped_steps == 5


def test_lbfgs_after_an_undone_step_is_a_fresh_step() -> None:
    """Kills: L-BFGS state (curvature pairs, direction, step) kept after a non-finite step is undone."""
    torch.set_num_threads(1)
    cfg = _cfg(optimizer="lbfgs", lr=0.5, lbfgs_max_iter=3, max_nonfinite=5)
    data = [toy_data(16, seed=s) for s in range(2)]
    bad = TrajectoryBatch(values=data[1].values * float("nan"), times=data[1].times)

    def run(batches, steps):
        torch.manual_seed(0)
        m = ToyRegressor(dropout=0.0)
        fit(m, batches, None, replace(cfg, max_steps=steps))
        return m

    # bad (undone), good  ==  good: the undone step leaves no trace
    a = run([bad, data[0]], 2)
    b = run([data[0]], 1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_validation_uses_ema_weights_in_eval_mode() -> None:
    """Kills: validation ignoring the EMA weights; validation without ``model.eval()`` (dropout on)."""
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.5)
    val = toy_data(16, seed=5)
    res = fit(model, BatchLoader(toy_data(32), 8), [val], _cfg(max_steps=6, optimizer="adam", lr=1e-2,
                                                              ema_decay=0.8))
    assert model.training  # fit leaves the training mode on
    with torch.no_grad(), res.ema.average_parameters(model):
        model.eval()
        expected = float(model.loss(val).total.double())
    assert res.final_val == pytest.approx(expected, rel=1e-12)


def test_validation_loss_is_the_sample_weighted_mean() -> None:
    """Kills: val loss summed without the batch size; count of batches instead of samples."""
    val = [_const(1.0, n=3), _const(3.0, n=1)]  # per-batch losses 1 and 9 at w = 0
    res = fit(Shift(), [_const(0.0)], val, _cfg(max_steps=0))
    assert res.final_val == pytest.approx((3 * 1.0 + 1 * 9.0) / 4, rel=1e-12)


def test_validation_cadence() -> None:
    """Kills: evaluation every ``eval_every`` steps shifted by one."""
    res = fit(Shift(), [_const(1.0)], [_const(0.0)], _cfg(max_steps=10, eval_every=4))
    assert [r["step"] for r in res.val_history] == [4, 8, 10]


def test_logged_train_loss_is_the_window_mean() -> None:
    """Kills: the accumulated training loss not reset after each log line."""
    train = [_const(1.0), _const(3.0)]
    every = fit(Shift(), train, None, _cfg(max_steps=10, log_every=1, lr=0.05)).history
    windows = fit(Shift(), train, None, _cfg(max_steps=10, log_every=5, lr=0.05)).history
    per_step = [h["train/loss"] for h in every]
    assert [h["step"] for h in windows] == [5, 10]
    assert [h["train/loss"] for h in windows] == pytest.approx(
        [sum(per_step[:5]) / 5, sum(per_step[5:]) / 5], rel=1e-12)


def test_time_budget_counts_from_the_first_step(monkeypatch) -> None:
    """Kills: ``max_time_s`` counted from the trainer's construction (so set-up, resume and
    ``on_fit_start`` work eat the training budget) instead of from the start of the loop."""
    import time

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(time, "perf_counter", lambda: clock.now)

    class Clock(Callback):
        def on_fit_start(self, state, model):
            clock.now += 0.5  # slow set-up before the first step

        def on_step_end(self, state, logs):
            clock.now += 0.25  # each step takes 0.25 s

    res = fit(Shift(), [_const(1.0)], None, _cfg(max_steps=100, max_time_s=1.0), [Clock()])
    assert res.steps == 5 and res.stop_reason == "max_time_s=1 reached"  # 5 * 0.25 s > 1 s


# ------------------------------------------------------------------ data, RNG and seeding
def test_loader_state_from_another_batch_size_is_rejected() -> None:
    """Kills: a changed ``batch_size`` not detected when restoring a loader position."""
    state = BatchLoader(toy_data(32), 8).state_dict()
    with pytest.raises(ValueError, match=r"n=32, batch_size=8; this loader has n=32, batch_size=4"):
        BatchLoader(toy_data(32), 4).load_state_dict(state)


def test_rng_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    """Kills: numpy state not restored; python's cached Gaussian (``gauss_next``) dropped."""
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.gauss(0.0, 1.0)  # leaves the second Box-Muller value cached
    np.random.standard_normal()  # likewise in numpy's legacy generator

    def draw():
        return (random.gauss(0.0, 1.0), random.random(), float(np.random.standard_normal()),
                float(np.random.rand()), torch.rand(3).tolist())

    saved = load(save_atomic({"step": 0, "rng": rng_state()}, tmp_path / "rng.pt"))["rng"]
    first = draw()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    set_rng_state(saved)
    assert draw() == first


def test_fit_seeds_torch_from_the_config() -> None:
    """Kills: ``seed_everything`` not seeding torch (dropout masks then depend on the caller's RNG)."""
    def run(outer_seed: int, seed: int):
        torch.manual_seed(0)
        m = ToyRegressor(dropout=0.5)
        torch.manual_seed(outer_seed)
        fit(m, BatchLoader(toy_data(32), 8, seed=1), None, _cfg(max_steps=4, seed=seed))
        return m.net[0].weight.detach().clone()

    assert torch.equal(run(1, 0), run(2, 0))
    assert not torch.equal(run(1, 0), run(1, 5))


# ------------------------------------------------------------------ DDP
@pytest.mark.distributed
def test_two_process_lbfgs_equals_single_process(tmp_path: Path) -> None:
    """Kills: the L-BFGS closure under DDP returning the rank-summed loss instead of the mean
    (the strong-Wolfe line search then compares a doubled loss with the averaged gradient)."""
    import os
    import sys

    from _trainer_toy import run_torchrun, train_toy

    script = Path(__file__).resolve().parent / "_train_script.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path / "ddp"), str(tmp_path / "ddp.pt"), "--dropout", "0", "--steps", "3", "--optimizer", "lbfgs"]
    proc = run_torchrun(cmd, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.set_num_threads(1)
    single = train_toy(tmp_path / "single", dropout=0.0, steps=3, optimizer="lbfgs")
    assert ddp["steps"] == 3 and single.skipped_steps == 0
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp["params"][k], v, rtol=1e-5, atol=1e-6, msg=f"parameter {k}")
