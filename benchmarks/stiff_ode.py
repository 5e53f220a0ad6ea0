"""Stiff ODEs: sciflow's Rodas4 vs scipy's Radau, BDF and LSODA (same run, same machine).

Problems (float64, rtol = 1e-6):

* Robertson kinetics (k1 = 0.04, k2 = 3e7, k3 = 1e4), y0 = (1, 0, 0), t in [0, 1e5], 22 saves
  (0 and 21 log-spaced in [1e-5, 1e5]), atol = 1e-10; error: max relative error over the entries
  above 1e3 atol;
* Van der Pol, mu = 1000, y0 = (2, 0), one relaxation period t in [0, (3 - 2 ln 2) mu], 21 saves,
  atol = 1e-8; error: max absolute error of x.

Reference: scipy Radau, rtol = 1e-10, atol = 1e-14 (Robertson) / 1e-12 (Van der Pol). Per solver:
accepted steps, f and Jacobian evaluations, wall time (median of ``--repeats`` after a warm-up),
error. scipy gets the analytic Jacobian. ``ratios``: sciflow's time and steps over each scipy method's.

Batch: ``--batch`` Robertson systems with rate constants perturbed log-uniformly by up to 2x, solved
by sciflow in one call (``batch_ndim=1``: per-trajectory clocks and error control) vs a Python loop
of scipy Radau / BDF / LSODA calls (throughput ratio; error of the first 8 systems vs their Radau
references). Stiffness: Dopri5 on Robertson over ``[0, --dopri-t1]`` with ``--dopri-cap`` attempted
steps vs Rodas4's steps on the same interval (``dopri_capped``: Dopri5 did not finish within the cap).

    python benchmarks/stiff_ode.py [--scale smoke|cpu] [--repeats 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import scale_config, write_result  # noqa: E402

from sciflow.solvers import Dopri5, PIController, Rodas4, odeint  # noqa: E402

BENCHMARK = {
    "family": "solvers", "dataset": "Robertson kinetics to t = 1e5; Van der Pol mu = 1000; 256 perturbed Robertsons",
    "kind": "speed", "owner": "F",
    "description": "Rodas4 (Rosenbrock) vs scipy Radau/BDF/LSODA: steps, evaluations, time, error",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": "stiff_ode_smoke", "cpu": "stiff_ode"},
    "metrics": [
        {"label": "Robertson batch (256 systems at cpu scale), one call: time", "path": "batch/sciflow_rodas4/wall_s",
         "unit": "s",
         "baselines": {"scipy Radau loop": "batch/scipy_radau/wall_s", "scipy LSODA loop": "batch/scipy_lsoda/wall_s"}},
        {"label": "Robertson: time", "path": "robertson/sciflow_rodas4/median_s", "unit": "s",
         "baselines": {"scipy Radau": "robertson/scipy_radau/median_s", "scipy BDF": "robertson/scipy_bdf/median_s",
                       "scipy LSODA": "robertson/scipy_lsoda/median_s"}},
        {"label": "Robertson: accepted steps", "path": "robertson/sciflow_rodas4/steps",
         "baselines": {"scipy Radau": "robertson/scipy_radau/steps", "scipy BDF": "robertson/scipy_bdf/steps"}},
        {"label": "Robertson: max relative error", "path": "robertson/sciflow_rodas4/error",
         "baselines": {"scipy Radau": "robertson/scipy_radau/error", "scipy BDF": "robertson/scipy_bdf/error"}},
        {"label": "Van der Pol mu=1000: time", "path": "van_der_pol/sciflow_rodas4/median_s", "unit": "s",
         "baselines": {"scipy Radau": "van_der_pol/scipy_radau/median_s",
                       "scipy BDF": "van_der_pol/scipy_bdf/median_s"}},
        {"label": "Van der Pol mu=1000: max error of x", "path": "van_der_pol/sciflow_rodas4/error",
         "baselines": {"scipy Radau": "van_der_pol/scipy_radau/error", "scipy BDF": "van_der_pol/scipy_bdf/error"}},
        {"label": "Dopri5 / Rodas4 attempted steps (Robertson)", "path": "stiffness/dopri5_over_rodas4_steps",
         "better": "higher"},
    ],
}

SCALES = {"smoke": dict(repeats=1, batch=8, dopri_t1=1.0, dopri_cap=20_000),
          "cpu": dict(repeats=3, batch=256, dopri_t1=40.0, dopri_cap=300_000)}
K = (0.04, 3e7, 1e4)
MU = 1000.0


def robertson_torch(k):
    k1, k2, k3 = k

    def f(t, y):
        y1, y2, y3 = y.unbind(-1)
        return torch.stack([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 ** 2, k2 * y2 ** 2], -1)
    return f


def robertson_np(k):
    k1, k2, k3 = k
    f = lambda t, y: [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,  # noqa: E731
                      k2 * y[1] ** 2]
    jac = lambda t, y: [[-k1, k3 * y[2], k3 * y[1]],  # noqa: E731
                        [k1, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]], [0.0, 2 * k2 * y[1], 0.0]]
    return f, jac


def vdp_torch(t, y):
    x, v = y.unbind(-1)
    return torch.stack([v, MU * (1 - x ** 2) * v - x], -1)


def vdp_np(t, y):
    return [y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]]


def vdp_jac(t, y):
    return [[0.0, 1.0], [-2 * MU * y[0] * y[1] - 1, MU * (1 - y[0] ** 2)]]


def median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and the result)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare(problem: dict, repeats: int) -> dict:
    ts, y0, err = problem["ts"], problem["y0"], problem["error"]
    ref = solve_ivp(problem["f_np"], (ts[0], ts[-1]), y0, method="Radau", rtol=1e-10, atol=problem["ref_atol"],
                    t_eval=ts, jac=problem["jac"]).y.T
    out = {}

    def ours():
        with torch.no_grad():
            return odeint(problem["f_torch"], torch.tensor(y0, dtype=torch.float64), torch.tensor(ts),
                          solver=Rodas4(), rtol=1e-6, atol=problem["atol"], return_stats=True)
    med, (ys, st) = median_time(ours, repeats)
    out["sciflow_rodas4"] = {"median_s": med, "steps": int(st["n_accepted"][0]), "attempted": st["n_steps"],
                             "nfe": st["nfe"], "njev": st["njev"], "error": err(ys.numpy(), ref)}
    for method in ("Radau", "BDF", "LSODA"):
        def theirs():
            return solve_ivp(problem["f_np"], (ts[0], ts[-1]), y0, method=method, rtol=1e-6, atol=problem["atol"],
                             jac=problem["jac"], dense_output=False)
        med, sol = median_time(theirs, repeats)
        at = solve_ivp(problem["f_np"], (ts[0], ts[-1]), y0, method=method, rtol=1e-6, atol=problem["atol"],
                       jac=problem["jac"], t_eval=ts).y.T
        out[f"scipy_{method.lower()}"] = {"median_s": med, "steps": int(sol.t.size - 1), "nfe": int(sol.nfev),
                                          "njev": int(sol.njev), "error": err(at, ref)}
    out["ratios"] = {k: {"time": out["sciflow_rodas4"]["median_s"] / v["median_s"],
                         "steps": out["sciflow_rodas4"]["steps"] / v["steps"]}
                     for k, v in out.items() if k.startswith("scipy_")}
    for k, v in out.items():
        print(k, v, flush=True)
    return out


def rel_error(ys, ref, floor=1e-7):
    big = np.abs(ref) > floor
    return float((np.abs(ys - ref)[big] / np.abs(ref)[big]).max())


def batch_comparison(batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ks = np.asarray(K) * np.exp(rng.uniform(-math.log(2), math.log(2), size=(batch, 3)))
    ts = np.concatenate([[0.0], np.logspace(-5, 5, 21)])
    kt = torch.tensor(ks, dtype=torch.float64)
    f = robertson_torch((kt[:, 0], kt[:, 1], kt[:, 2]))
    y0 = torch.zeros(batch, 3, dtype=torch.float64)
    y0[:, 0] = 1.0
    out = {"batch": batch}
    t0 = time.perf_counter()
    with torch.no_grad():
        ys, st = odeint(f, y0, torch.tensor(ts), solver=Rodas4(), rtol=1e-6, atol=1e-10, batch_ndim=1,
                        return_stats=True)
    wall = time.perf_counter() - t0
    n_ref = min(8, batch)
    refs = [solve_ivp(_fj(ks[i])[0], (0, 1e5), [1.0, 0, 0], method="Radau", rtol=1e-10, atol=1e-14,
                      t_eval=ts, jac=_fj(ks[i])[1]).y.T for i in range(n_ref)]
    out["sciflow_rodas4"] = {"wall_s": wall, "systems_per_s": batch / wall, "attempts": st["n_steps"],
                             "accepted_min": int(st["n_accepted"].min()), "accepted_max": int(st["n_accepted"].max()),
                             "error_first8": max(rel_error(ys[:, i].numpy(), refs[i]) for i in range(n_ref))}
    for method in ("Radau", "BDF", "LSODA"):
        t0 = time.perf_counter()
        sols = [solve_ivp(_fj(ks[i])[0], (0, 1e5), [1.0, 0, 0], method=method, rtol=1e-6, atol=1e-10,
                          t_eval=ts, jac=_fj(ks[i])[1]) for i in range(batch)]
        wall_m = time.perf_counter() - t0
        out[f"scipy_{method.lower()}"] = {
            "wall_s": wall_m, "systems_per_s": batch / wall_m,
            "error_first8": max(rel_error(sols[i].y.T, refs[i]) for i in range(n_ref))}
    out["throughput_ratio"] = {k: out["sciflow_rodas4"]["systems_per_s"] / v["systems_per_s"]
                               for k, v in out.items() if k.startswith("scipy_")}
    print("batch", out, flush=True)
    return out


def _fj(k):
    return robertson_np(tuple(k))


def stiffness(t1: float, cap: int) -> dict:
    f = robertson_torch(K)
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, t1], dtype=torch.float64)
    with torch.no_grad():
        _, st = odeint(f, y0, t, solver=Rodas4(), rtol=1e-6, atol=1e-10, return_stats=True)
        capped = False
        t0 = time.perf_counter()
        try:
            _, sd = odeint(f, y0, t, solver=Dopri5(), controller=PIController(rtol=1e-6, atol=1e-10, max_steps=cap),
                           return_stats=True)
            dopri_steps = sd["n_steps"]
        except RuntimeError as err:
            if "max_steps" not in str(err):
                raise
            capped, dopri_steps = True, cap
        dopri_s = time.perf_counter() - t0
    out = {"t1": t1, "rodas4_attempted_steps": st["n_steps"], "dopri5_attempted_steps": dopri_steps,
           "dopri_capped": capped, "dopri5_wall_s": dopri_s,
           "dopri5_over_rodas4_steps": dopri_steps / st["n_steps"]}
    print("stiffness", out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--dopri-t1", type=float)
    ap.add_argument("--dopri-cap", type=int)
    args = ap.parse_args()
    cfg = scale_config(SCALES, args)
    torch.set_num_threads(1)
    rf, rj = robertson_np(K)
    robertson = {"f_torch": robertson_torch(K), "f_np": rf, "jac": rj, "y0": [1.0, 0.0, 0.0], "atol": 1e-10,
                 "ref_atol": 1e-14, "ts": np.concatenate([[0.0], np.logspace(-5, 5, 21)]),
                 "error": lambda ys, ref: rel_error(ys, ref, floor=1e-7)}
    vdp = {"f_torch": vdp_torch, "f_np": vdp_np, "jac": vdp_jac, "y0": [2.0, 0.0], "atol": 1e-8, "ref_atol": 1e-12,
           "ts": np.linspace(0, (3 - 2 * math.log(2)) * MU, 21),
           "error": lambda ys, ref: float(np.abs(ys[:, 0] - ref[:, 0]).max())}
    payload = {
        "scale": args.scale, "config": cfg, "dtype": "float64", "rtol": 1e-6,
        "reference": "scipy solve_ivp Radau rtol=1e-10 (atol 1e-14 Robertson, 1e-12 Van der Pol), analytic Jacobian",
        "notes": "sciflow: Rodas4, no autograd, one thread; njev = batched Jacobian evaluations (all trajectories "
                 "at once); scipy steps = accepted steps (len(sol.t) - 1), scipy given the analytic Jacobian",
        "robertson": compare(robertson, cfg["repeats"]),
        "van_der_pol": compare(vdp, cfg["repeats"]),
        "batch": batch_comparison(cfg["batch"]),
        "stiffness": stiffness(cfg["dopri_t1"], cfg["dopri_cap"]),
    }
    write_result("stiff_ode" if args.scale == "cpu" else f"stiff_ode_{args.scale}", payload)


if __name__ == "__main__":
    main()
