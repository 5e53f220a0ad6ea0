"""Memory of neural-ODE backprop vs number of steps: direct autograd, backsolve adjoint, checkpointing.

Problem: MLP vector field (state 32, hidden 128, tanh), batch 64, RK4 with n fixed steps on
[0, 1], loss = mean of y(1)^2, one forward + backward. For n in a doubling sequence this measures

* ``retained_bytes``: bytes of the tensors autograd keeps alive from the forward pass for the
  backward pass (every tensor packed by ``torch.autograd.graph.saved_tensors_hooks`` during the
  forward, deduplicated by storage) — the memory that makes direct backprop grow with n;
* on CUDA, ``torch.cuda.max_memory_allocated`` over forward + backward minus the allocation
  before (the true peak, including the backward's transient per-step graphs);
* wall time of forward + backward (one run: timings are secondary here), and the gradient's
  agreement with direct autograd.

Expected: direct linear in n; backsolve flat (only ``y`` at the save times and the parameters);
checkpoint with 16 segments flat in what it retains (16 boundary states), while its backward
rebuilds one segment (n/16 steps) at a time. Writes ``benchmarks/results/adjoint_memory.json``.

    python benchmarks/adjoint_memory.py [--scale 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_result  # noqa: E402

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


def forward_retained_bytes(method, n_steps, f, y0):
    """Run forward + backward; count storage bytes packed for backward during the forward only."""
    seen: dict[int, int] = {}

    def pack(x):
        st = x.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return x

    t = torch.tensor([0.0, 1.0], device=y0.device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        ys = odeint(f, y0, t, solver=RK4(), dt=1.0 / n_steps, adjoint=METHODS[method]())
        loss = ys[-1].pow(2).mean()
    retained = sum(seen.values())
    grads = torch.autograd.grad(loss, list(f.parameters()))
    return retained, grads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the step counts")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    f, y0 = setup(dev)
    steps = [int(s * args.scale) for s in (25, 50, 100, 200, 400)]
    curve = {m: [] for m in METHODS}
    for n in steps:
        ref = None
        for m in METHODS:
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            retained, g = forward_retained_bytes(m, n, f, y0)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            row = {"n_steps": n, "retained_bytes": retained, "forward_backward_s": time.perf_counter() - t0}
            if dev.type == "cuda":
                row["cuda_peak_delta_mb"] = (torch.cuda.max_memory_allocated() - before) / 2**20
            if ref is None:
                ref = g
            row["max_rel_grad_diff_vs_direct"] = max(((a - b).abs().max() / b.abs().max()).item()
                                                     for a, b in zip(g, ref))
            curve[m].append(row)
            print(m, row, flush=True)
    growth = {m: curve[m][-1]["retained_bytes"] / max(curve[m][0]["retained_bytes"], 1) for m in METHODS}
    write_result("adjoint_memory", {
        "problem": {"field": "MLP 32-128-128-32 tanh", "batch": 64, "solver": "RK4 fixed steps on [0, 1]",
                    "loss": "mean y(1)^2", "steps": steps},
        "curve": curve,
        "retained_growth_first_to_last": growth,
        "retained_ratio_direct_over_backsolve_at_max_steps":
            curve["direct"][-1]["retained_bytes"] / max(curve["backsolve"][-1]["retained_bytes"], 1),
    }, device=dev)


if __name__ == "__main__":
    main()
