"""Allen–Cahn: causal PINN vs plain PINN with the same budget (same network, points, steps,
optimiser), relative L2 vs ``allen_cahn.mat``; writes plots. ``--scale cpu`` (default) is sized
for one CPU core; ``--scale paper`` is the GPU configuration of the paper / jaxpi (modified MLP
4 x 256, periodic + Fourier embeddings, RWF, N_t = 32, eps = 1, 3e5 Adam steps)."""

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
    "smoke": Config(problem="allen_cahn", architecture="modified_mlp", width=32, depth=2, steps=100,
                    n_interior=512, n_chunks=16, n_initial=128, check_every=50),
    "test": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=3, steps=1500,
                   n_interior=1024, n_chunks=32, n_initial=256, n_harmonics=2, lr=2e-3,
                   decay_steps=1000, check_every=100, epsilon=10.0, lambda_ic=100.0, balance=False),
    "cpu": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=4, steps=4000,
                  n_interior=2048, n_chunks=32, n_initial=512, n_harmonics=2, lr=2e-3,
                  decay_steps=1500, check_every=100, anneal=True, lambda_ic=100.0, balance=False),
    "paper": Config(problem="allen_cahn", architecture="modified_mlp", width=256, depth=4,
                    fourier_features=128, fourier_scale=1.0, factorized=True, steps=300_000,
                    n_interior=8192, n_chunks=32, n_initial=1024, decay_steps=5000,
                    check_every=1000, balance_every=1000),
}


def run(cfg: Config, device: str, tag: str) -> dict:
    model = CausalPINN(cfg)
    t0 = time.perf_counter()
    hist = train(model, device=device)
    seconds = time.perf_counter() - t0
    model.to("cpu")
    ref = reference(model.problem)
    metrics = evaluate(model.predict, ref)
    figs = RESULTS / "figures"
    plot_solution(predict_grid(model.predict, ref), ref, figs / f"pinn_allen_cahn_{tag}_solution.png",
                  title=f"Allen-Cahn ({tag})")
    plot_losses(hist, figs / f"pinn_allen_cahn_{tag}_losses.png")
    if cfg.causal:
        plot_causal_weights(hist, figs / f"pinn_allen_cahn_{tag}_weights.png")
    return {"train_seconds": seconds, **metrics, "steps_run": hist.step[-1] + 1,
            "final_terms": {k: v[-1] for k, v in hist.terms.items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["both", "causal", "plain"], default="both")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(SCALES[args.scale], seed=args.seed)
    res = {}
    if args.only in ("both", "causal"):
        res["causal"] = run(replace(cfg, causal=True), args.device, f"{args.scale}_causal")
    if args.only in ("both", "plain"):
        res["plain"] = run(replace(cfg, causal=False), args.device, f"{args.scale}_plain")
    write_result(f"pinn_allen_cahn_{args.scale}_{args.only}", {
        "config": asdict(cfg), **res,
        "conditions": "shared 2-core CPU, 8 concurrent users; torch threads = %d; same steps, points "
                      "and network for both runs" % args.threads,
    }, device=args.device)


if __name__ == "__main__":
    main()
