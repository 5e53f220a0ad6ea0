"""Memory and time of gradients through a neural SDE: backpropagation through the steps vs the
reversible Heun adjoint (Kidger et al. 2021), sciflow against torchsde on one shared Brownian path.

Problem: Stratonovich SDE with an MLP drift (16-64-16, tanh) and a diagonal MLP diffusion
(16-64-16, ``0.3 sigmoid``), batch 64, ``t in [0, 1]`` saved at 0, 0.5, 1, float64, loss = mean of
``y(1)^2`` plus the mean of ``sin y(0.5)``; ``n`` reversible Heun steps for ``n`` in a doubling
sequence (even, so that both libraries step onto t = 0.5). Methods (all on the same
``BrownianIncrements``, handed to torchsde through sciflow's adapter):

* ``sciflow_direct``: ``sdeint(..., solver=ReversibleHeun())``, autograd through every step;
* ``sciflow_reversible``: the same with ``adjoint=ReversibleAdjoint()``;
* ``torchsde_direct``: torchsde ``sdeint(method="reversible_heun")``;
* ``torchsde_reversible``: torchsde ``sdeint_adjoint(method="reversible_heun")`` (its default
  adjoint for that method, ``adjoint_reversible_heun``: the same algorithm, the anchor).

Per method and ``n``: bytes autograd keeps from the forward pass (``saved_tensors_hooks``,
deduplicated by storage), the median forward + backward time, and the gradients' largest
relative difference from ``sciflow_direct``'s. Writes ``benchmarks/results/sde_adjoint.json``.

    python benchmarks/sde_adjoint.py [--scale 1] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synchronize, write_result  # noqa: E402
from adjoint_memory import SavedBytes  # noqa: E402

from sciflow.solvers.sde import BrownianIncrements, ReversibleAdjoint, ReversibleHeun, TorchSDE, sdeint  # noqa: E402


class Drift(nn.Module):
    def __init__(self, d=16, width=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, d))

    def forward(self, t, y):
        return self.net(y)


class Diffusion(Drift):
    def forward(self, t, y):
        return 0.3 * torch.sigmoid(self.net(y))


METHODS = {
    "sciflow_direct": lambda: dict(solver=ReversibleHeun()),
    "sciflow_reversible": lambda: dict(solver=ReversibleHeun(), adjoint=ReversibleAdjoint()),
    "torchsde_direct": lambda: dict(solver=TorchSDE("reversible_heun")),
    "torchsde_reversible": lambda: dict(solver=TorchSDE("reversible_heun", adjoint=True)),
}


def run(method, f, g, y0, n, seed):
    t = torch.tensor([0.0, 0.5, 1.0], dtype=y0.dtype, device=y0.device)
    grid = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64).tolist()
    bm = BrownianIncrements(grid, y0.shape, generator=torch.Generator(y0.device).manual_seed(seed),
                            dtype=y0.dtype, device=y0.device)
    params = [*f.parameters(), *g.parameters()]
    with SavedBytes() as saved:
        ys = sdeint(f, g, y0, t, dt=1.0 / n, brownian=bm, **METHODS[method]())
        loss = ys[-1].square().mean() + ys[1].sin().mean()
    grads = torch.autograd.grad(loss, params)
    return saved.total, grads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the step counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    torch.manual_seed(0)  # benchmark script, not library code
    f, g = Drift().double().to(dev), Diffusion().double().to(dev)
    y0 = torch.randn(64, 16, dtype=torch.float64, device=dev)
    steps = [max(2, 2 * round(s * args.scale / 2)) for s in (25, 50, 100, 200, 400)]   # even: t = 0.5 on the grid
    curve = {m: [] for m in METHODS}
    for n in steps:
        ref = None
        for m in METHODS:
            times = []
            for r in range(args.repeats):
                synchronize(dev)
                t0 = time.perf_counter()
                retained, grads = run(m, f, g, y0, n, seed=0)
                synchronize(dev)
                times.append(time.perf_counter() - t0)
            ref = grads if ref is None else ref
            row = {"n_steps": n, "retained_bytes": retained, "forward_backward_s": statistics.median(times),
                   "max_rel_grad_diff_vs_sciflow_direct": max(float((a - b).abs().max() / b.abs().max())
                                                              for a, b in zip(grads, ref))}
            curve[m].append(row)
            print(m, row, flush=True)
    last = {m: curve[m][-1] for m in METHODS}
    write_result("sde_adjoint", {
        "problem": {"drift": "MLP 16-64-16 tanh", "diffusion": "diagonal, 0.3 sigmoid(MLP 16-64-16)", "batch": 64,
                    "solver": "reversible Heun, fixed steps on [0, 1]", "dtype": "float64", "steps": steps,
                    "brownian": "BrownianIncrements shared by every method (seed 0)"},
        "curve": curve,
        "at_max_steps": {
            "retained_ratio_direct_over_reversible": last["sciflow_direct"]["retained_bytes"]
            / max(last["sciflow_reversible"]["retained_bytes"], 1),
            "time_ratio_torchsde_reversible_over_sciflow_reversible": last["torchsde_reversible"]["forward_backward_s"]
            / last["sciflow_reversible"]["forward_backward_s"],
            "time_ratio_sciflow_reversible_over_sciflow_direct": last["sciflow_reversible"]["forward_backward_s"]
            / last["sciflow_direct"]["forward_backward_s"]},
    }, device=dev)


if __name__ == "__main__":
    main()
