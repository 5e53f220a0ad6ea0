"""Causal PINNs with time-marching on Kuramoto–Sivashinsky, 2D Navier–Stokes and Lorenz-63:
train, report relative L2 against the references (KS: the data layer's ETDRK4 solver; NS: the
exact Taylor–Green solution; Lorenz: sciflow's Dopri5). ``--scale smoke`` runs in a few CPU
minutes (it checks the pipeline, not the accuracy); ``--scale paper`` loads the packaged
``sciflow/configs/pinn_<problem>.yaml`` (the paper's sizes: hours on a GPU).

Paper (A6000, 1e5-3e5 iterations): KS regular 3.49e-4; Lorenz x/y/z ~ 1.1e-2/1.7e-2/7.0e-3;
NS w 3.5e-2 (their turbulent setting, not the Taylor–Green check used here).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

from sciflow.models.causal_pinn import Config, march  # noqa: E402
from sciflow.models.causal_pinn.evaluate import (evaluate, lorenz_reference, predict_grid,  # noqa: E402
                                                 reference, relative_l2)
from sciflow.models.causal_pinn.plots import plot_losses, plot_solution  # noqa: E402
from sciflow.models.causal_pinn.problems import kuramoto_sivashinsky, lorenz63, navier_stokes  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "sciflow" / "configs"
PROBLEM = {
    "kuramoto_sivashinsky": lambda scale: kuramoto_sivashinsky("regular", t_final=1.0 if scale == "paper" else 0.2),
    "navier_stokes": lambda scale: navier_stokes(t_final=1.0 if scale == "paper" else 0.2),
    "lorenz63": lambda scale: lorenz63(t_final=20.0 if scale == "paper" else 0.5),
}
SMOKE = dict(width=64, depth=3, steps=300, n_interior=1024, n_chunks=32, n_initial=256,
             check_every=100, time_windows=2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problem", choices=sorted(PROBLEM), required=True)
    ap.add_argument("--scale", choices=["smoke", "paper"], default="smoke")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config.from_yaml(str(CONFIGS / f"pinn_{args.problem}.yaml"))
    if args.scale == "smoke":
        cfg = replace(cfg, **SMOKE)
        if args.problem == "lorenz63":
            cfg = replace(cfg, n_interior=256, n_initial=0)
    elif args.problem == "lorenz63":
        cfg = replace(cfg, time_windows=40)  # windows of 0.5 as in the official code
    problem = PROBLEM[args.problem](args.scale)
    t0 = time.perf_counter()
    sol = march(cfg, problem, device=args.device)
    seconds = time.perf_counter() - t0
    for m in sol.models:
        m.to("cpu")
    if args.problem == "lorenz63":
        t = torch.linspace(*problem.t_span, 201, dtype=torch.float64)
        ref = lorenz_reference(problem, t)
        pred = sol.predict(t[:, None].float()).double()
        metrics = {"rel_l2": relative_l2(pred, ref)}
        metrics.update({f"rel_l2_{c}": relative_l2(pred[:, i], ref[:, i]) for i, c in enumerate("xyz")})
    else:
        ref = reference(problem, nx=128, nt=51)
        metrics = evaluate(sol.predict, ref)
        plot_solution(predict_grid(sol.predict, ref), ref,
                      RESULTS / "figures" / f"pinn_{args.problem}_{args.scale}_solution.png",
                      channel=ref.values.shape[-1] - 1, title=args.problem)
    plot_losses(sol.histories[-1], RESULTS / "figures" / f"pinn_{args.problem}_{args.scale}_losses.png")
    write_result(f"pinn_{args.problem}_{args.scale}", {
        "config": asdict(cfg), "t_span": problem.t_span, "train_seconds": seconds, **metrics,
        "conditions": "shared 2-core CPU (8 concurrent users), torch threads = %d" % args.threads,
    }, device=args.device)


if __name__ == "__main__":
    main()
