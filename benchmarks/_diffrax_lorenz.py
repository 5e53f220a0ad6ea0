"""diffrax (JAX, ``jit``) anchor for the batched Lorenz-63 benchmark (issue 3), run as a subprocess.

``benchmarks/ode_lorenz.py`` calls this script in a separate process so that JAX/XLA and torch do not
share (and fight over) a thread pool; XLA is pinned to one thread *before* ``jax`` is imported, to
match torch's ``set_num_threads(1)``. Same problem as the torch side: initial conditions from a
``.npy`` file (``(B, 3)``), save times from ``--t``, Lorenz-63 (10, 28, 8/3), float32, and the worst
error at t = 1 against the scipy DOP853 reference the caller passes (``(B, 3)`` ``.npy``).

Variants (``Dopri5`` and ``Tsit5``, ``PIDController(rtol, atol)`` with diffrax's defaults, i.e. the
classical I-controller ``h_new = h * safety * err^(-1/(p+1))`` with the RMS norm, as torchdiffeq):

* ``batch_norm``: one ``diffeqsolve`` on the whole ``(B, 3)`` state -- a single RMS error norm over
  the batch and one shared step sequence (torchdiffeq's semantics);
* ``per_trajectory``: ``jax.vmap`` of a solve on one ``(3,)`` state -- each trajectory has its own
  error norm and step size (the vmapped ``while_loop`` keeps iterating until the slowest lane is done).

Tolerances are traced arguments of the jitted solve, so every tolerance reuses one compilation.
Timing: compile + first run once (reported as ``compile_s``), one more warm-up call, then the median
of ``--repeats`` calls, each ended by ``block_until_ready``.

NFE: diffrax does not count vector-field evaluations; ``sol.stats`` gives ``num_steps`` (attempted
steps, accepted + rejected). Both solvers are FSAL with 7 stages, so each attempted step costs 6 new
evaluations (a rejected step keeps its still-valid first stage), plus f(t0, y0) for the first
step: ``nfe = 6 * num_steps + 1``. That matches an exact host-callback count (``--check-nfe``,
``nfe_counted``, batch_norm only; also checked with constant steps on y' = -y). Caveat: the
initial-step selection (Hairer-Norsett-Wanner II.4) must evaluate f twice more, but those calls do
not show in the callback count (they sit in an equinox ``scan_trick``), so the true count may be
up to 2 higher -- immaterial against ~3000.
For ``batch_norm`` that is the number of batched evaluations (comparable to the torch NFE); for
``per_trajectory`` the vmapped loop runs ``max(num_steps)`` iterations, each evaluating every lane,
so the batched-evaluation count is ``6 * max(num_steps) + 1`` (the mean per-lane step count is
reported too).

    python benchmarks/_diffrax_lorenz.py --y0 y0.npy --ref ref_t1.npy --t 0 1 ... 10 \
        --tols 1e-6 2e-6 --repeats 5 --out diffrax.json
"""

from __future__ import annotations

import os

# Single-threaded XLA/Eigen (must precede ``import jax``); mirrors torch.set_num_threads(1).
_flags = os.environ.get("XLA_FLAGS", "").split()
for _flag in ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"):
    if _flag not in _flags:
        _flags.append(_flag)
os.environ["XLA_FLAGS"] = " ".join(_flags)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import diffrax  # noqa: E402

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
SOLVERS = {"dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5}


def lorenz(t, y, args):
    """Lorenz-63 on the last axis; ``y`` is ``(3,)`` or ``(B, 3)``."""
    x, yy, z = y[..., 0], y[..., 1], y[..., 2]
    return jnp.stack([SIGMA * (yy - x), x * (RHO - z) - yy, x * yy - BETA * z], -1)


def make_solve(solver_name: str, mode: str, ts: np.ndarray, vf=lorenz):
    """Return ``solve(y0, rtol, atol) -> (ys (T, B, 3), num_steps (B,) or ())``, jitted."""
    solver = SOLVERS[solver_name]()
    term = diffrax.ODETerm(vf)
    ts_j = jnp.asarray(ts, dtype=jnp.float32)

    def one(y0, rtol, atol):
        sol = diffrax.diffeqsolve(
            term, solver, t0=ts_j[0], t1=ts_j[-1], dt0=None, y0=y0,
            saveat=diffrax.SaveAt(ts=ts_j),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=100_000)
        return sol.ys, sol.stats["num_steps"]

    if mode == "batch_norm":
        fn = one
    elif mode == "per_trajectory":
        def fn(y0, rtol, atol):
            ys, steps = jax.vmap(one, in_axes=(0, None, None))(y0, rtol, atol)
            return jnp.swapaxes(ys, 0, 1), steps  # (B, T, 3) -> (T, B, 3)
    else:
        raise ValueError(f"mode must be 'batch_norm' or 'per_trajectory', got {mode!r}")
    return jax.jit(fn)


def counted_nfe(solver_name: str, mode: str, ts: np.ndarray, y0, tol: float) -> int:
    """Exact number of (batched) vector-field calls, counted by a host callback (slow, un-timed)."""
    count = [0]

    def bump():
        count[0] += 1

    def vf(t, y, args):
        jax.debug.callback(bump)
        return lorenz(t, y, args)

    if mode == "per_trajectory":
        raise ValueError("counted_nfe is exact only for batch_norm (a vmapped callback runs per lane)")
    ys, _ = make_solve(solver_name, mode, ts, vf)(y0, jnp.float32(tol), jnp.float32(tol))
    jax.block_until_ready(ys)
    jax.effects_barrier()
    return count[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--y0", required=True, help=".npy, (B, 3) initial conditions")
    ap.add_argument("--ref", required=True, help=".npy, (B, 3) reference solution at t = 1")
    ap.add_argument("--t", type=float, nargs="+", required=True, help="save times; t = 1 must be one")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-6], help="rtol = atol values")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check-nfe", action="store_true")
    ap.add_argument("--out", required=True, help="JSON output path")
    args = ap.parse_args()

    y0_np = np.load(args.y0)
    ref = np.load(args.ref).astype(np.float64)
    if y0_np.ndim != 2 or y0_np.shape[-1] != 3:
        raise ValueError(f"--y0 must hold a (B, 3) array, got shape {y0_np.shape}")
    if ref.shape != y0_np.shape:
        raise ValueError(f"--ref shape {ref.shape} does not match --y0 shape {y0_np.shape}")
    if not (np.isfinite(y0_np).all() and np.isfinite(ref).all()):
        raise ValueError("--y0/--ref contain NaN or inf")
    ts = np.asarray(args.t, dtype=np.float64)
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"--t must be strictly increasing, got {args.t}")
    hits = np.flatnonzero(np.isclose(ts, 1.0))
    if hits.size != 1:
        raise ValueError("--t must contain t = 1 (the accuracy point)")
    i1 = int(hits[0])
    y0 = jnp.asarray(y0_np, dtype=jnp.float32)

    results, compile_s = {}, {}
    for solver_name in SOLVERS:
        for mode in ("batch_norm", "per_trajectory"):
            key = f"diffrax_{solver_name}_{mode}"
            solve = make_solve(solver_name, mode, ts)
            for tol in args.tols:
                rt = at = jnp.float32(tol)
                t0 = time.perf_counter()
                ys, steps = jax.block_until_ready(solve(y0, rt, at))
                if key not in compile_s:  # first call compiles; tolerances are traced (no recompile)
                    compile_s[key] = time.perf_counter() - t0
                jax.block_until_ready(solve(y0, rt, at))  # warm-up
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    jax.block_until_ready(solve(y0, rt, at))
                    times.append(time.perf_counter() - t0)
                steps = np.asarray(steps)
                e = np.abs(np.asarray(ys[i1], dtype=np.float64) - ref).max(-1)
                entry = {"median_s": statistics.median(times), "min_s": min(times),
                         "max_s": max(times), "repeats": args.repeats, "rtol": tol, "atol": tol,
                         "nfe": int(6 * steps.max() + 1),
                         "num_steps_max": int(steps.max()), "num_steps_mean": float(steps.mean()),
                         "max_err_t1": float(e.max()), "median_err_t1": float(np.median(e))}
                if not np.isfinite(e).all():
                    entry["note"] = "non-finite solution"
                if args.check_nfe and mode == "batch_norm":
                    entry["nfe_counted"] = counted_nfe(solver_name, mode, ts, y0, tol)
                results[f"{key}_tol{tol:g}"] = entry
                print(f"{key}_tol{tol:g}", entry, flush=True)

    doc = {"results": results, "compile_seconds": compile_s,
           "versions": {"jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"),
                        "diffrax": diffrax.__version__, "xla_flags": os.environ["XLA_FLAGS"],
                        "backend": jax.default_backend()}}
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)


if __name__ == "__main__":
    main()
