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
rebuilds one segment (n/16 steps) at a time.

Events (section ``events``): the same field and steps, each trajectory stopped by a terminal
event whose condition depends on the state, ``g = t - 0.75 - 0.1 tanh(y_0)``, loss = mean of
``t* + |y(t*)|^2 / 32``: ``DirectAdjoint`` keeps every step's graph; ``CheckpointAdjoint`` locates
the events without a graph and replays the solve with checkpoints (one more solve), its event-time
gradient from the implicit function theorem. Writes ``benchmarks/results/adjoint_memory.json``.

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

from sciflow.solvers import (RK4, BacksolveAdjoint, CheckpointAdjoint, ConstantStepSize, DirectAdjoint,  # noqa: E402
                             Event, ODETerm, odeint, solve)

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


class SavedBytes:
    """Counts the storage bytes autograd packs for the backward pass inside the ``with`` block
    (deduplicated by storage): ``.total`` after it."""

    def __enter__(self):
        self.seen: dict[int, int] = {}

        def pack(x):
            st = x.untyped_storage()
            self.seen[st.data_ptr()] = st.nbytes()
            return x

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self.total = sum(self.seen.values())


def forward_retained_bytes(method, n_steps, f, y0):
    """Run forward + backward; count storage bytes packed for backward during the forward only."""
    t = torch.tensor([0.0, 1.0], device=y0.device)
    with SavedBytes() as saved:
        ys = odeint(f, y0, t, solver=RK4(), dt=1.0 / n_steps, adjoint=METHODS[method]())
        loss = ys[-1].pow(2).mean()
    grads = torch.autograd.grad(loss, list(f.parameters()))
    return saved.total, grads


EVENT_METHODS = {"direct": DirectAdjoint, "checkpoint_16": lambda: CheckpointAdjoint(segments=16)}
FIRES = Event(lambda t, y: t - 0.75 - 0.1 * torch.tanh(y[..., 0]), direction=+1)


def event_retained_bytes(method, n_steps, f, y0):
    """As :func:`forward_retained_bytes`, for a solve stopped by a terminal event per trajectory."""
    with SavedBytes() as saved:
        sol = solve(ODETerm(f), RK4(), 0.0, 1.0, y0, batch_ndim=1, controller=ConstantStepSize(1.0 / n_steps),
                    adjoint=EVENT_METHODS[method](), event=FIRES)
        loss = (sol.event.t + sol.event.y.pow(2).mean(-1)).mean()
    grads = torch.autograd.grad(loss, list(f.parameters()))
    return saved.total, grads, int(sol.event.occurred.sum())


def measure(fn, dev):
    """Run ``fn``; its result, wall time and (CUDA) peak allocation over it."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    extra = {"cuda_peak_delta_mb": (torch.cuda.max_memory_allocated() - before) / 2**20} if dev.type == "cuda" else {}
    return out, time.perf_counter() - t0, extra


def rel_diff(g, ref):
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(g, ref))


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
            (retained, g), wall, extra = measure(lambda: forward_retained_bytes(m, n, f, y0), dev)
            ref = g if ref is None else ref
            row = {"n_steps": n, "retained_bytes": retained, "forward_backward_s": wall, **extra,
                   "max_rel_grad_diff_vs_direct": rel_diff(g, ref)}
            curve[m].append(row)
            print(m, row, flush=True)
    events = {m: [] for m in EVENT_METHODS}
    for n in steps:
        ref = None
        for m in EVENT_METHODS:
            (retained, g, fired), wall, extra = measure(lambda: event_retained_bytes(m, n, f, y0), dev)
            ref = g if ref is None else ref
            row = {"n_steps": n, "retained_bytes": retained, "forward_backward_s": wall, **extra,
                   "events_fired": fired, "max_rel_grad_diff_vs_direct": rel_diff(g, ref)}
            events[m].append(row)
            print("event", m, row, flush=True)
    growth = {m: curve[m][-1]["retained_bytes"] / max(curve[m][0]["retained_bytes"], 1) for m in METHODS}
    write_result("adjoint_memory", {
        "problem": {"field": "MLP 32-128-128-32 tanh", "batch": 64, "solver": "RK4 fixed steps on [0, 1]",
                    "loss": "mean y(1)^2", "steps": steps},
        "curve": curve,
        "retained_growth_first_to_last": growth,
        "retained_ratio_direct_over_backsolve_at_max_steps":
            curve["direct"][-1]["retained_bytes"] / max(curve["backsolve"][-1]["retained_bytes"], 1),
        "events": {"problem": "terminal event g = t - 0.75 - 0.1 tanh(y_0) per trajectory (batch_ndim=1); "
                              "loss = mean(t* + mean(y(t*)^2))", "curve": events,
                   "retained_ratio_direct_over_checkpoint_at_max_steps":
                       events["direct"][-1]["retained_bytes"] / max(events["checkpoint_16"][-1]["retained_bytes"], 1)},
    }, device=dev)


if __name__ == "__main__":
    main()
