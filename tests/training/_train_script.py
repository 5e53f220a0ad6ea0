"""Subprocess entry for the resume and DDP tests.

python _train_script.py RUN_DIR OUT.pt [--kill-at K] [--resume] [--dropout P] [--steps N]
                         [--fit-to-s S --slow-rank R]
Trains the toy model (see ``_trainer_toy.train_toy``), optionally SIGKILLs itself right after
step K, and writes the final parameters (rank 0) to OUT.pt and every rank's step count to
OUT.pt.steps<rank>. Under torchrun it runs DDP (gloo).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _trainer_toy import train_toy  # noqa: E402

from sciflow.training import Callback  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--kill-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--fit-to-s", type=float, default=None, help="max_time_s with time_schedule='fit'")
    p.add_argument("--slow-rank", type=int, default=-1, help="this rank sleeps 20 ms per step")
    a = p.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))

    class Slow(Callback):
        def on_step_end(self, state, logs):
            time.sleep(0.02)

    extra = {} if a.fit_to_s is None else {"max_time_s": a.fit_to_s, "time_schedule": "fit"}
    res = train_toy(a.run_dir, kill_at=a.kill_at, resume=a.resume, dropout=a.dropout, steps=a.steps,
                    optimizer=a.optimizer, batch_size=a.batch_size,
                    callbacks=[Slow()] if rank == a.slow_rank else [], **extra)
    Path(f"{a.out}.steps{rank}").write_text(str(res.steps))
    if rank == 0:
        torch.save({"params": {k: v.detach().clone() for k, v in res.model.state_dict().items()},
                    "ema": dict(res.ema.shadow), "steps": res.steps}, a.out)


if __name__ == "__main__":
    main()
