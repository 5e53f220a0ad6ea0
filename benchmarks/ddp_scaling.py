"""Data-parallel training: ``torchrun --nproc_per_node=N`` vs one process, same global batch.

    python benchmarks/ddp_scaling.py [--nproc 2] [--steps 60] [--batch 64] [--device cpu]

Trains the same small model (a neural ODE on Lorenz-63 windows, RK4) with
:func:`sciflow.training.fit` twice from the same seed: once in a single process, once under
``torchrun`` with ``N`` processes (gloo on CPU, NCCL on GPUs). The trainer shards every global
batch over the ranks and DDP averages the gradients, so the two runs follow the same parameter
trajectory up to floating-point reduction order; the check is the validation loss after every
step (all-reduced over ranks), whose largest absolute difference between the runs is reported
(``max_abs_val_loss_diff``, and relative to the loss). Scaling efficiency is
``T_1 / (N T_N)`` with ``T`` the median time per optimiser step of each run (1: perfect
scaling; on a shared 2-core CPU machine it mostly measures contention, on GPUs communication).
Writes ``benchmarks/results/ddp_scaling.json``.

``--worker`` is the per-process entry point the orchestrator launches (it reads torchrun's
``RANK``/``WORLD_SIZE``; without them it is the single-process run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def data(n_traj: int, n_time: int, window: int, seed: int):
    """Lorenz-63 windows (train) and held-out windows (validation), deterministic in ``seed``."""
    from sciflow.cli import dataset_to_batch, windows
    from sciflow.data.pdes.lorenz import generate_lorenz63

    traj = dataset_to_batch(generate_lorenz63(n_traj, n_time=n_time, dt=0.02, seed=seed))
    n_val = max(1, n_traj // 4)
    train = windows(traj.index(torch.arange(n_val, n_traj)), window, window // 2)
    val = windows(traj.index(torch.arange(n_val)), window, window)
    return train, val


def worker(args: argparse.Namespace) -> None:
    """One training run (single process, or one rank of a torchrun launch)."""
    from sciflow.models.neural_ode import Config, NeuralODE
    from sciflow.training import BatchLoader, TrainConfig, fit

    torch.set_num_threads(1)
    train, val = data(args.n_traj, args.n_time, args.window, seed=0)
    torch.manual_seed(0)  # benchmark script: the same initial weights in both runs (and on every rank)
    model = NeuralODE(Config(state_dim=3, width=args.width, depth=2))
    model.fit_scaler(train.values)
    # the global batch and the data order are the same in both runs (seeded loaders); the
    # trainer shards each global batch over the ranks
    cfg = TrainConfig(max_steps=args.steps, lr=3e-3, seed=0, log_every=1, eval_every=1,
                      checkpoint_every=0, progress=False, device=args.device)
    t0 = time.perf_counter()
    res = fit(model, BatchLoader(train, args.batch, seed=0), BatchLoader(val, 10_000, shuffle=False),
              cfg, run_dir=args.run_dir)
    wall = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) == 0:
        recs = [json.loads(line) for line in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
        val_curve = [r["val/loss"] for r in recs if "val/loss" in r]
        step_s = [1.0 / r["steps_per_s"] for r in recs if r.get("steps_per_s")]
        out = {"world_size": int(os.environ.get("WORLD_SIZE", "1")), "steps": res.steps, "wall_s": wall,
               "val_loss": val_curve, "median_step_s": statistics.median(step_s) if step_s else None,
               "n_train_windows": len(train), "global_batch": args.batch}
        (Path(args.run_dir) / "ddp_worker.json").write_text(json.dumps(out))


def launch(args: argparse.Namespace, nproc: int, run_dir: Path) -> dict:
    worker_args = ["--worker", "--run-dir", str(run_dir), "--steps", str(args.steps), "--batch", str(args.batch),
                   "--n-traj", str(args.n_traj), "--n-time", str(args.n_time), "--window", str(args.window),
                   "--width", str(args.width), "--device", args.device]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, __file__, *worker_args]
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(k, None)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               __file__, *worker_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # a worker aborted in gloo's teardown at exit (seen on a loaded 2-core machine): run once more
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads((run_dir / "ddp_worker.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64, help="global batch (divisible by --nproc)")
    ap.add_argument("--n-traj", type=int, default=16)
    ap.add_argument("--n-time", type=int, default=101)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.batch % args.nproc:
        ap.error(f"--batch {args.batch} must be divisible by --nproc {args.nproc}")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        single = launch(args, 1, Path(tmp) / "single")
        multi = launch(args, args.nproc, Path(tmp) / f"ddp{args.nproc}")
    a, b = single["val_loss"], multi["val_loss"]
    if len(a) != len(b) or not a:
        raise RuntimeError(f"loss curves of different length: {len(a)} vs {len(b)}")
    diff = [abs(x - y) for x, y in zip(a, b)]
    rel = [d / max(abs(x), 1e-12) for d, x in zip(diff, a)]
    t1, tn = single["median_step_s"], multi["median_step_s"]
    payload = {
        "task": "neural ODE (RK4) on Lorenz-63 windows, sciflow.training.fit, same seed and global batch",
        "nproc": args.nproc, "backend": "nccl" if args.device.startswith("cuda") else "gloo",
        "global_batch": args.batch, "steps": args.steps, "n_train_windows": single["n_train_windows"],
        "max_abs_val_loss_diff": max(diff), "max_rel_val_loss_diff": max(rel),
        "val_loss_first_last": {"single": [a[0], a[-1]], "ddp": [b[0], b[-1]]},
        "loss_decrease_ratio": a[-1] / a[0],
        "median_step_s": {"single": t1, "ddp": tn},
        "wall_s": {"single": single["wall_s"], "ddp": multi["wall_s"]},
        "scaling_efficiency": t1 / (args.nproc * tn) if t1 and tn else None,
        "speedup": t1 / tn if t1 and tn else None,
        "curves": {"single": a, "ddp": b},
    }
    write_result("ddp_scaling", payload, device=args.device, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
