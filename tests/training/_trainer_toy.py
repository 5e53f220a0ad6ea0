"""A tiny model and dataset for trainer tests (also imported by the subprocess scripts)."""

from __future__ import annotations

import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel


class ToyRegressor(SciflowModel):
    """``y = MLP(x)`` with dropout (so exact resume must restore the torch RNG); the batch holds
    ``x = values[:, 0]`` and ``y = values[:, 1]``. ``poison`` makes the loss NaN on those calls."""

    batch_type = TrajectoryBatch

    def __init__(self, dim: int = 3, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Dropout(dropout), nn.Linear(width, dim))
        self.poison: set[int] = set()
        self.calls = 0

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        self.check_batch(batch)
        self.calls += 1
        err = (self.net(batch.values[:, 0]) - batch.values[:, 1]).pow(2).mean()
        reg = 1e-4 * sum(p.pow(2).sum() for p in self.parameters())
        if self.calls in self.poison:
            err = err * float("nan")
        return LossOutput(err + reg, {"mse": err.detach(), "l2": reg.detach()})

    def sample(self, batch, n_samples=1, *, generator=None):
        return self.net(batch.values[:, 0]).unsqueeze(0).expand(n_samples, -1, -1)


def toy_data(n: int = 64, dim: int = 3, seed: int = 0) -> TrajectoryBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    A = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1234))  # one target map
    y = torch.sin(x @ A) + 0.05 * torch.randn(n, dim, generator=g)
    return TrajectoryBatch(values=torch.stack([x, y], dim=1), times=torch.tensor([0.0, 1.0]))


def train_toy(run_dir, *, kill_at: int = -1, resume: bool = False, dropout: float = 0.1, steps: int = 30,
              optimizer: str = "adam", batch_size: int = 16, callbacks=(), **cfg_overrides):
    """The toy run shared by the resume and DDP tests; returns the FitResult."""
    import os
    import signal

    from sciflow.training import BatchLoader, Callback, TrainConfig, fit

    class KillAt(Callback):
        def on_step_end(self, state, logs):
            if state.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    model = ToyRegressor(dropout=dropout)
    cfg = TrainConfig(**{**dict(max_steps=steps, optimizer=optimizer, lr=1e-2 if optimizer != "lbfgs" else 0.5,
                                checkpoint_every=5, keep_last=2, eval_every=10, log_every=5, progress=False,
                                ema_decay=0.9, schedule="cosine", warmup_steps=3, device="cpu", lbfgs_max_iter=5),
                         **cfg_overrides})
    # 40 samples / batch 16 -> 2 batches per epoch (drop_last): epoch ends fall on checkpoints too
    train = BatchLoader(toy_data(40), batch_size, seed=3)
    val = BatchLoader(toy_data(16, seed=9), 8, shuffle=False)
    cbs = [*callbacks, *([KillAt()] if kill_at > 0 else [])]
    return fit(model, train, val, cfg, cbs, run_dir=run_dir, resume=resume)


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def run_torchrun(cmd, env):
    """``subprocess.run`` of a torchrun launch, once more if a worker aborted in gloo's teardown after
    its work (``GLOO_TEARDOWN_ABORT``, SIGABRT at interpreter exit; seen on the loaded 2-core CI
    machine, not reproduced in 8 serial runs): a flake of the exit, not of what the test checks."""
    import subprocess

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and GLOO_TEARDOWN_ABORT in proc.stderr:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return proc
