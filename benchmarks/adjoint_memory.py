"""Memory of neural-ODE backprop vs number of steps: direct autograd, backsolve adjoint, checkpointing.

Problem: MLP vector field (state 32, hidden 128, tanh), batch 64, RK4 with n fixed steps on
[0, 1], loss = mean of y(1)^2, one forward + backward. For n in a doubling sequence this measures

* ``saved_bytes``: bytes of tensors autograd keeps for the backward pass (counted exactly with
  ``torch.autograd.graph.saved_tensors_hooks``) — what grows with n for direct backprop;
* ``peak_rss_delta_mb`` (``--rss``, default on): peak resident memory of a fresh process running
  the case, minus the same process's baseline after set-up (``resource.getrusage``);
* on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the solve;
* wall time (median), and the gradient's agreement with direct autograd.

The expected shape: direct linear in n; backsolve flat; checkpoint (16 segments) grows as
n/16 (one segment's graph at a time) plus 16 boundary states. Writes ``benchmarks/results/adjoint_memory.json``.

    python benchmarks/adjoint_memory.py [--scale 1] [--no-rss]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import time_it, write_result  # noqa: E402

from sciflow.solvers import RK4, BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, odeint  # noqa: E402

METHODS = {"direct": DirectAdjoint, "backsolve": BacksolveAdjoint,
           "checkpoint_16": lambda: CheckpointAdjoint(segments=16)}


class Field(nn.Module):
    def __init__(self, dim=32, hidden=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, dim))

    def forward(self, t, y):
        return self.net(y)


def setup(device):
    torch.manual_seed(0)  # benchmark script, not library code
    f = Field().to(device)
    y0 = torch.randn(64, 32, device=device)
    return f, y0


def case(method: str, n_steps: int, f, y0):
    t = torch.tensor([0.0, 1.0], device=y0.device)
    adjoint = METHODS[method]()
    ys = odeint(f, y0, t, solver=RK4(), dt=1.0 / n_steps, adjoint=adjoint)
    loss = ys[-1].pow(2).mean()
    return torch.autograd.grad(loss, list(f.parameters()))


def saved_bytes(method, n_steps, f, y0):
    total = [0]

    def pack(x):
        total[0] += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        case(method, n_steps, f, y0)
    return total[0]


def child(method: str, n_steps: int) -> None:
    """Run one case in this (fresh) process and print its peak-RSS increase in MB."""
    torch.set_num_threads(1)
    f, y0 = setup("cpu")
    case(method, 2, f, y0)  # warm up allocator / kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    case(method, n_steps, f, y0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_delta_mb": (peak - base) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the step counts")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "STEPS"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    f, y0 = setup(dev)
    steps = [int(s * args.scale) for s in (25, 50, 100, 200, 400)]
    curve = {m: [] for m in METHODS}
    ref_grads = {}
    for n in steps:
        ref_grads[n] = case("direct", n, f, y0)
        for m in METHODS:
            row = {"n_steps": n, "saved_bytes": saved_bytes(m, n, f, y0)}
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                case(m, n, f, y0)
                torch.cuda.synchronize()
                row["cuda_peak_delta_mb"] = (torch.cuda.max_memory_allocated() - before) / 2**20
            elif not args.no_rss:
                out = subprocess.run([sys.executable, __file__, "--child", m, str(n)], capture_output=True,
                                     text=True, check=True)
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            row.update(time_it(lambda: case(m, n, f, y0), repeats=3, warmup=0, device=dev))
            g = case(m, n, f, y0)
            row["max_rel_grad_diff_vs_direct"] = max(
                ((a - b).abs().max() / b.abs().max()).item() for a, b in zip(g, ref_grads[n]))
            curve[m].append(row)
            print(m, row, flush=True)
    growth = {m: curve[m][-1]["saved_bytes"] / max(curve[m][0]["saved_bytes"], 1) for m in METHODS}
    write_result("adjoint_memory", {
        "problem": {"field": "MLP 32-128-128-32 tanh", "batch": 64, "solver": "RK4 fixed steps on [0, 1]",
                    "loss": "mean y(1)^2", "steps": steps},
        "curve": curve,
        "saved_bytes_growth_first_to_last": growth,
        "saved_bytes_ratio_direct_over_backsolve_at_max_steps":
            curve["direct"][-1]["saved_bytes"] / max(curve["backsolve"][-1]["saved_bytes"], 1),
    }, device=dev)


if __name__ == "__main__":
    main()
