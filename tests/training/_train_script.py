"""Subprocess entry for the resume and DDP tests.

python _train_script.py RUN_DIR OUT.pt [--kill-at K] [--resume] [--dropout P] [--steps N]
Trains the toy model (see ``_trainer_toy.train_toy``), optionally SIGKILLs itself right after
step K, and writes the final parameters (rank 0) to OUT.pt. Under torchrun it runs DDP (gloo).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _trainer_toy import train_toy  # noqa: E402


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
    a = p.parse_args()
    torch.set_num_threads(1)
    res = train_toy(a.run_dir, kill_at=a.kill_at, resume=a.resume, dropout=a.dropout, steps=a.steps,
                    optimizer=a.optimizer, batch_size=a.batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"params": {k: v.detach().clone() for k, v in res.model.state_dict().items()},
                    "ema": dict(res.ema.shadow), "steps": res.steps}, a.out)


if __name__ == "__main__":
    main()
