"""First passage of an SDE: the exit probability with and without the Brownian-bridge correction.

Problem: geometric Brownian motion ``dS = mu S dt + sigma S dW`` (mu = 0.05, sigma = 0.3, S0 = 1)
and the upper level B = 1.3 before T = 1, simulated with Euler-Maruyama in S (not in log S, so the
bridge's frozen coefficients are an approximation, as for any nonlinear SDE). Reference: the closed
form of P(tau <= T) (log S is Brownian motion with drift mu - sigma^2/2; the inverse Gaussian law).

For steps of 1/4 ... 1/64: the error of the estimated P(tau <= T) with discrete monitoring (sign at
the step ends only) and with ``first_passage``'s bridge correction (the mean of the conditional
crossing probability, bridge draws integrated out), the Monte Carlo standard error, wall times,
and the observed order of the discrete-monitoring error (Gobet 2000: 1/2).

Corridor (two barriers): Brownian motion with drift 0.5 from z = 0.4 inside (0, 1) — the
drift-diffusion model of a two-choice decision — until it leaves (T = 4; every path has left).
For dt = 0.2 ... 0.0125: the error of P(top first) (the gambler's ruin,
(1 - exp(-2 mu z)) / (1 - exp(-2 mu)) for sigma = 1) and of the mean exit time (a P_top - z) / mu,
discrete monitoring vs the bridge (``first_passage(..., event=[lower, upper])``).

    python benchmarks/first_passage.py [--scale smoke|cpu] [--paths 400000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import scale_config, write_result  # noqa: E402

from sciflow.solvers import Event, first_passage  # noqa: E402

BENCHMARK = {
    "family": "solvers", "dataset": "geometric Brownian motion, level 1.3 before T = 1 (400 000 paths at cpu scale)",
    "kind": "accuracy", "owner": "F",
    "description": "SDE first passage: P(tau <= T) with discrete monitoring vs the Brownian-bridge correction of "
                   "first_passage, against the closed form",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": "first_passage_smoke", "cpu": "first_passage"},
    "metrics": [
        {"label": "P(tau <= 1): abs. error with 4 steps, Brownian bridge", "path": "steps/4/bridge/abs_error",
         "baselines": {"discrete monitoring, 4 steps": "steps/4/discrete/abs_error",
                       "discrete monitoring, 64 steps": "steps/64/discrete/abs_error"}},
        {"label": "P(tau <= 1): abs. error with 64 steps, Brownian bridge", "path": "steps/64/bridge/abs_error",
         "baselines": {"discrete monitoring, 64 steps": "steps/64/discrete/abs_error",
                       "Monte Carlo standard error": "steps/64/bridge/standard_error"}},
        {"label": "discrete monitoring: observed order of the error", "path": "discrete_order", "better": "higher",
         "anchor": {"value": 0.5, "source": "Gobet 2000, Stoch. Proc. Appl. 87 (weak order 1/2 for discretely "
                                            "monitored killed diffusions)"}},
        {"label": "Brownian bridge, 4 steps: time", "path": "steps/4/bridge/wall_s", "unit": "s",
         "baselines": {"discrete monitoring, 64 steps": "steps/64/discrete/wall_s"}},
        {"label": "corridor (0, 1), dt = 0.1: P(top first) abs. error, Brownian bridge",
         "path": "corridor/0.1/bridge/abs_error",
         "baselines": {"discrete monitoring, dt = 0.1": "corridor/0.1/discrete/abs_error",
                       "discrete monitoring, dt = 0.0125": "corridor/0.0125/discrete/abs_error",
                       "Monte Carlo standard error": "corridor/0.1/bridge/standard_error"}},
        {"label": "corridor (0, 1), dt = 0.1: mean exit time abs. error, Brownian bridge",
         "path": "corridor/0.1/bridge/exit_time_abs_error",
         "baselines": {"discrete monitoring, dt = 0.1": "corridor/0.1/discrete/exit_time_abs_error"}},
    ],
}

SCALES = {"smoke": dict(paths=4000, steps=[4, 64], corridor_paths=4000, corridor_dt=[0.1, 0.0125]),
          "cpu": dict(paths=400_000, steps=[4, 8, 16, 32, 64], corridor_paths=200_000,
                      corridor_dt=[0.2, 0.1, 0.05, 0.025, 0.0125])}
MU, SIGMA, LEVEL, T = 0.05, 0.3, 1.3, 1.0
DRIFT, Z, T_CORRIDOR = 0.5, 0.4, 4.0      # the corridor: drift, start inside (0, 1), horizon


def exact() -> float:
    nu, a, s = MU - SIGMA ** 2 / 2, math.log(LEVEL), SIGMA * math.sqrt(T)
    return float(norm.cdf((nu * T - a) / s) + math.exp(2 * nu * a / SIGMA ** 2) * norm.cdf((-a - nu * T) / s))


def estimate(paths: int, steps: int, bridge: bool, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    res = first_passage(lambda t, s: MU * s, lambda t, s: SIGMA * s, torch.ones(paths, 1, dtype=torch.float64),
                        0.0, T, Event(lambda t, s: s[:, 0] - LEVEL, direction=1), dt=T / steps, bridge=bridge,
                        generator=torch.Generator().manual_seed(seed))
    wall = time.perf_counter() - t0
    p = res.probability
    est = float(p.mean())
    return {"estimate": est, "abs_error": abs(est - exact()), "signed_error": est - exact(),
            "standard_error": float(p.std()) / math.sqrt(paths), "wall_s": wall}


def corridor(paths: int, dt: float, bridge: bool, seed: int = 0) -> dict:
    p_top = (1 - math.exp(-2 * DRIFT * Z)) / (1 - math.exp(-2 * DRIFT))
    exit_time = (p_top - Z) / DRIFT
    t0 = time.perf_counter()
    res = first_passage(lambda t, x: torch.full_like(x, DRIFT), lambda t, x: torch.ones_like(x),
                        torch.full((paths, 1), Z, dtype=torch.float64), 0.0, T_CORRIDOR,
                        [Event(lambda t, x: x[:, 0], direction=-1), Event(lambda t, x: x[:, 0] - 1.0, direction=1)],
                        dt=dt, bridge=bridge, generator=torch.Generator().manual_seed(seed))
    wall = time.perf_counter() - t0
    p = res.probabilities[:, 1]
    est, tau = float(p.mean()), float(res.t.nanmean())
    return {"estimate": est, "exact": p_top, "abs_error": abs(est - p_top), "signed_error": est - p_top,
            "standard_error": float(p.std()) / math.sqrt(paths), "exit_time": tau, "exit_time_exact": exit_time,
            "exit_time_abs_error": abs(tau - exit_time), "left": float(res.occurred.double().mean()), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--paths", type=int)
    args = ap.parse_args()
    cfg = scale_config(SCALES, args)
    torch.set_num_threads(1)
    out = {}
    for n in cfg["steps"]:
        out[str(n)] = {"discrete": estimate(cfg["paths"], n, bridge=False), "bridge": estimate(cfg["paths"], n, True)}
        print(n, out[str(n)], flush=True)
    lanes = {}
    for dt in cfg["corridor_dt"]:
        lanes[str(dt)] = {"discrete": corridor(cfg["corridor_paths"], dt, bridge=False),
                          "bridge": corridor(cfg["corridor_paths"], dt, bridge=True)}
        print("corridor", dt, lanes[str(dt)], flush=True)
    errs = [out[str(n)]["discrete"]["abs_error"] for n in cfg["steps"]]
    order = -float(np.polyfit(np.log(cfg["steps"]), np.log(errs), 1)[0])
    payload = {"scale": args.scale, "config": cfg, "exact": exact(), "steps": out, "discrete_order": order,
               "corridor": lanes,
               "problem": {"mu": MU, "sigma": SIGMA, "level": LEVEL, "T": T, "S0": 1.0, "solver": "EulerMaruyama"},
               "notes": "estimates are means of FirstPassage.probability (the bridge draws integrated out; 0/1 without "
                        "the bridge); the same seed for both estimators of a step size"}
    write_result("first_passage" if args.scale == "cpu" else f"first_passage_{args.scale}", payload)


if __name__ == "__main__":
    main()
