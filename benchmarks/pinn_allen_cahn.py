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
from sciflow.models.causal_pinn.evaluate import GridReference, evaluate, predict_grid, reference  # noqa: E402
from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution  # noqa: E402

SCALES = {
    "smoke": Config(problem="allen_cahn", architecture="modified_mlp", width=32, depth=2, steps=100,
                    n_interior=512, n_chunks=16, n_initial=128, check_every=50),
    "test": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=3, steps=1500,
                   n_interior=1024, n_chunks=32, n_initial=256, n_harmonics=2, lr=2e-3,
                   decay_steps=1000, check_every=100, epsilon=10.0, lambda_ic=100.0, balance=False),
    # chosen by a 150-CPU-s pilot (2026-11-27): periodic embedding + 64 Fourier features of scale
    # 2 (jaxpi's AC embedding, smaller) with grad-norm balancing fell 0.49 -> 0.33 in 2500 steps;
    # without the Fourier features it stalled at 0.56. Taylor mode measured 1.15x faster here.
    "cpu": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=3,
                  steps=1_000_000, n_interior=1024, n_chunks=32, n_initial=256, n_harmonics=1,
                  fourier_features=64, fourier_scale=2.0, epsilon=1.0, balance=True,
                  balance_every=250, lr=1e-3, decay_steps=2500, check_every=250,
                  derivative_engine="taylor"),
    "paper": Config(problem="allen_cahn", architecture="modified_mlp", width=256, depth=4,
                    fourier_features=128, fourier_scale=1.0, factorized=True, steps=300_000,
                    n_interior=8192, n_chunks=32, n_initial=1024, decay_steps=5000,
                    check_every=1000, balance_every=1000, compile=True),
}


def run(cfg: Config, device: str, tag: str, budget_s: float | None = None,
        wall_limit_s: float | None = None) -> dict:
    """Train (stopping after ``budget_s`` CPU seconds if given) and record the learning curve:
    rel. L2 on every 4th reference time and point vs training CPU seconds (evaluation excluded)."""
    model = CausalPINN(cfg)
    ref = reference(model.problem)
    sub = GridReference(ref.t[::4], (ref.space[0][::4],), ref.values[::4, ::4].contiguous())
    curve: dict[str, list] = {"step": [], "cpu_s": [], "rel_l2_subgrid": []}
    spent_eval = [0.0]

    def record(step, m, hist):
        c = time.process_time()
        m.to("cpu")
        err = evaluate(m.predict, sub)["rel_l2"]
        m.to(device)
        spent_eval[0] += time.process_time() - c
        curve["step"].append(step)
        curve["cpu_s"].append(hist.cpu_s[-1] - spent_eval[0] + (time.process_time() - c))
        curve["rel_l2_subgrid"].append(err)
        print(f"[{tag}] step {step:6d}  cpu {curve['cpu_s'][-1]:7.1f}s  rel_l2 {err:.3e}", flush=True)
        return wall_limit_s is not None and time.perf_counter() - t0 > wall_limit_s

    t0, c0 = time.perf_counter(), time.process_time()
    hist = train(model, device=device, time_budget_s=budget_s, callback=record)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0 - spent_eval[0]
    model.to("cpu")
    metrics = evaluate(model.predict, ref)
    figs = RESULTS / "figures"
    plot_solution(predict_grid(model.predict, ref), ref, figs / f"pinn_allen_cahn_{tag}_solution.png",
                  title=f"Allen-Cahn ({tag})")
    plot_losses(hist, figs / f"pinn_allen_cahn_{tag}_losses.png")
    if cfg.causal:
        plot_causal_weights(hist, figs / f"pinn_allen_cahn_{tag}_weights.png")
    return {"train_wall_seconds": seconds, "train_cpu_seconds": cpu, **metrics,
            "steps_run": hist.step[-1] + 1, "curve": curve,
            "final_terms": {k: v[-1] for k, v in hist.terms.items()}}


def plot_curves(scale: str) -> None:
    """Rel. L2 vs training CPU minutes of every ``pinn_allen_cahn_<scale>_*.json`` present."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for f in sorted(RESULTS.glob(f"pinn_allen_cahn_{scale}_*.json")):
        d = json.loads(f.read_text())
        for mode in ("causal", "plain"):
            if mode in d and "curve" in d[mode]:
                c = d[mode]["curve"]
                ax.semilogy([s / 60 for s in c["cpu_s"]], c["rel_l2_subgrid"], label=mode)
    ax.axhline(1e-2, color="k", lw=0.8, ls="--")
    ax.set_xlabel("training CPU minutes (1 thread)")
    ax.set_ylabel("relative L2 vs allen_cahn.mat")
    ax.set_title(f"Allen-Cahn, scale {scale}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "figures" / f"pinn_allen_cahn_{scale}_curve.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["both", "causal", "plain"], default="both")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="stop each run after this many CPU minutes (process time)")
    ap.add_argument("--wall-limit-min", type=float, default=None,
                    help="also stop each run after this many wall minutes (shared machines); "
                         "the JSON records the CPU time actually spent")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(SCALES[args.scale], seed=args.seed)
    budget = None if args.budget_min is None else 60 * args.budget_min
    wall = None if args.wall_limit_min is None else 60 * args.wall_limit_min
    res = {}
    if args.only in ("both", "causal"):
        res["causal"] = run(replace(cfg, causal=True), args.device, f"{args.scale}_causal", budget, wall)
    if args.only in ("both", "plain"):
        res["plain"] = run(replace(cfg, causal=False), args.device, f"{args.scale}_plain", budget, wall)
    write_result(f"pinn_allen_cahn_{args.scale}_{args.only}", {
        "config": asdict(cfg), "budget_cpu_minutes": args.budget_min,
        "wall_limit_minutes": args.wall_limit_min, **res,
        "conditions": "shared 2-core CPU, 5 engineers (load ~6); torch threads = %d; same network, "
                      "points, optimiser and CPU budget for both runs (a wall-clock cap can end one "
                      "earlier: compare the curves at equal CPU time)" % args.threads,
    }, device=args.device)
    plot_curves(args.scale)


if __name__ == "__main__":
    main()
