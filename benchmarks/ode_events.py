"""Terminal events: sciflow's batched event location vs torchdiffeq's ``odeint_event`` and scipy's
``solve_ivp(events=...)`` (same problem, same run, same machine).

Problem: ``--batch`` bodies falling from rest with quadratic drag, ``h' = v``, ``v' = -g - k v|v|``,
heights ``h0`` in [1, 50] m and drag coefficients ``k`` in [0.001, 0.1] 1/m (seeded), each stopped
where the height falls through 0. Closed form (terminal velocity ``v_T = sqrt(g/k)``):
``t* = (v_T / g) arccosh(exp(g h0 / v_T^2))`` — the reference for every solver, and its derivative
``dt*/dk`` (autograd of the closed form) the reference for the gradients.

* sciflow: one ``solve(..., event=Event(cond, direction=-1), batch_ndim=1)`` call, Dopri5 — every
  body its own clock, error control and event;
* torchdiffeq ``odeint_event`` (dopri5): its event function returns one scalar for the whole state,
  so the whole batch would stop at the first impact; the bodies are solved one call each (a loop);
* scipy ``solve_ivp`` (RK45, terminal event, Brent's method on its dense output): a loop.

Several events (``--scale cpu`` too): the same bodies with a second, recorded event — the speed
reaching 90 % of the terminal speed, at ``(v_T / g) artanh(0.9)`` in closed form, which only the
bodies that fall long enough reach before the ground stops them. sciflow: one solve with
``event=[ground, fast]``; scipy: a loop of ``solve_ivp(events=[ground, fast])``; torchdiffeq's
``odeint_event`` takes one event function, so it has no entry.

All at rtol = 1e-8, atol = 1e-10, float64, one thread. Forward: wall time (median of ``--repeats``
after a warm-up) and the max abs. error of ``t*``. Gradients: ``dt*/dk`` through the event time —
sciflow for the whole batch in one backward pass, torchdiffeq for the first ``--grad-bodies`` bodies
(one backward each; its implicit-function gradient) — max rel. error vs the closed form over those
bodies (sciflow's over all bodies too), and time per body.

    python benchmarks/ode_events.py [--scale smoke|cpu] [--batch 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import scale_config, time_it, write_result  # noqa: E402

from sciflow.solvers import Dopri5, Event, ODETerm, PIController, solve  # noqa: E402

BENCHMARK = {
    "family": "solvers", "dataset": "falling bodies with quadratic drag (256 at cpu scale), stopped at the ground",
    "kind": "speed", "owner": "F",
    "description": "terminal events: batched sciflow solve(event=...) vs torchdiffeq odeint_event and scipy "
                   "solve_ivp(events=...) loops; event-time error and dt*/dk vs the closed form",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": "ode_events_smoke", "cpu": "ode_events"},
    "metrics": [
        {"label": "event location, whole batch: time", "path": "forward/sciflow/median_s", "unit": "s",
         "baselines": {"torchdiffeq odeint_event loop": "forward/torchdiffeq/median_s",
                       "scipy solve_ivp loop": "forward/scipy/median_s"}},
        {"label": "event time: max abs. error vs closed form", "path": "forward/sciflow/max_abs_error",
         "baselines": {"torchdiffeq odeint_event": "forward/torchdiffeq/max_abs_error",
                       "scipy solve_ivp": "forward/scipy/max_abs_error"}},
        {"label": "two events (ground + 90 % of terminal speed), whole batch: time", "path": "several/sciflow/median_s",
         "unit": "s", "baselines": {"scipy solve_ivp loop": "several/scipy/median_s"}},
        {"label": "two events: max abs. error of either event time vs closed form",
         "path": "several/sciflow/max_abs_error", "baselines": {"scipy solve_ivp": "several/scipy/max_abs_error"}},
        {"label": "dt*/dk: max rel. error vs closed form (the first 16 bodies at cpu scale)",
         "path": "gradient/sciflow/max_rel_error",
         "baselines": {"torchdiffeq odeint_event": "gradient/torchdiffeq/max_rel_error"}},
        {"label": "dt*/dk: time per body (forward + backward)", "path": "gradient/sciflow/s_per_body", "unit": "s",
         "baselines": {"torchdiffeq odeint_event": "gradient/torchdiffeq/s_per_body"}},
    ],
}

SCALES = {"smoke": dict(batch=8, repeats=1, grad_bodies=2), "cpu": dict(batch=256, repeats=3, grad_bodies=16)}
G = 9.81
RTOL, ATOL = 1e-8, 1e-10


def bodies(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(1.0, 50.0, batch), np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), batch))


def closed_form(h0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    vt = torch.sqrt(G / k)
    return vt / G * torch.acosh(torch.exp(G * h0 / vt ** 2))


def drag_field(k: torch.Tensor):
    def f(t, y):
        v = y[..., 1]
        return torch.stack([v, -G - k * v * v.abs()], -1)
    return f


def median_time(fn, repeats: int):
    """The median wall time of ``fn()`` over ``repeats`` calls after a warm-up, and its result."""
    out = fn()
    return time_it(fn, repeats=repeats, warmup=0)["median_s"], out


def sciflow_events(h0: torch.Tensor, k: torch.Tensor):
    y0 = torch.stack([h0, torch.zeros_like(h0)], -1)
    sol = solve(ODETerm(drag_field(k)), Dopri5(), 0.0, 100.0, y0, batch_ndim=1,
                controller=PIController(rtol=RTOL, atol=ATOL), event=Event(lambda t, y: y[..., 0], direction=-1))
    if not bool(sol.event.occurred.all()):
        raise RuntimeError("a body did not reach the ground within t = 100")
    return sol.event.t, sol.stats


def sciflow_two_events(h0: torch.Tensor, k: torch.Tensor):
    """Ground (terminal) and 90 % of the terminal speed (recorded) in one solve."""
    y0 = torch.stack([h0, torch.zeros_like(h0)], -1)
    vt = torch.sqrt(G / k)
    events = [Event(lambda t, y: y[..., 0], direction=-1),
              Event(lambda t, y: -y[..., 1] - 0.9 * vt, direction=+1, terminal=False)]
    sol = solve(ODETerm(drag_field(k)), Dopri5(), 0.0, 100.0, y0, batch_ndim=1,
                controller=PIController(rtol=RTOL, atol=ATOL), event=events)
    ground, fast = sol.event
    return ground.t, fast.t, fast.occurred


def torchdiffeq_event(h0: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    from torchdiffeq import odeint_event
    y0 = torch.stack([h0, torch.zeros_like(h0)])
    f = drag_field(k)
    t_ev, _ = odeint_event(lambda t, y: f(t, y), y0, torch.tensor(0.0, dtype=torch.float64),
                           event_fn=lambda t, y: y[0], method="dopri5", rtol=RTOL, atol=ATOL)
    return t_ev


def scipy_event(h0: float, k: float) -> float:
    def ground(t, y):
        return y[0]
    ground.terminal, ground.direction = True, -1
    sol = solve_ivp(lambda t, y: [y[1], -G - k * y[1] * abs(y[1])], (0.0, 100.0), [h0, 0.0], method="RK45",
                    rtol=RTOL, atol=ATOL, events=ground)
    return float(sol.t_events[0][0])


def scipy_two_events(h0: float, k: float) -> tuple[float, float]:
    vt = np.sqrt(G / k)

    def ground(t, y):
        return y[0]

    def fast(t, y):
        return -y[1] - 0.9 * vt
    ground.terminal, ground.direction, fast.direction = True, -1, 1
    sol = solve_ivp(lambda t, y: [y[1], -G - k * y[1] * abs(y[1])], (0.0, 100.0), [h0, 0.0], method="RK45",
                    rtol=RTOL, atol=ATOL, events=[ground, fast])
    t_fast = sol.t_events[1]
    return float(sol.t_events[0][0]), float(t_fast[0]) if len(t_fast) else float("nan")


def several(h0_np, k_np, repeats: int) -> dict:
    h0 = torch.tensor(h0_np, dtype=torch.float64)
    k = torch.tensor(k_np, dtype=torch.float64)
    t_ground = closed_form(h0, k)
    vt = torch.sqrt(G / k)
    t_fast = vt / G * math.atanh(0.9)
    reached = t_fast < t_ground
    out = {"bodies_reaching_90pct": int(reached.sum())}
    with torch.no_grad():
        med, (tg, tf, occ) = median_time(lambda: sciflow_two_events(h0, k), repeats)
    err = max(float((tg - t_ground).abs().max()), float((tf[reached] - t_fast[reached]).abs().max()))
    out["sciflow"] = {"median_s": med, "max_abs_error": err, "occurred_as_closed_form": bool(torch.equal(occ, reached))}
    med, res = median_time(lambda: np.array([scipy_two_events(h, kk) for h, kk in zip(h0_np, k_np)]), repeats)
    occ_sp = torch.tensor(~np.isnan(res[:, 1]))
    err = max(float(np.abs(res[:, 0] - t_ground.numpy()).max()),
              float(np.abs(res[reached.numpy(), 1] - t_fast[reached].numpy()).max()))
    out["scipy"] = {"median_s": med, "max_abs_error": err,
                    "occurred_as_closed_form": bool(torch.equal(occ_sp, reached))}
    out["speedup"] = {"scipy": out["scipy"]["median_s"] / out["sciflow"]["median_s"]}
    print("several", out, flush=True)
    return out


def forward(h0_np, k_np, repeats: int) -> dict:
    h0 = torch.tensor(h0_np, dtype=torch.float64)
    k = torch.tensor(k_np, dtype=torch.float64)
    exact = closed_form(h0, k)
    out = {}
    with torch.no_grad():
        med, (t_s, stats) = median_time(lambda: sciflow_events(h0, k), repeats)
        out["sciflow"] = {"median_s": med, "max_abs_error": float((t_s - exact).abs().max()),
                          "attempts": stats["n_steps"], "event_evals": stats["n_event_evals"]}
        med, t_td = median_time(lambda: torch.stack([torchdiffeq_event(h0[i], k[i]) for i in range(len(h0))]),
                                repeats)
        out["torchdiffeq"] = {"median_s": med, "max_abs_error": float((t_td - exact).abs().max())}
    med, t_sp = median_time(lambda: np.array([scipy_event(h, kk) for h, kk in zip(h0_np, k_np)]), repeats)
    out["scipy"] = {"median_s": med, "max_abs_error": float(np.abs(t_sp - exact.numpy()).max())}
    out["speedup"] = {name: out[name]["median_s"] / out["sciflow"]["median_s"] for name in ("torchdiffeq", "scipy")}
    print("forward", out, flush=True)
    return out


def gradient(h0_np, k_np, n_td: int) -> dict:
    h0 = torch.tensor(h0_np, dtype=torch.float64)
    k_ref = torch.tensor(k_np, dtype=torch.float64, requires_grad=True)
    ref, = torch.autograd.grad(closed_form(h0, k_ref).sum(), k_ref)
    out = {}
    k = torch.tensor(k_np, dtype=torch.float64, requires_grad=True)
    t0 = time.perf_counter()
    t_s, _ = sciflow_events(h0, k)
    d_s, = torch.autograd.grad(t_s.sum(), k)
    wall = time.perf_counter() - t0
    rel = ((d_s - ref) / ref).abs()
    out["sciflow"] = {"wall_s": wall, "s_per_body": wall / len(h0), "bodies": len(h0),
                      "max_rel_error": float(rel[:n_td].max()), "max_rel_error_all_bodies": float(rel.max())}
    errs, t0 = [], time.perf_counter()
    for i in range(n_td):
        ki = torch.tensor(k_np[i], dtype=torch.float64, requires_grad=True)
        d, = torch.autograd.grad(torchdiffeq_event(h0[i], ki), ki)
        errs.append(abs(float(d) - float(ref[i])) / abs(float(ref[i])))
    wall = time.perf_counter() - t0
    out["torchdiffeq"] = {"wall_s": wall, "s_per_body": wall / n_td, "bodies": n_td, "max_rel_error": max(errs)}
    print("gradient", out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--grad-bodies", type=int)
    args = ap.parse_args()
    cfg = scale_config(SCALES, args)
    torch.set_num_threads(1)
    h0, k = bodies(cfg["batch"])
    payload = {
        "scale": args.scale, "config": cfg, "dtype": "float64", "rtol": RTOL, "atol": ATOL,
        "reference": "closed form t* = (v_T/g) arccosh(exp(g h0 / v_T^2)), v_T = sqrt(g/k); dt*/dk by autograd of it",
        "notes": "sciflow: one batched solve (per-trajectory clocks, Dopri5); torchdiffeq odeint_event (dopri5) "
                 "and scipy solve_ivp (RK45) one call per body (their event functions are one scalar per solve); "
                 "one thread",
        "forward": forward(h0, k, cfg["repeats"]),
        "several": several(h0, k, cfg["repeats"]),
        "gradient": gradient(h0, k, min(cfg["grad_bodies"], cfg["batch"])),
    }
    write_result("ode_events" if args.scale == "cpu" else f"ode_events_{args.scale}", payload)


if __name__ == "__main__":
    main()
