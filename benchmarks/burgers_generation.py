"""Burgers shock benchmark: cost to reach relative L2 1e-4 on the ``burgers_shock.mat`` grid.

Problem: ``u_t + u u_x = (0.01/pi) u_xx`` on ``[-1, 1]``, ``u0 = -sin(pi x)``, ``u(±1) = 0``,
compared on the reference grid (256 x 100, t in [0, 0.99]) against the exact Cole–Hopf solution
(which matches ``burgers_shock.mat`` to 3e-12).

* sciflow: sine-Galerkin pseudo-spectral ETDRK4 (``burgers.solve_dirichlet``), ladder of
  (modes, dt); the cheapest configuration reaching the target is timed.
* anchor: scipy ``solve_ivp`` method of lines — second-order conservative central differences
  on ``255 m`` intervals (so the reference grid lies on the FD grid, no interpolation error),
  implicit ``BDF`` with the tridiagonal Jacobian sparsity, ``rtol = 1e-8``; ladder over ``m``.

Writes ``benchmarks/results/burgers_generation.json`` with both costs and the ratio.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.integrate import solve_ivp

from _common import time_it, write_result
from sciflow.data.pdes import burgers
from sciflow.data.reference import load_reference

NU = 0.01 / math.pi


def mol_solve(m: int, t_eval: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    n_int = 255 * m
    x = np.linspace(-1, 1, n_int + 1)
    h = x[1] - x[0]
    u0 = -np.sin(np.pi * x[1:-1])

    def rhs(_t, u):
        ue = np.concatenate(([0.0], u, [0.0]))
        flux = 0.5 * ue**2
        return -(flux[2:] - flux[:-2]) / (2 * h) + NU * (ue[2:] - 2 * ue[1:-1] + ue[:-2]) / h**2

    n = n_int - 1
    sparsity = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1])
    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), u0, method="BDF", t_eval=t_eval, rtol=rtol, atol=1e-10,
                    jac_sparsity=sparsity)
    if not sol.success:
        raise RuntimeError(sol.message)
    full = np.zeros((t_eval.size, n_int + 1))
    full[:, 1:-1] = sol.y.T
    return full[:, ::m]  # (time, 256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=1e-4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ref = load_reference("burgers_shock")
    x, t = torch.tensor(ref.x), torch.tensor(ref.t)
    exact = burgers.cole_hopf_sine(x, t, nu=NU, n_quad=100).numpy()
    err = lambda u: float(np.linalg.norm(u - exact) / np.linalg.norm(exact))  # noqa: E731

    ladder_sf = []
    chosen = None
    for modes in (256, 384, 512, 768, 1024):
        for dt in (2e-3, 1e-3, 5e-4):
            run = lambda: burgers.solve_dirichlet(lambda xf: -torch.sin(math.pi * xf), nu=NU,  # noqa: E731
                                                  domain=(-1.0, 1.0), t=t, dt=dt, x_out=x, n_modes=modes)[0]
            t0 = time.perf_counter()
            e = err(run().numpy())
            ladder_sf.append({"modes": modes, "dt": dt, "rel_l2": e, "once_s": time.perf_counter() - t0})
            if e <= args.target:
                chosen = {"modes": modes, "dt": dt, "rel_l2": e, "timing": time_it(run, repeats=args.repeats)}
                break
        if chosen:
            break

    ladder_mol = []
    chosen_mol = None
    for m in (4, 8, 16, 32):
        t0 = time.perf_counter()
        e = err(mol_solve(m, ref.t))
        ladder_mol.append({"intervals": 255 * m, "rel_l2": e, "once_s": time.perf_counter() - t0})
        if e <= args.target:
            chosen_mol = {"intervals": 255 * m, "rel_l2": e,
                          "timing": time_it(lambda: mol_solve(m, ref.t), repeats=max(1, args.repeats - 2), warmup=0)}
            break

    ch_time = time_it(lambda: burgers.cole_hopf_sine(x, t, nu=NU, n_quad=100), repeats=args.repeats)
    payload = {
        "target_rel_l2": args.target,
        "sciflow_sine_galerkin_etdrk4": {"ladder": ladder_sf, "chosen": chosen},
        "scipy_solve_ivp_mol_bdf": {"ladder": ladder_mol, "chosen": chosen_mol},
        "cole_hopf_exact": {"timing": ch_time, "rel_l2_vs_file": ref.relative_l2(exact.T)},
        "speedup_vs_scipy": (chosen_mol["timing"]["median_s"] / chosen["timing"]["median_s"])
        if chosen and chosen_mol else None,
    }
    write_result("burgers_generation", payload)


if __name__ == "__main__":
    main()
