"""The benchmark registry: every benchmark script, how to run it at each scale, what it measures.

A :class:`Benchmark` names a script in ``benchmarks/``, the command-line arguments of each scale
(``smoke``: CI-sized, seconds to a minute; ``cpu``: this machine, minutes; ``gpu``: the short check
on one CUDA device that ``gpu_check.sh`` runs in ~10 minutes: speed benchmarks ≲ 1 minute each, one
at a time; accuracy benchmarks cap their training at a few wall-clock minutes and run together;
scripts may offer a longer ``--scale paper`` outside the suite), the JSON file
the script writes (``write_result(name, ...)`` in ``_common.py``), and the :class:`Metric` s to
read from it: sciflow's number, the baselines measured in the same run and, where a paper
publishes one, the anchor with its source. ``run.py`` runs them, ``report.py`` turns their JSON
into ``docs/results.md``; nothing here contains a measured number.

Registering a benchmark (no edit of this file needed): a script may declare a module-level
literal ``BENCHMARK = {...}`` with the fields of :class:`Benchmark` (metrics as a list of dicts
with the fields of :class:`Metric`, anchors as ``{"value": ..., "source": ...}``);
:func:`discover` reads it with :func:`ast.literal_eval`, without importing the script. Entries
here take precedence over a script's own declaration of the same name.

Metric paths are ``/``-separated keys into the script's JSON (keys may contain dots), integers
index lists (negative from the end): ``"curve/backsolve/-1/retained_bytes"``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

BENCH_DIR = Path(__file__).resolve().parent
SCALES = ("smoke", "cpu", "gpu")

#: a ``/``-path into the result JSON, or a function of the (merged) result document
Extractor = Union[str, Callable[[Mapping[str, Any]], "float | None"]]


@dataclass(frozen=True)
class Anchor:
    """A published number and where it is published (paper, table, equation or repository)."""

    value: float
    source: str


@dataclass(frozen=True)
class Metric:
    """One number of a benchmark: sciflow's value, same-run baselines, an optional anchor.

    ``ratio`` (in ``run.py``'s record) is ``value / reference`` for the anchor and each baseline;
    ``better`` says which direction is good (``"lower"`` for errors and seconds, ``"higher"``
    for accuracy and throughput).
    """

    label: str
    path: Extractor
    unit: str = ""
    better: str = "lower"
    baselines: Mapping[str, Extractor] = field(default_factory=dict)
    anchor: Anchor | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("lower", "higher"):
            raise ValueError(f"Metric {self.label!r}: better must be 'lower' or 'higher', got {self.better!r}")


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark script.

    ``scales[s]``: extra arguments for scale ``s`` (a scale not listed is not offered by the
    script). ``results[s]``: stem(s) of the JSON the script writes at scale ``s``; several stems
    are merged (first wins on equal top-level keys). ``seed_flag``: the script's seed option, if
    it has one (otherwise the seed is the script's fixed default ``seed``).
    """

    name: str
    script: str
    family: str
    dataset: str
    kind: str  # "accuracy" | "speed" | "memory"
    owner: str
    scales: Mapping[str, Sequence[str]]
    results: Mapping[str, Sequence[str]]
    metrics: Sequence[Metric]
    seed: int = 0
    seed_flag: str | None = None
    description: str = ""
    timeout_s: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [s for s in (*self.scales, *self.results) if s not in SCALES]
        if bad:
            raise ValueError(f"benchmark {self.name!r}: unknown scale(s) {bad}; allowed: {SCALES}")
        missing = [s for s in self.scales if s not in self.results]
        if missing:
            raise ValueError(f"benchmark {self.name!r}: no result stem for scale(s) {missing}")
        if self.kind not in ("accuracy", "speed", "memory"):
            raise ValueError(f"benchmark {self.name!r}: kind must be accuracy, speed or memory, got {self.kind!r}")

    @property
    def path(self) -> Path:
        p = Path(self.script)
        return p if p.is_absolute() else BENCH_DIR / p

    def command(self, scale: str, seed: int | None = None) -> list[str]:
        """Arguments after ``python benchmarks/<script>`` for ``scale`` (``seed`` if the script takes one)."""
        if scale not in self.scales:
            raise KeyError(f"benchmark {self.name!r} has no {scale!r} scale; it offers {sorted(self.scales)}")
        args = list(self.scales[scale])
        if self.seed_flag is not None and seed is not None:
            args += [self.seed_flag, str(seed)]
        return args


# ------------------------------------------------------------------------------ extraction


def lookup(doc: Any, path: Extractor) -> float | None:
    """The number at ``path`` in ``doc`` (``None`` where a key is absent or the value not numeric)."""
    if callable(path):
        try:
            v = path(doc)
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
            return None
    else:
        v = doc
        for key in path.split("/"):
            if isinstance(v, Mapping) and key in v:
                v = v[key]
            elif isinstance(v, list):
                try:
                    v = v[int(key)]
                except (ValueError, IndexError):
                    return None
            else:
                return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _sum_rows(key: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda d: sum(r[key] for r in d["rows"])


def _mean_seeds(method: str, metric: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda d: d["results"][method]["test"][metric]["mean"]


# ------------------------------------------------------------------------------ the registry

_RAISSI = "Raissi, Perdikaris & Karniadakis 2019, J. Comput. Phys. 378, Sec. 3.1.1 (Burgers, rel. L2 6.7e-4)"
_JAXPI_AC = "Wang, Sankaran, Wang & Perdikaris 2023, 'An expert's guide to training PINNs' (jaxpi README table)"
_CAUSAL = "Wang, Sankaran & Perdikaris 2022, 'Respecting causality...', arXiv:2203.07404 (as quoted in issue 8)"

REGISTRY: dict[str, Benchmark] = {}


def register(b: Benchmark) -> Benchmark:
    if b.name in REGISTRY:
        raise ValueError(f"benchmark {b.name!r} registered twice")
    REGISTRY[b.name] = b
    return b


# -- solvers ----------------------------------------------------------------------------------
register(Benchmark(
    name="ode_lorenz", script="ode_lorenz.py", family="solvers", owner="F", kind="speed",
    dataset="Lorenz-63, 512 trajectories, t in [0, 10], rtol = atol = 1e-6, float32",
    description="adaptive ODE solvers vs torchdiffeq (and diffrax/JAX) in the same run",
    scales={"smoke": ["--scale", "0.02", "--repeats", "1", "--t1", "1", "--match-tols", "1e-6", "4e-6",
                      "--no-compile", "--no-diffrax"],
            # gpu: launch-bound (per-solve time independent of the batch): t1 = 3 keeps it under the GPU
            # check's 75 s per speed benchmark (t1 = 10 timed out at 110 s in the last GPU run)
            "cpu": [],
            "gpu": ["--scale", "2", "--repeats", "3", "--t1", "3", "--match-tols", "1e-6", "4e-6",
                    "--no-diffrax", "--no-compile"]},
    results={"smoke": ["ode_lorenz"], "cpu": ["ode_lorenz"], "gpu": ["ode_lorenz"]},
    metrics=[
        Metric("Tsit5 eager, batch-norm step control: time", "results/sciflow_tsit5_batch_norm_eager/median_s",
               unit="s", baselines={"torchdiffeq dopri5": "results/torchdiffeq_dopri5/median_s"}),
        Metric("Dopri5 eager, batch-norm step control: time", "results/sciflow_dopri5_batch_norm_eager/median_s",
               unit="s", baselines={"torchdiffeq dopri5": "results/torchdiffeq_dopri5/median_s"}),
        Metric("best compiled sciflow at matched accuracy: time", "sciflow_best_compiled_over_diffrax/any/sciflow_s",
               unit="s", baselines={"diffrax (JAX, jit)": "sciflow_best_compiled_over_diffrax/any/diffrax_s"}),
        Metric("best eager sciflow at matched accuracy: time", "sciflow_best_eager_over_diffrax/any/sciflow_s",
               unit="s", baselines={"diffrax (JAX, jit)": "sciflow_best_eager_over_diffrax/any/diffrax_s"}),
        Metric("Tsit5 eager: max error at t = 1", "results/sciflow_tsit5_batch_norm_eager/max_err_t1",
               baselines={"torchdiffeq dopri5": "results/torchdiffeq_dopri5/max_err_t1"}),
    ],
    timeout_s={"cpu": 3600},
))

register(Benchmark(
    name="sde_speed", script="sde_speed.py", family="solvers", owner="F", kind="speed",
    dataset="diagonal-noise neural SDE, batch 256, state 32, 100 steps, forward + backward",
    description="SDE solvers vs a hand-written loop and torchsde in the same run",
    scales={"smoke": ["--scale", "0.0625", "--repeats", "1", "--fine", "2", "--skip-default-bm"], "cpu": [],
            "gpu": ["--device", "cuda", "--scale", "8"]},
    results={"smoke": ["sde_speed"], "cpu": ["sde_speed"], "gpu": ["sde_speed"]},
    metrics=[
        Metric("Euler-Maruyama (sdeint): time", "timings/sciflow_euler_maruyama/median_s", unit="s",
               baselines={"hand-written loop": "timings/hand_loop/median_s",
                          "torchsde euler (BrownianInterval)": "timings/torchsde_euler_interval/median_s"}),
        Metric("SRI (strong order 1.5): time", "timings/sciflow_sri/median_s", unit="s",
               baselines={"torchsde srk": "timings/torchsde_srk/median_s"}),
        Metric("SRI strong error (dt = 0.01)", "strong_errors_vs_fine_srk_reference/sciflow_sri_dt0.01",
               baselines={"torchsde srk": "strong_errors_vs_fine_srk_reference/torchsde_srk_dt0.01"}),
    ],
))

register(Benchmark(
    name="sde_adjoint", script="sde_adjoint.py", family="solvers", owner="previous session", kind="memory",
    dataset="neural SDE (MLP drift, diagonal MLP diffusion), batch 64, state 16, reversible Heun, 24..400 steps",
    description="gradients through an SDE solve: backprop through the steps vs the reversible Heun adjoint, "
                "sciflow vs torchsde on one Brownian path",
    scales={"smoke": ["--scale", "0.08", "--repeats", "1"], "cpu": [], "gpu": ["--device", "cuda"]},
    results={"smoke": ["sde_adjoint"], "cpu": ["sde_adjoint"], "gpu": ["sde_adjoint"]},
    metrics=[
        Metric("reversible adjoint: retained bytes at the most steps", "curve/sciflow_reversible/-1/retained_bytes",
               unit="B", baselines={"backprop through the steps": "curve/sciflow_direct/-1/retained_bytes",
                                    "torchsde reversible adjoint": "curve/torchsde_reversible/-1/retained_bytes"}),
        Metric("reversible adjoint: forward + backward time at the most steps",
               "curve/sciflow_reversible/-1/forward_backward_s", unit="s",
               baselines={"torchsde reversible adjoint": "curve/torchsde_reversible/-1/forward_backward_s",
                          "backprop through the steps": "curve/sciflow_direct/-1/forward_backward_s"}),
        Metric("reversible adjoint: max rel. gradient difference vs backprop",
               "curve/sciflow_reversible/-1/max_rel_grad_diff_vs_sciflow_direct",
               baselines={"torchsde reversible adjoint":
                          "curve/torchsde_reversible/-1/max_rel_grad_diff_vs_sciflow_direct"}),
    ],
))

register(Benchmark(
    name="sde_pi_gains", script="sde_pi_gains.py", family="solvers", owner="previous session", kind="accuracy",
    dataset="Ito GBM, 256 paths x 3 seeds, adaptive Milstein, tol 3e-2..3e-4",
    description="step-size controller gains for adaptive SDE solves: attempts for the same error, rejections",
    scales={"smoke": ["--paths", "16", "--seeds", "1"], "cpu": []},
    results={"smoke": ["sde_pi_gains"], "cpu": ["sde_pi_gains"]},
    metrics=[
        Metric("PI 0.1, 0.3 vs integral: attempts for the same error (one error norm)",
               "batch_norm/PI 0.1, 0.3 (diffrax's SDE suggestion)/work_ratio_vs_integral",
               baselines={"PI 0.2, 0.4": "batch_norm/PI 0.2, 0.4/work_ratio_vs_integral"}),
        Metric("PI 0.1, 0.3 vs integral: attempts for the same error (per sample)",
               "per_sample/PI 0.1, 0.3 (diffrax's SDE suggestion)/work_ratio_vs_integral",
               baselines={"PI 0.2, 0.4": "per_sample/PI 0.2, 0.4/work_ratio_vs_integral"}),
    ],
))

register(Benchmark(
    name="adjoint_memory", script="adjoint_memory.py", family="solvers", owner="previous session", kind="memory",
    dataset="MLP vector field 32-128-128-32, batch 64, RK4 on [0, 1], 25..400 steps",
    description="retained autograd memory: direct backprop vs backsolve adjoint vs checkpointing",
    scales={"smoke": ["--scale", "0.08"], "cpu": [], "gpu": ["--device", "cuda"]},
    results={"smoke": ["adjoint_memory"], "cpu": ["adjoint_memory"], "gpu": ["adjoint_memory"]},
    metrics=[
        Metric("backsolve adjoint: retained bytes at the most steps", "curve/backsolve/-1/retained_bytes", unit="B",
               baselines={"direct backprop": "curve/direct/-1/retained_bytes",
                          "checkpoint (16 segments)": "curve/checkpoint_16/-1/retained_bytes"}),
        Metric("backsolve adjoint: max rel. gradient difference vs direct",
               "curve/backsolve/-1/max_rel_grad_diff_vs_direct"),
        Metric("terminal events, checkpoint (16 segments): retained bytes at the most steps",
               "events/curve/checkpoint_16/-1/retained_bytes", unit="B",
               baselines={"direct backprop": "events/curve/direct/-1/retained_bytes"}),
        Metric("terminal events, checkpoint: max rel. gradient difference vs direct (float32)",
               "events/curve/checkpoint_16/-1/max_rel_grad_diff_vs_direct"),
    ],
))

register(Benchmark(
    name="wavelets", script="wavelets.py", family="layers", owner="previous session", kind="speed",
    dataset="DWT + inverse, 2-D 8x128x128 and 3-D 2x32x64x64, haar / bior2.4 / db4, zero / periodization",
    description="sciflow's batched torch DWT vs PyWavelets (and ptwt where installed)",
    scales={"smoke": ["--repeats", "1"], "cpu": [], "gpu": ["--device", "cuda", "--scale", "8"]},
    results={"smoke": ["wavelets"], "cpu": ["wavelets"], "gpu": ["wavelets"]},
    metrics=[
        Metric("forward + inverse, summed over the 12 cases: time", _sum_rows("sciflow_s"), unit="s",
               baselines={"PyWavelets": _sum_rows("pywt_s")}),
        Metric("max abs. difference to PyWavelets", lambda d: max(r["sciflow_max_err_vs_pywt"] for r in d["rows"])),
    ],
))

# -- data generation ---------------------------------------------------------------------------
register(Benchmark(
    name="burgers_generation", script="burgers_generation.py", family="data", owner="previous session", kind="speed",
    dataset="viscous Burgers, nu = 0.01/pi, burgers_shock.mat grid, target rel. L2 1e-4",
    description="sine-Galerkin ETDRK4 generator vs scipy solve_ivp (BDF, method of lines) at equal accuracy",
    scales={"smoke": ["--target", "1e-2", "--repeats", "1"], "cpu": []},
    results={"smoke": ["burgers_generation"], "cpu": ["burgers_generation"]},
    metrics=[
        Metric("time to reach the target accuracy", "sciflow_sine_galerkin_etdrk4/chosen/timing/median_s", unit="s",
               baselines={"scipy solve_ivp BDF (MOL)": "scipy_solve_ivp_mol_bdf/chosen/timing/median_s"}),
        Metric("rel. L2 vs Cole-Hopf exact", "sciflow_sine_galerkin_etdrk4/chosen/rel_l2",
               baselines={"scipy solve_ivp BDF (MOL)": "scipy_solve_ivp_mol_bdf/chosen/rel_l2"}),
    ],
))

register(Benchmark(
    name="ns_generation", script="ns_generation.py", family="data", owner="previous session", kind="speed",
    dataset="2-D Navier-Stokes vorticity, 64^2, nu = 1e-3, batch 32, 1000 steps of 1e-4 (FNO setting)",
    description="sciflow's pseudo-spectral CNAB2 generator vs the FNO data generator's algorithm",
    scales={"smoke": ["--batch", "2", "--steps", "20", "--repeats", "1"], "cpu": [],
            "gpu": ["--device", "cuda", "--scale", "4", "--batch", "64", "--steps", "200", "--repeats", "3"]},
    results={"smoke": ["ns_generation"], "cpu": ["ns_generation"], "gpu": ["ns_generation_256_cuda"]},
    metrics=[
        Metric("same dt: time", "same_dt/sciflow/median_s", unit="s",
               baselines={"FNO generator": "same_dt/fno/median_s"}),
        Metric("equal accuracy (larger stable dt): time", "equal_accuracy/sciflow/median_s", unit="s",
               baselines={"FNO generator": "same_dt/fno/median_s"}),
        Metric("same dt: rel. L2 vs fine reference", "same_dt/sciflow_rel_l2",
               baselines={"FNO generator": "same_dt/fno_rel_l2"}),
    ],
))

# -- causal PINNs -----------------------------------------------------------------------------
register(Benchmark(
    name="pinn_burgers", script="pinn_burgers.py", family="causal PINN", owner="H", kind="accuracy",
    dataset="viscous Burgers, nu = 0.01/pi (burgers_shock.mat)", seed_flag="--seed",
    description="causal PINN trained without data; rel. L2 vs the reference solution (median over seeds; "
                "L-BFGS finish on fresh points every 500 iterations, or on one fixed set)",
    scales={"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu", "--budget-min", "15", "--jobs", "2"],
            "gpu": ["--scale", "cpu", "--device", "cuda", "--budget-min", "2.5", "--seeds", "0",
                    "--variants", "resampled"]},
    results={"smoke": ["pinn_burgers_smoke"], "cpu": ["pinn_burgers_cpu"], "gpu": ["pinn_burgers_cpu"]},
    metrics=[Metric("rel. L2 error (median over seeds)", "rel_l2", anchor=Anchor(6.7e-4, _RAISSI),
                    baselines={"L-BFGS on one fixed point set (median)": "summary/fixed/rel_l2_median"}),
             Metric("rel. L2 error, worst seed", "rel_l2_max",
                    baselines={"L-BFGS on one fixed point set (worst seed)": "summary/fixed/rel_l2_max"}),
             Metric("training time (median)", "train_seconds", unit="s"),
             Metric("training CPU time (one thread, median)", "train_cpu_seconds", unit="s",
                    baselines={"L-BFGS on one fixed point set": "summary/fixed/train_cpu_seconds_median"})],
    timeout_s={"cpu": 7200},
))

register(Benchmark(
    name="pinn_allen_cahn", script="pinn_allen_cahn.py", family="causal PINN", owner="H", kind="accuracy",
    dataset="Allen-Cahn, eps = 1e-4 (allen_cahn.mat)", seed_flag="--seed",
    description="causal vs plain PINN with the same network, and the original PINN (plain MLP) with and without "
                "causal weights, same CPU budget (median over seeds)",
    scales={"smoke": ["--scale", "smoke"],
            "cpu": ["--scale", "cpu", "--budget-min", "30", "--seeds", "0", "1", "2", "--jobs", "2"],
            # the GPU check: the paper's network and points (jaxpi's AC config), causal, 3 wall minutes
            "gpu": ["--scale", "paper", "--only", "causal", "--device", "cuda", "--wall-limit-min", "3"]},
    results={"smoke": ["pinn_allen_cahn_smoke_both"],
             "cpu": ["pinn_allen_cahn_cpu_both", "pinn_allen_cahn_cpu_causal", "pinn_allen_cahn_cpu_plain",
                     "pinn_allen_cahn_cpu_raissi", "pinn_allen_cahn_cpu_causal_mlp",
                     "pinn_allen_cahn_cpu_raissi_balanced"],
             "gpu": ["pinn_allen_cahn_paper_causal"]},
    metrics=[Metric("rel. L2 error (median over seeds)", "causal/rel_l2", anchor=Anchor(5.37e-5, _JAXPI_AC),
                    baselines={"plain PINN, same network (same budget, median)": "plain/rel_l2",
                               "original PINN (Raissi: plain tanh MLP), same budget, median": "raissi/rel_l2",
                               "causal weights on the plain tanh MLP, same budget, median": "causal_mlp/rel_l2"}),
             Metric("rel. L2 error, worst seed", "causal/rel_l2_max",
                    baselines={"plain PINN, same network (worst seed)": "plain/rel_l2_max",
                               "original PINN (worst seed)": "raissi/rel_l2_max",
                               "causal weights on the plain tanh MLP (worst seed)": "causal_mlp/rel_l2_max"}),
             Metric("training CPU time (one thread, median)", "causal/train_cpu_seconds", unit="s",
                    baselines={"plain PINN (same budget)": "plain/train_cpu_seconds"})],
    timeout_s={"cpu": 4 * 3600},
))

for _problem, _label, _anchor, _budget in (
        ("kuramoto_sivashinsky", "Kuramoto-Sivashinsky (regular)", Anchor(3.49e-4, _CAUSAL), "8"),
        ("navier_stokes", "2-D Navier-Stokes (Taylor-Green)", None, "2"),
        ("lorenz63", "Lorenz-63 (time marching)", None, "8")):
    register(Benchmark(
        name=f"pinn_{_problem}", script="pinn_problems.py", family="causal PINN", owner="H", kind="accuracy",
        dataset=_label, description="causal PINN with time marching; rel. L2 vs the shared generators "
                                    f"(median over seeds, {_budget} CPU minutes each)",
        scales={"smoke": ["--problem", _problem, "--scale", "smoke"],
                "cpu": ["--problem", _problem, "--scale", "cpu", "--budget-min", _budget,
                        "--seeds", "0", "1", "2", "3", "4", "--jobs", "2"],
                # the GPU check: the CPU recipe on the GPU, 2.5 minutes (process time ~ wall there)
                "gpu": ["--problem", _problem, "--scale", "cpu", "--device", "cuda", "--budget-min", "2.5"]},
        results={"smoke": [f"pinn_{_problem}_smoke"], "cpu": [f"pinn_{_problem}_cpu"],
                 "gpu": [f"pinn_{_problem}_cpu"]},
        metrics=[Metric("rel. L2 error (median over seeds)", "rel_l2", anchor=_anchor),
                 Metric("rel. L2 error, worst seed", "rel_l2_max"),
                 Metric("training CPU time (one thread, median)", "train_cpu_seconds", unit="s")],
        timeout_s={"cpu": 3 * 3600},
    ))

register(Benchmark(
    name="pinn_throughput", script="pinn_throughput.py", family="causal PINN", owner="H", kind="speed",
    dataset="Burgers residual, 4x128 tanh MLP, Adam, 1024 collocation points",
    description="training steps per second: sciflow derivative engines (fused Adam; compiled Taylor mode) vs plain "
                "autograd and DeepXDE",
    scales={"smoke": ["--n-domain", "128", "--steps", "2", "--rounds", "1"],
            "cpu": ["--compile", "--all", "--rounds", "5"]},
    results={"smoke": ["pinn_throughput_128"], "cpu": ["pinn_throughput_1024"]},
    metrics=[Metric("Taylor-mode engine: steps/s", "steps_per_s_median/sciflow_taylor", unit="1/s", better="higher",
                    baselines={"plain autograd": "steps_per_s_median/plain_autograd",
                               "DeepXDE": "steps_per_s_median/deepxde"}),
             Metric("Taylor-mode engine, compiled: steps/s", "steps_per_s_median/sciflow_taylor_compiled",
                    unit="1/s", better="higher", baselines={"DeepXDE": "steps_per_s_median/deepxde"})],
))

# -- uncertainty ------------------------------------------------------------------------------
_UQ_METHODS = {"single network": "single", "MC dropout": "mc_dropout", "last-layer Laplace": "laplace",
               "SWAG": "swag", "MultiSWAG": "multiswag", "HMC": "hmc", "HMC, measurement noise": "hmc_known_noise",
               "conformal (single)": "conformal_single"}
for _ds, _label in (("burgers", "Burgers (nu = 0.05, 32 points, u0 -> u(0.5)) with 5 % noise"),
                    ("navier_stokes", "2-D Navier-Stokes vorticity 16^2, w0 -> w(1), 5 % noise")):
    register(Benchmark(
        name=f"uq_comparison_{_ds}" if _ds != "burgers" else "uq_comparison", script="uq_comparison.py",
        family="uncertainty", owner="previous session", kind="accuracy", dataset=_label,
        description="UQ methods on the same operator-learning task: CRPS and 90 % interval coverage",
        scales={"smoke": ["--scale", "0.02", "--navier-stokes"], "cpu": ["--navier-stokes"]},
        results={"smoke": ["uq_comparison"], "cpu": ["uq_comparison"]},
        metrics=[Metric("deep ensemble: CRPS", f"{_ds}/deep_ensemble/crps",
                        baselines={k: f"{_ds}/{v}/crps" for k, v in _UQ_METHODS.items() if "conformal" not in k}),
                 Metric("conformal ensemble: 90 % coverage", f"{_ds}/conformal_ensemble/coverage", better="higher",
                        baselines={k: f"{_ds}/{v}/coverage" for k, v in _UQ_METHODS.items()},
                        note="nominal 0.9; closer to 0.9 from above is better"),
                 Metric("HMC: function-space split-R-hat (median over test outputs)",
                        f"{_ds}/hmc/function_diagnostics/median_rhat",
                        baselines={"weight space (median)": f"{_ds}/hmc/diagnostics/median_rhat"},
                        note="Vehtari et al. 2021, rank-normalised; below 1.05 = the chains agree on the predictions")],
    ))

# -- stable neural SDEs ----------------------------------------------------------------------
register(Benchmark(
    name="stable_sde_speed", script="stable_sde_speed.py", family="stable neural SDE", owner="A", kind="speed",
    dataset="one training epoch, BasicMotions shape (80 x 100 x 6), 50 % missing",
    description="sciflow's SDE solver vs the same model through torchsde.sdeint (the official code's path)",
    scales={"smoke": ["--repeats", "1", "--kinds", "lnsde", "--name", "stable_sde_speed_smoke"], "cpu": [],
            "gpu": ["--device", "cuda", "--name", "stable_sde_speed_gpu"]},
    results={"smoke": ["stable_sde_speed_smoke"], "cpu": ["stable_sde_speed"], "gpu": ["stable_sde_speed_gpu"]},
    metrics=[Metric(f"{k.upper()} epoch: time", f"results/{k}/sciflow_epoch_s/median", unit="s",
                    baselines={"torchsde.sdeint": f"results/{k}/torchsde_epoch_s/median"})
             for k in ("lsde", "lnsde", "gsde")],
))

_UEA_SMOKE = ["--datasets", "BasicMotions", "--models", "lnsde", "--rates", "0.5", "--seeds", "1", "--epochs", "1",
              "--no-speed", "--name", "stable_sde_uea_smoke"]
register(Benchmark(
    name="stable_sde_uea", script="stable_sde_uea.py", family="stable neural SDE", owner="B", kind="accuracy",
    dataset="UEA BasicMotions, JapaneseVowels, UCR GunPoint, ArrowHead, ItalyPowerDemand; 0/30/50/70 % of the "
            "values missing (Kidger et al. 2020 protocol); metrics at 50 %",
    description="test accuracy of LSDE / LNSDE / GSDE vs neural CDE and a naive neural SDE "
                "(5 seeds per dataset; up to 30 epochs, ArrowHead 20, early stopping)",
    scales={"smoke": _UEA_SMOKE, "cpu": ["--scale", "trained"]},  # ≈ 3 CPU-hours in one process: see the script
    results={"smoke": ["stable_sde_uea_smoke"], "cpu": ["stable_sde_uea"]},
    timeout_s={"cpu": 4 * 3600},
    metrics=[Metric(f"{ds}: {k.upper()} accuracy", f"table/{ds}/{k}/0.5/mean", better="higher",
                    baselines={"neural CDE": f"table/{ds}/neural_cde/0.5/mean",
                               "naive neural SDE": f"table/{ds}/neural_sde/0.5/mean"})
             for ds in ("BasicMotions", "JapaneseVowels", "GunPoint", "ArrowHead", "ItalyPowerDemand")
             for k in ("lsde", "lnsde", "gsde")],
))

for _task in ("forecasting", "interpolation"):
    _name = "stable_sde_lorenz" + ("" if _task == "forecasting" else "_interpolation")
    register(Benchmark(
        name=_name, script="stable_sde_lorenz.py", family="stable neural SDE", owner="B", kind="accuracy",
        dataset=f"irregular Lorenz-63 {_task}, 50 % missing",
        description="CRPS, 90 % coverage and Gaussian NLL of the SDE predictive distribution vs neural ODE / CDE "
                    "+ split conformal (0/30/50/70 % missing, 5 seeds)",
        scales={"smoke": ["--task", _task, "--models", "lnsde", "neural_ode", "--rates", "0.5", "--seeds", "1",
                          "--epochs", "1", "--name", f"{_name}_smoke"],
                "cpu": ["--scale", "default", "--task", _task]},
        results={"smoke": [f"{_name}_smoke"], "cpu": [_name]},
        metrics=[Metric("LNSDE CRPS", "table/0.5/lnsde/sampled/crps/mean",
                        baselines={"LSDE": "table/0.5/lsde/sampled/crps/mean",
                                   "GSDE": "table/0.5/gsde/sampled/crps/mean",
                                   "neural ODE + conformal": "table/0.5/neural_ode/conformal/crps/mean",
                                   "neural CDE + conformal": "table/0.5/neural_cde/conformal/crps/mean"}),
                 Metric("LNSDE 90 % coverage", "table/0.5/lnsde/sampled/coverage/mean", better="higher",
                        note="nominal 0.9",
                        baselines={"neural ODE + conformal": "table/0.5/neural_ode/conformal/coverage/mean",
                                   "neural CDE + conformal": "table/0.5/neural_cde/conformal/coverage/mean"}),
                 Metric("LNSDE Gaussian NLL", "table/0.5/lnsde/sampled/nll/mean",
                        baselines={"neural ODE + conformal": "table/0.5/neural_ode/conformal/nll/mean",
                                   "neural CDE + conformal": "table/0.5/neural_cde/conformal/nll/mean"})],
    ))

# -- Langevin latent flows -------------------------------------------------------------------
register(Benchmark(
    name="langevin_flow_lorenz", script="langevin_flow_lorenz.py", family="Langevin flow", owner="E",
    kind="accuracy", dataset="Lorenz-driven Poisson spiking, 30 neurons (held-out neurons)",
    description="co-smoothing bits/spike and rate R^2 vs a GRU sequential VAE and a latent ODE",
    scales={"smoke": ["--steps", "4", "--seeds", "1", "--no-figures", "--speed-repeats", "0"], "cpu": [],
            "gpu": ["--steps", "100", "--seeds", "1"]},
    results={"smoke": ["langevin_flow_lorenz"], "cpu": ["langevin_flow_lorenz"], "gpu": ["langevin_flow_lorenz"]},
    metrics=[Metric("co-smoothing bits/spike", "metrics/langevin_flow/co_bps/mean", unit="bits/spike",
                    better="higher",
                    baselines={"GRU sequential VAE": "metrics/gru_svae/co_bps/mean",
                               "latent ODE": "metrics/latent_ode/co_bps/mean",
                               "true rates (ceiling)": "metrics/langevin_flow/true_rates_co_bps/mean"}),
             Metric("rate R^2", "metrics/langevin_flow/rate_r2/mean", better="higher",
                    baselines={"GRU sequential VAE": "metrics/gru_svae/rate_r2/mean",
                               "latent ODE": "metrics/latent_ode/rate_r2/mean"}),
             Metric("epoch time, closed-form force", "epoch_timing/closed_form/median_s", unit="s",
                    baselines={"autograd force": "epoch_timing/autograd_naive/median_s"})],
))

register(Benchmark(
    name="langevin_flow_lorenz63_gaussian", script="langevin_flow_lorenz.py", family="Langevin flow", owner="E",
    kind="accuracy", dataset="Lorenz-63 with Gaussian observation noise (forecast)",
    description="forecast CRPS and 90 % coverage vs a GRU sequential VAE, a latent ODE and climatology",
    scales={"smoke": ["--task", "gaussian", "--steps", "4", "--seeds", "1"], "cpu": ["--task", "gaussian"],
            "gpu": ["--task", "gaussian", "--steps", "100", "--seeds", "1"]},
    results={s: ["langevin_flow_lorenz63_gaussian"] for s in SCALES},
    metrics=[Metric("forecast CRPS (noisy observations)", "metrics/langevin_flow/obs_crps/mean",
                    baselines={"GRU sequential VAE": "metrics/gru_svae/obs_crps/mean",
                               "latent ODE": "metrics/latent_ode/obs_crps/mean",
                               "climatology": "metrics/climatology/obs_crps/mean"}),
             Metric("90 % coverage (noisy observations)", "metrics/langevin_flow/obs_coverage90/mean", better="higher",
                    baselines={"GRU sequential VAE": "metrics/gru_svae/obs_coverage90/mean",
                               "latent ODE": "metrics/latent_ode/obs_coverage90/mean",
                               "climatology": "metrics/climatology/obs_coverage90/mean"}, note="nominal 0.9")]))

# -- meta flow matching ----------------------------------------------------------------------
# (name, script, what it runs, extra arguments of its cpu scale)
for _name, _script, _label, _cpu in (
        ("mfm_letters", "mfm_letters.py", "synthetic letters, held-out letter populations", []),
        ("mfm_letters_scale4", "mfm_letters.py", "synthetic letters, held-out letter populations: "
         "4x training steps, 2x field width, two seeds (does the gap to FM grow with compute?)",
         ["--scale", "4", "--seeds", "0", "1"]),
        ("mfm_aggregation", "mfm_aggregation.py", "particle aggregation, held-out initial populations", [])):
    register(Benchmark(
        name=_name, script=_script, family="meta flow matching", owner="A", kind="accuracy",
        dataset=_label, description="MFM vs flow matching (FM) and population-id conditioned FM (CGFM)",
        scales={"smoke": ["--smoke", "--scale", "0.01", "--seeds", "0", "--name", _name],
                "cpu": _cpu + ["--name", _name]},
        results={s: [_name] for s in ("smoke", "cpu")},
        metrics=[Metric("test W2", _mean_seeds("MFM", "W2"),
                        baselines={"FM": _mean_seeds("FM", "W2"), "CGFM": _mean_seeds("CGFM", "W2"),
                                   "identity (no transport)": "results/identity_baseline/test/W2",
                                   "oracle (second true sample)": "results/oracle/test/W2"}),
                 Metric("test W2: fraction of identity-to-oracle gap closed", "results/MFM/test_gap_closed/W2/mean",
                        better="higher", baselines={"FM": "results/FM/test_gap_closed/W2/mean",
                                                    "CGFM": "results/CGFM/test_gap_closed/W2/mean"}),
                 Metric("test energy distance", _mean_seeds("MFM", "energy"),
                        baselines={"FM": _mean_seeds("FM", "energy"), "CGFM": _mean_seeds("CGFM", "energy"),
                                   "oracle (second true sample)": "results/oracle/test/energy"})],
    ))

register(Benchmark(
    name="mfm_speed", script="mfm_speed.py", family="meta flow matching", owner="A", kind="speed",
    dataset="sampling 1000 points; GNN population embedding for 256..50000 points",
    description="adaptive vs fixed-step sampling cost and the k-NN embedding's scaling",
    scales={"smoke": ["--scale", "0.0625"], "cpu": [], "gpu": ["--scale", "4", "--device", "cuda"]},
    results={s: ["mfm_speed"] for s in SCALES},
    metrics=[Metric("dopri5 (rtol 1e-4) sampling: time", "sampling_1000_points/dopri5 rtol=1e-4/median_s", unit="s",
                    baselines={"Euler, 100 steps": "sampling_1000_points/euler nfe=100/median_s",
                               "RK4, 20 steps": "sampling_1000_points/rk4 nfe=20/median_s"}),
             Metric("dopri5 (rtol 1e-4) sampling: max abs. error",
                    "sampling_1000_points/dopri5 rtol=1e-4/max_abs_err_vs_ref",
                    baselines={"Euler, 100 steps": "sampling_1000_points/euler nfe=100/max_abs_err_vs_ref"}),
             Metric("embedding of the largest population: peak extra memory",
                    lambda d: max(d["embedding_vs_population_size"].items(),
                                  key=lambda kv: int(kv[0]))[1]["peak_extra_mib"],
                    unit="MiB", baselines={"dense float64 n x n distance matrix": lambda d: max(
                        d["embedding_vs_population_size"].items(),
                        key=lambda kv: int(kv[0]))[1]["dense_float64_n2_mib"]})],
))


# -- wavelet diffusion: the control part of wdno_burgers.py, run alone -------------------------
register(Benchmark(
    name="wdno_burgers_control", script="wdno_burgers.py", family="wavelet diffusion", owner="H1",
    kind="accuracy", seed_flag="--seed",
    dataset="forced Burgers control, nu = 0.01: reach u_T from u_0 with least forcing energy (lambda = 0.01)",
    description="WDNO-generated forcing, re-simulated by the solver: guidance through a differentiable solver "
                "vs the paper's objective on the generated state, unguided sampling and gradient descent on f",
    scales={"smoke": ["--scale", "smoke", "--only", "control"], "cpu": ["--scale", "cpu", "--only", "control"]},
    results={"smoke": ["wdno_burgers_control_smoke"], "cpu": ["wdno_burgers_control"]},
    metrics=[Metric("control J (solver-evaluated), re-simulated guidance", "results/control/wdno_guided/J",
                    baselines={"unguided": "results/control/wdno_unguided/J",
                               "paper's objective (generated state)": "results/control/wdno_guided_paper_objective/J",
                               "gradient descent on f (no model)": "results/control/adjoint_descent/J",
                               "zero forcing": "results/control/zero_forcing/J",
                               "data forcing": "results/control/data_forcing/J"})],
))

# -- training -------------------------------------------------------------------------------
register(Benchmark(
    name="ddp_scaling", script="ddp_scaling.py", family="training", owner="G", kind="accuracy",
    dataset="neural ODE on Lorenz-63 windows, global batch 64, torchrun --nproc_per_node=2 (gloo)",
    description="DDP through sciflow.training.fit: the loss curve of 2 processes vs 1, and scaling efficiency",
    scales={"smoke": ["--steps", "4", "--n-traj", "6", "--n-time", "31", "--width", "16", "--batch", "16"],
            "cpu": []},
    results={"smoke": ["ddp_scaling"], "cpu": ["ddp_scaling"]},
    metrics=[Metric("largest abs. difference of the per-step val loss, 2 processes vs 1", "max_abs_val_loss_diff"),
             Metric("scaling efficiency T1 / (2 T2)", "scaling_efficiency", better="higher",
                    note="1 = perfect; the 2-core CPU machine is shared")],
))

# ------------------------------------------------------------------------------ discovery


def _declared(path: Path) -> dict[str, Any] | None:
    """The literal ``BENCHMARK = {...}`` of a script, or ``None``."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BENCHMARK" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as e:
                raise ValueError(f"{path.name}: BENCHMARK must be a literal dict ({e})") from None
    return None


def from_declaration(script: str, spec: Mapping[str, Any]) -> Benchmark:
    """A :class:`Benchmark` from a script's ``BENCHMARK`` literal."""
    spec = dict(spec)
    metrics = []
    for m in spec.pop("metrics", []):
        m = dict(m)
        a = m.pop("anchor", None)
        metrics.append(Metric(**m, anchor=Anchor(**a) if a else None))
    spec.setdefault("script", script)
    spec.setdefault("name", Path(script).stem)
    spec["results"] = {k: list(v) if not isinstance(v, str) else [v] for k, v in spec["results"].items()}
    try:
        return Benchmark(**spec, metrics=metrics)
    except TypeError as e:
        raise ValueError(f"{script}: BENCHMARK declaration: {e}") from None


def discover() -> dict[str, Benchmark]:
    """The registry plus every script's own ``BENCHMARK`` declaration (registry entries win)."""
    found = dict(REGISTRY)
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.name.startswith("_") or path.name in ("run.py", "report.py", "registry.py"):
            continue
        spec = _declared(path)
        if spec is not None:
            b = from_declaration(path.name, spec)
            found.setdefault(b.name, b)
    return found


def unregistered_scripts(benchmarks: Mapping[str, Benchmark] | None = None) -> list[str]:
    """Benchmark scripts in ``benchmarks/`` that no entry runs (candidates for registration)."""
    benchmarks = benchmarks if benchmarks is not None else discover()
    used = {b.script for b in benchmarks.values()}
    return [p.name for p in sorted(BENCH_DIR.glob("*.py"))
            if not p.name.startswith("_") and p.name not in used
            and p.name not in ("run.py", "report.py", "registry.py")]
