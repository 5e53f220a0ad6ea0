"""Causal PINN on viscous Burgers: train, report relative L2 vs ``burgers_shock.mat`` and the
training time; write plots. ``--scale cpu`` (default) runs in minutes on one core;
``--scale paper`` is the GPU-sized configuration (modified MLP 4 x 256, 2e5 Adam steps)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

from sciflow.models.causal_pinn import CausalPINN, Config, train  # noqa: E402
from sciflow.models.causal_pinn.evaluate import evaluate, predict_grid, reference  # noqa: E402
from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution  # noqa: E402

SCALES = {
    "smoke": Config(problem="burgers", width=32, depth=4, steps=200, n_interior=1024, n_initial=128,
                    lbfgs_steps=100, check_every=50),
    "cpu": Config(problem="burgers", width=32, depth=6, steps=3000, n_interior=4096, n_initial=256,
                  n_chunks=32, epsilon=1.0, lr=2e-3, decay_steps=1000, lbfgs_steps=4000,
                  check_every=100, balance_every=500),
    "paper": Config(problem="burgers", architecture="modified_mlp", width=256, depth=4,
                    steps=200_000, n_interior=8192, n_initial=512, decay_steps=5000,
                    lbfgs_steps=0, check_every=1000, balance_every=1000, compile=True),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--causal", type=int, default=1)
    ap.add_argument("--budget-min", type=float, default=None,
                    help="stop Adam / L-BFGS after this many CPU minutes (process time, one thread)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(SCALES[args.scale], seed=args.seed, causal=bool(args.causal))
    model = CausalPINN(cfg)
    budget = None if args.budget_min is None else 60 * args.budget_min
    t0, c0 = time.perf_counter(), time.process_time()
    hist = train(model, device=args.device, time_budget_s=budget)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.to("cpu")
    ref = reference(model.problem)
    metrics = evaluate(model.predict, ref)
    pred = predict_grid(model.predict, ref)
    figs = RESULTS / "figures"
    plot_solution(pred, ref, figs / f"pinn_burgers_{args.scale}_solution.png", title="Burgers")
    plot_causal_weights(hist, figs / f"pinn_burgers_{args.scale}_weights.png")
    plot_losses(hist, figs / f"pinn_burgers_{args.scale}_losses.png")
    write_result(f"pinn_burgers_{args.scale}", {
        "config": asdict(cfg), "train_seconds": train_s, "train_cpu_seconds": train_cpu,
        "budget_cpu_minutes": args.budget_min, "steps_run": hist.step[-1] + 1, **metrics,
        "final_terms": {k: v[-1] for k, v in hist.terms.items()},
        "conditions": "shared 2-core CPU, 8 concurrent users; torch threads = %d" % args.threads,
    }, device=args.device)


if __name__ == "__main__":
    main()
