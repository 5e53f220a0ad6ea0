"""HMC / NUTS sampling efficiency with Stan's diagonal and dense mass matrices and the Fisher-divergence
diagonal and low-rank ones (Seyboldt, Carlson & Carpenter 2026), against an exact posterior.

Target: Bayesian multi-output linear regression ``y = W x + b + noise`` (``d`` inputs and outputs,
``D = d^2 + d`` weights; prior N(0, 1), noise sigma known) whose ``d`` inputs share one factor
(correlation ``rho``, offset 1), so every row of ``(W, b)`` has the same strongly correlated
Gaussian posterior (condition number in the hundreds) in closed form. Each sampler runs the same
warm-up and draws (Stan's windowed adaptation, ``sciflow.uq.hmc``), one torch thread. Three settings:
``d = 4, 8`` with a long warm-up (1000: the last slow window has 500 draws, more than the D = 20, 72
weights), ``short`` (d = 16, D = 272, warm-up 300: every window has fewer draws than weights) and NUTS
at d = 4; and ``bnn``: the Burgers network of ``uq_comparison.py`` (MLP 32-16-32, D = 1072, started at its
Adam fit, noise = its validation residual; no exact posterior), where function-space split-R-hat and ESS
of the predictions at 64 test inputs (``HMC.function_diagnostics``) are the ones to read. Recorded per
run: the minimum bulk and tail ESS over the weights (Vehtari et al. 2021) per 1000 gradient
evaluations (all chains), the largest split-R-hat, the largest error of the posterior means (in
posterior standard deviations) and of the posterior standard deviations (relative), step size,
acceptance, CPU seconds and, for NUTS, the mean tree depth. A linear model has no weight-space
symmetries, so weight-space R-hat and ESS are the ones to read here.

    python benchmarks/hmc_mass.py [--scale smoke|cpu] [--step-jitter J] [--length-jitter L]

With ``--step-jitter`` or ``--length-jitter`` (HMC's post-warm-up step-size and trajectory-length
jitter; default the library's) only the HMC runs on the linear posteriors, into
``hmc_mass_jitter<J>_length<L>.json``. Gradient counts take every transition at ``n_leapfrog``
steps (the mean of a jittered length).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from torch import nn

from _common import write_result
from sciflow.data.batches import TrajectoryBatch
from sciflow.uq import HMC, NUTS, GaussianLikelihood, GaussianPrior, PointForecaster

BENCHMARK = {
    "name": "hmc_mass", "script": "hmc_mass.py", "family": "uncertainty", "owner": "previous session",
    "kind": "speed",
    "dataset": "Bayesian linear regression on inputs sharing one factor (rho = 0.99), exact Gaussian posterior",
    "description": "HMC effective samples per gradient with Stan's diagonal/dense and the Fisher-divergence "
                   "diagonal/low-rank adapted mass matrices",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": ["hmc_mass_smoke"], "cpu": ["hmc_mass"]},
    "metrics": [
        {"label": "HMC, low-rank Fisher mass, D = 272 after 300 warm-up: min tail ESS per 1000 gradients",
         "better": "higher", "path": "runs/short/hmc_low_rank/ess_tail_per_1000_grads",
         "baselines": {"dense mass": "runs/short/hmc_dense/ess_tail_per_1000_grads",
                       "diagonal mass": "runs/short/hmc_diag/ess_tail_per_1000_grads",
                       "Fisher diagonal": "runs/short/hmc_fisher_diag/ess_tail_per_1000_grads"}},
        {"label": "HMC, low-rank Fisher mass, D = 272 after 300 warm-up: max split-R-hat",
         "path": "runs/short/hmc_low_rank/max_rhat",
         "baselines": {"dense mass": "runs/short/hmc_dense/max_rhat", "diagonal mass": "runs/short/hmc_diag/max_rhat"},
         "note": "below 1.01-1.05 = converged"},
        {"label": "HMC, low-rank Fisher mass, D = 72: min tail ESS per 1000 gradients", "better": "higher",
         "path": "runs/d8/hmc_low_rank/ess_tail_per_1000_grads",
         "baselines": {"dense mass": "runs/d8/hmc_dense/ess_tail_per_1000_grads",
                       "diagonal mass": "runs/d8/hmc_diag/ess_tail_per_1000_grads"}},
        {"label": "HMC, dense mass, D = 72: min tail ESS per 1000 gradients", "better": "higher",
         "path": "runs/d8/hmc_dense/ess_tail_per_1000_grads",
         "baselines": {"diagonal mass": "runs/d8/hmc_diag/ess_tail_per_1000_grads"}},
        {"label": "HMC, dense mass, D = 72: max split-R-hat",
         "path": "runs/d8/hmc_dense/max_rhat", "baselines": {"diagonal mass": "runs/d8/hmc_diag/max_rhat"},
         "note": "below 1.01-1.05 = converged"},
        {"label": "HMC on the Burgers network (D = 1072), low-rank Fisher mass: median function-space split-R-hat",
         "path": "runs/bnn/hmc_low_rank/function_median_rhat",
         "baselines": {"diagonal mass": "runs/bnn/hmc_diag/function_median_rhat",
                       "Fisher diagonal": "runs/bnn/hmc_fisher_diag/function_median_rhat"},
         "note": "multimodal posterior: none of them has mixed (below 1.01-1.05)"},
        {"label": "NUTS, low-rank Fisher mass, D = 20: gradients per transition",
         "path": "runs/d4/nuts_low_rank/grads_per_transition",
         "baselines": {"dense mass": "runs/d4/nuts_dense/grads_per_transition",
                       "diagonal mass": "runs/d4/nuts_diag/grads_per_transition",
                       "Fisher diagonal": "runs/d4/nuts_fisher_diag/grads_per_transition"}},
    ],
}

MASSES = ("diag", "dense", "fisher_diag", "low_rank")
# d values, HMC (chains, warm-up, draws, leapfrog), the short warm-up (d, chains, warm-up, draws, leapfrog) or
# None, NUTS (chains, warm-up, draws, max depth) or None, the Burgers network (chains, warm-up, draws, leapfrog) or None
SCALES = {
    "smoke": {"dims": [4], "hmc": (2, 60, 20, 4), "short": None, "nuts": None, "bnn": None},
    "cpu": {"dims": [4, 8], "hmc": (4, 1000, 500, 8), "short": (16, 4, 300, 500, 8), "nuts": (2, 300, 200, 8),
            "bnn": (4, 1000, 1000, 20)},
}


def problem(d: int, n: int = 200, rho: float = 0.99, sigma: float = 0.5, seed: int = 0):
    """Data batch, exact posterior mean and sd of the flat weights (``nn.Linear`` order: ``W`` row by
    row, then ``b``), and the condition number of one row's posterior covariance."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64)
    X = rho**0.5 * z + (1 - rho) ** 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0
    Wb = torch.randn(d, d + 1, generator=g, dtype=torch.float64)
    Phi = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    Y = Phi @ Wb.T + sigma * torch.randn(n, d, generator=g, dtype=torch.float64)
    C = torch.linalg.inv(Phi.T @ Phi / sigma**2 + torch.eye(d + 1, dtype=torch.float64))
    M = (C @ Phi.T @ Y / sigma**2).T  # (d outputs, d + 1)
    mean = torch.cat([M[:, :d].reshape(-1), M[:, d]])
    sd_row = C.diagonal().sqrt()
    sd = torch.cat([sd_row[:d].repeat(d), sd_row[d].expand(d)])
    batch = TrajectoryBatch(torch.stack([X, Y], 1), torch.tensor([0.0, 1.0], dtype=torch.float64))
    return batch, mean, sd, float(torch.linalg.cond(C))


def run_one(sampler: str, mass: str, d: int, sizes, seed: int = 0, step_jitter: float | None = None,
            length_jitter: float | None = None) -> dict:
    batch, mean, sd, _ = problem(d)
    torch.manual_seed(seed)
    model = PointForecaster(nn.Linear(d, d)).double()
    cls = NUTS if sampler == "nuts" else HMC
    hmc = cls(model, GaussianPrior(1.0), GaussianLikelihood(0.5), [batch])
    chains, warmup, draws, extra = sizes
    kw = {"max_tree_depth": extra} if sampler == "nuts" else {"n_leapfrog": extra}
    if step_jitter is not None and sampler == "hmc":
        kw["step_jitter"] = step_jitter
    if length_jitter is not None and sampler == "hmc":
        kw["length_jitter"] = length_jitter
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NUTS depth-limit hits are recorded below
        res = hmc.run(n_samples=draws, n_warmup=warmup, n_chains=chains, mass_matrix=mass,
                      generator=torch.Generator().manual_seed(seed), **kw)
    cpu_s = time.process_time() - c0
    transitions = chains * (warmup + draws)
    if sampler == "nuts":  # a tree of depth j takes 2^j - 1 leapfrog steps, one gradient each
        grads = sum(2**j - 1 for j in hmc.tree_depths)
    else:
        grads = transitions * extra
    flat = res.samples.reshape(-1, res.samples.shape[-1])
    out = {"D": int(flat.shape[-1]), "chains": chains, "warmup": warmup, "draws": draws,
           "gradient_evals": int(grads), "grads_per_transition": grads / transitions,
           "ess_bulk_min": float(res.ess_bulk.min()), "ess_tail_min": float(res.ess_tail.min()),
           "ess_bulk_per_1000_grads": 1000 * float(res.ess_bulk.min()) / grads,
           "ess_tail_per_1000_grads": 1000 * float(res.ess_tail.min()) / grads,
           "max_rhat": float(res.rhat.max()),
           "max_mean_error_sd": float(((flat.mean(0) - mean).abs() / sd).max()),
           "max_sd_rel_error": float((flat.std(0) / sd - 1).abs().max()),
           "step_size": float(res.step_size.mean()), "accept_rate": float(res.accept_rate.mean()),
           "divergences": int(res.divergences.sum()), "cpu_s": cpu_s}
    if sampler == "nuts":
        out["mean_tree_depth"] = sum(hmc.tree_depths) / len(hmc.tree_depths)
        out["max_depth_fraction"] = hmc.max_depth_fraction
    print(f"d={d} {sampler}/{mass}: ESS tail/1000 grads {out['ess_tail_per_1000_grads']:.1f}, "
          f"R-hat {out['max_rhat']:.3f}, sd error {out['max_sd_rel_error']:.2f}, {cpu_s:.1f} cpu-s", flush=True)
    return out


def run_bnn(mass: str, sizes, seed: int = 0) -> dict:
    """HMC on the Burgers network of ``uq_comparison.py``: function-space diagnostics and CRPS."""
    from sciflow.uq import score_prediction
    from uq_comparison import burgers_data, hmc_network, split

    data, _ = burgers_data(128 + 64 + 256, 32, 0.05, seed=0)
    tr, va, te = split(data, 128, 64)
    net, noise = hmc_network(tr, va, 32, width=16, steps=1500, lr=3e-3)
    chains, warmup, draws, leapfrog = sizes
    hmc = HMC(net, GaussianPrior(1.0), GaussianLikelihood(noise), [tr], alpha=0.1)
    c0 = time.process_time()
    res = hmc.run(n_samples=draws, n_warmup=warmup, n_chains=chains, n_leapfrog=leapfrog, init_jitter=0.0,
                  mass_matrix=mass, generator=torch.Generator().manual_seed(seed))
    cpu_s = time.process_time() - c0
    grads = chains * (warmup + draws) * leapfrog
    f = hmc.function_diagnostics(te.index(slice(0, 64))).summary()
    scores = score_prediction(hmc.predict(te, generator=torch.Generator().manual_seed(1), max_draws=400),
                              te.values[:, 1:])
    out = {"D": hmc.dim, "chains": chains, "warmup": warmup, "draws": draws, "gradient_evals": grads,
           "function_median_rhat": f["median_rhat"], "function_max_rhat": f["max_rhat"],
           "function_median_ess_bulk": f["median_ess_bulk"], "function_min_ess_tail": f["min_ess_tail"],
           "function_median_ess_bulk_per_1000_grads": 1000 * f["median_ess_bulk"] / grads,
           "rhat_log_prob": res.summary()["rhat_log_prob"], "crps": scores["crps"], "coverage": scores["coverage"],
           "step_size": float(res.step_size.mean()), "accept_rate": float(res.accept_rate.mean()),
           "divergences": int(res.divergences.sum()), "cpu_s": cpu_s}
    print(f"bnn {mass}: function R-hat median {out['function_median_rhat']:.3f}, median bulk ESS "
          f"{out['function_median_ess_bulk']:.0f}, step {out['step_size']:.4f}, {cpu_s:.1f} cpu-s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--step-jitter", type=float, default=None,
                    help="HMC step-size jitter (default: the library's); results then go to hmc_mass_jitter<J>.json")
    ap.add_argument("--length-jitter", type=float, default=None,
                    help="HMC trajectory-length jitter (fraction of n_leapfrog; default: the library's); results "
                         "then go to hmc_mass[_jitter<J>]_length<L>.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = SCALES[args.scale]
    name = "hmc_mass" + ("_smoke" if args.scale == "smoke" else "")
    if args.step_jitter is not None or args.length_jitter is not None:  # a jitter study: the HMC runs only
        cfg = {**cfg, "nuts": None, "bnn": None}
        name += f"_jitter{args.step_jitter:g}" if args.step_jitter is not None else ""
        name += f"_length{args.length_jitter:g}" if args.length_jitter is not None else ""
    runs, posteriors = {}, {}
    for d in cfg["dims"]:
        _, _, _, cond = problem(d)
        posteriors[f"d{d}"] = {"D": d * d + d, "row_covariance_condition_number": cond}
        runs[f"d{d}"] = {f"hmc_{m}": run_one("hmc", m, d, cfg["hmc"], step_jitter=args.step_jitter,
                                                 length_jitter=args.length_jitter) for m in MASSES}
        if cfg["nuts"] is not None and d == min(cfg["dims"]):
            runs[f"d{d}"] |= {f"nuts_{m}": run_one("nuts", m, d, cfg["nuts"]) for m in MASSES}
    if cfg["short"] is not None:
        d, *sizes = cfg["short"]
        _, _, _, cond = problem(d)
        posteriors["short"] = {"D": d * d + d, "row_covariance_condition_number": cond}
        runs["short"] = {f"hmc_{m}": run_one("hmc", m, d, sizes, step_jitter=args.step_jitter,
                                             length_jitter=args.length_jitter) for m in MASSES}
    if cfg["bnn"] is not None:
        runs["bnn"] = {f"hmc_{m}": run_bnn(m, cfg["bnn"]) for m in ("diag", "fisher_diag", "low_rank")}
    assert all(math.isfinite(r.get("max_rhat", r.get("function_median_rhat")))
               for v in runs.values() for r in v.values())
    write_result(name, {"scale": args.scale, "step_jitter": args.step_jitter, "length_jitter": args.length_jitter,
                        "sizes": cfg, "posterior": posteriors, "runs": runs})


if __name__ == "__main__":
    main()
