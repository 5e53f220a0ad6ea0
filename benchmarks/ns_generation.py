"""2-D Navier–Stokes data generation: sciflow vs the FNO paper's generator algorithm.

Anchor: a straightforward re-implementation (written here from the algorithm's description) of
the generator of Li et al. 2021 (FNO, ``data_generation/navier_stokes/ns_2d.py``): vorticity in
``rfft2`` space, each step computing the velocity and the vorticity gradient by four inverse FFTs,
the product ``u w_x + v w_y`` by one forward FFT, the 2/3 mask on that product, and the update
``w <- (-dt N + dt f + (1 - dt nu Lap/2) w) / (1 + dt nu Lap/2)`` — Crank–Nicolson viscosity,
forward-Euler advection (first order in time). Same grid, forcing, initial state, ``nu``, ``dt``.

Measured in one run (medians):
* ``same_dt``: trajectories/s of both at the same ``dt`` for ``steps`` steps, plus each one's
  relative L2 error at the final time against a fine sciflow reference (float64, dt/8);
* ``equal_accuracy``: sciflow at the largest ``dt`` (from a ladder) whose error is <= the anchor's
  error at its ``dt``, over the same time span -> ratio of trajectories/s.

Default: 64^2, batch 32, 1000 steps of dt = 1e-4 (the FNO setting's dt), nu = 1e-3, FNO forcing,
GRF(2.5, 7) initial vorticity, float32 (as the FNO generator). ``--scale`` 4 gives 256^2.
"""

from __future__ import annotations

import argparse
import math

import torch

from _common import time_it, write_result
from sciflow.data.pdes import navier_stokes as ns
from sciflow.data.pdes._spectral import sample_grf


def fno_reference(w0: torch.Tensor, f: torch.Tensor, nu: float, dt: float, steps: int) -> torch.Tensor:
    """Forward-Euler/Crank–Nicolson vorticity solver with the FNO generator's per-step structure."""
    n = w0.shape[-1]
    k_max = n // 2
    dev = w0.device
    ky_1d = torch.cat([torch.arange(0, k_max, device=dev), torch.arange(-k_max, 0, device=dev)])
    k_x = ky_1d.repeat(n, 1).transpose(0, 1)[..., : k_max + 1].to(w0.dtype)  # first axis
    k_y = ky_1d.repeat(n, 1)[..., : k_max + 1].to(w0.dtype)  # second axis
    lap = 4 * math.pi**2 * (k_x**2 + k_y**2)
    lap[0, 0] = 1.0
    dealias = ((k_x.abs() <= (2 / 3) * k_max) & (k_y.abs() <= (2 / 3) * k_max)).to(w0.dtype)
    w_h = torch.fft.rfft2(w0)
    f_h = torch.fft.rfft2(f)
    for _ in range(steps):
        psi_h = w_h / lap
        q = torch.fft.irfft2(2 * math.pi * k_y * 1j * psi_h, s=(n, n))
        v = torch.fft.irfft2(-2 * math.pi * k_x * 1j * psi_h, s=(n, n))
        w_x = torch.fft.irfft2(2 * math.pi * k_x * 1j * w_h, s=(n, n))
        w_y = torch.fft.irfft2(2 * math.pi * k_y * 1j * w_h, s=(n, n))
        F_h = torch.fft.rfft2(q * w_x + v * w_y) * dealias
        w_h = (-dt * F_h + dt * f_h + (1.0 - 0.5 * dt * nu * lap) * w_h) / (1.0 + 0.5 * dt * nu * lap)
    return torch.fft.irfft2(w_h, s=(n, n))


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1, help="grid = 64 * scale")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dt", type=float, default=1e-4)
    ap.add_argument("--nu", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    n = 64 * args.scale
    t_end = args.steps * args.dt
    g = torch.Generator().manual_seed(0)
    w0 = sample_grf(args.batch, (n, n), alpha=2.5, tau=7.0, generator=g)
    # band-limit the initial state once so both solvers start from the identical field
    grid = ns.SpectralGrid2D(n)
    w0 = torch.fft.irfft2(grid.mask * torch.fft.rfft2(w0), s=(n, n))
    f64 = ns.fno_forcing(n)
    w0_d, f_d = w0.to(dev, dtype), f64.to(dev, dtype)

    ref = ns.solve(w0.to(dev), t=[0.0, t_end], nu=args.nu, dt=args.dt / 8, forcing=f64.to(dev))[:, -1]

    def run_fno():
        return fno_reference(w0_d, f_d, args.nu, args.dt, args.steps)

    def run_sciflow(dt):
        return ns.solve(w0_d, t=[0.0, t_end], nu=args.nu, dt=dt, forcing=f_d)[:, -1]

    err_fno = rel_l2(run_fno(), ref)
    err_sf = rel_l2(run_sciflow(args.dt), ref)
    t_fno = time_it(run_fno, repeats=args.repeats, device=dev)
    t_sf = time_it(lambda: run_sciflow(args.dt), repeats=args.repeats, device=dev)

    # equal accuracy: largest sciflow dt (ladder) whose error <= the anchor's error
    best = None
    for mult in (2, 5, 10, 20, 40, 80):
        dt = args.dt * mult
        e = rel_l2(run_sciflow(dt), ref)
        if e <= err_fno:
            best = (dt, e)
        else:
            break
    eq = None
    if best is not None:
        t_eq = time_it(lambda: run_sciflow(best[0]), repeats=args.repeats, device=dev)
        eq = {"sciflow_dt": best[0], "sciflow_rel_l2": best[1], "sciflow": t_eq,
              "speedup": t_fno["median_s"] / t_eq["median_s"],
              "sciflow_traj_per_s": args.batch / t_eq["median_s"]}

    name = "ns_generation" + (f"_{n}" if args.scale != 1 else "") + ("_float64" if args.dtype == "float64" else "")
    if dev.type == "cuda":
        name += "_cuda"
    write_result(name, {
        "config": {"grid": n, "batch": args.batch, "steps": args.steps, "dt": args.dt, "nu": args.nu,
                   "t_end": t_end, "dtype": args.dtype, "threads": args.threads,
                   "reference": "sciflow CNAB2 float64 at dt/8"},
        "anchor": "FNO generator algorithm (CN viscosity + forward-Euler advection, 5 FFTs/step)",
        "same_dt": {"fno": t_fno, "sciflow": t_sf,
                    "fno_traj_per_s": args.batch / t_fno["median_s"],
                    "sciflow_traj_per_s": args.batch / t_sf["median_s"],
                    "speedup": t_fno["median_s"] / t_sf["median_s"],
                    "fno_rel_l2": err_fno, "sciflow_rel_l2": err_sf},
        "equal_accuracy": eq,
    }, device=dev)


if __name__ == "__main__":
    main()
