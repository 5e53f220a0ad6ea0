"""Step-size controller gains for adaptive SDE solves: error against work.

The adaptive SDE loops reuse the ODE side's ``PIController``; its default is the integral
controller (``pcoeff = 0, icoeff = 1``), with which ~40 % of the steps on geometric Brownian
motion are rejected. diffrax's documentation suggests PI gains ``pcoeff = 0.1, icoeff = 0.3`` for
SDEs. Here both, and two more, on Itô GBM ``dy = y dt + y dW`` (256 paths, ``y0 = 1``, Milstein,
exact solution ``exp(t/2 + W_t)`` on the same virtual Brownian tree), with one error norm over the
batch (``VirtualBrownianTree``) and per-sample control (``PerSampleBrownianTree``), at five
tolerances. Per run: attempted and rejected steps (work: attempted steps x drift + diffusion
evaluations are the same per attempt), the mean absolute error at ``t = 1``; per gain setting, a
log-log fit of error against attempted steps and the attempts it needs for the integral
controller's error at ``tol = 1e-2``, relative to the integral controller's own (< 1: cheaper).
Writes ``benchmarks/results/sde_pi_gains.json``.

    python benchmarks/sde_pi_gains.py [--paths 256] [--seeds 3]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from sciflow.solvers.ode.controller import PIController  # noqa: E402
from sciflow.solvers.sde import Milstein, VirtualBrownianTree, sdeint  # noqa: E402
from sciflow.solvers.sde.per_sample import PerSampleBrownianTree  # noqa: E402

GAINS = {"integral (default)": (0.0, 1.0), "PI 0.1, 0.3 (diffrax's SDE suggestion)": (0.1, 0.3),
         "PI 0.2, 0.4": (0.2, 0.4), "integral, factor_max 2": (0.0, 1.0, 2.0)}
TOLS = [3e-2, 1e-2, 3e-3, 1e-3, 3e-4]


def solve(tree, y0, tol, gains):
    p, i, *fmax = gains
    ctrl = PIController(rtol=tol, atol=tol, pcoeff=p, icoeff=i, factor_max=fmax[0] if fmax else 10.0)
    ys, st = sdeint(lambda t, y: y, lambda t, y: y, y0, [0.0, 1.0], solver=Milstein(), brownian=tree,
                    controller=ctrl, return_stats=True)
    def mean(x):    # per sample (a tensor) or one count for the batch
        return float(torch.as_tensor(x, dtype=torch.float64).mean())

    return ys[-1], mean(st["n_accepted"] + st["n_rejected"]), mean(st["n_rejected"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dt = torch.float64
    y0 = torch.ones(args.paths, 1, dtype=dt)
    out: dict = {}
    for mode in ("batch_norm", "per_sample"):
        out[mode] = {}
        for name, gains in GAINS.items():
            rows = []
            for tol in TOLS:
                errs, work, rej = [], [], []
                for seed in range(args.seeds):
                    if mode == "batch_norm":
                        tree = VirtualBrownianTree(0.0, 1.0, (args.paths, 1), seed=seed, dtype=dt)
                        w1 = tree.evaluate([1.0])[0]
                    else:
                        tree = PerSampleBrownianTree(0.0, 1.0, (args.paths, 1), batch_ndim=1, seed=seed, dtype=dt)
                        w1 = tree.evaluate_at(torch.ones(args.paths, dtype=dt), levy_area=False)[0]
                    exact = y0 * torch.exp(0.5 + w1)
                    y1, a, r = solve(tree, y0, tol, gains)
                    errs.append(float((y1 - exact).abs().mean()))
                    work.append(a)
                    rej.append(r)
                rows.append({"tol": tol, "mean_abs_error": float(np.mean(errs)),
                             "attempted_steps": float(np.mean(work)),
                             "rejected_fraction": float(np.sum(rej) / np.sum(work))})
                print(mode, name, rows[-1], flush=True)
            lw = np.log([r["attempted_steps"] for r in rows])
            le = np.log([r["mean_abs_error"] for r in rows])
            slope, icpt = np.polyfit(lw, le, 1)
            out[mode][name] = {"runs": rows, "error_vs_work_slope": float(slope), "log_error_intercept": float(icpt)}
        ref = out[mode]["integral (default)"]
        target = ref["runs"][1]["mean_abs_error"]             # the integral controller at tol = 1e-2
        for name, r in out[mode].items():
            r["attempts_for_reference_error"] = float(math.exp((math.log(target) - r["log_error_intercept"])
                                                             / r["error_vs_work_slope"]))
        base = ref["attempts_for_reference_error"]
        for r in out[mode].values():
            r["work_ratio_vs_integral"] = r["attempts_for_reference_error"] / base
    write_result("sde_pi_gains", {
        "problem": {"sde": "Ito GBM dy = y dt + y dW, y0 = 1, t in [0, 1]", "paths": args.paths, "seeds": args.seeds,
                    "solver": "Milstein, adaptive", "tols": TOLS, "gains": {k: list(v) for k, v in GAINS.items()}},
        **out})


if __name__ == "__main__":
    main()
