"""Allen–Cahn: causal PINN vs plain PINN with the same budget (same points, steps, optimiser),
relative L2 vs ``allen_cahn.mat``; writes plots. ``--scale cpu`` (default) is sized for one CPU
core; ``--scale paper`` is the GPU configuration of the paper / jaxpi (modified MLP 4 x 256,
periodic + Fourier embeddings, RWF, N_t = 32, eps = 1, 3e5 Adam steps).

Runs (``--only``; ``both`` = ``causal`` then ``plain``):

- ``causal``: the scale's network (modified MLP, exact periodic embedding, Fourier features,
  gradient-norm balancing) with causal weights.
- ``plain``: the same network and loss balancing, causal weights off (isolates the weights on a
  strong network).
- ``raissi``: the "original formulation of Raissi et al." row of Wang, Sankaran & Perdikaris
  (2022), Table 1: a plain tanh MLP on raw ``(t, x)`` (no periodic embedding, no Fourier
  features), periodicity as soft loss terms ``u(t,-1) = u(t,1)``, ``u_x(t,-1) = u_x(t,1)``,
  ``L = L_ic + L_bc + mean r^2`` with unit weights (no balancing), same optimiser, points and
  budget as the others. Deviation: Raissi et al. rescale inputs to ``[-1, 1]``; here ``t`` enters
  raw on ``[0, 1]``.
- ``causal_mlp``: the ``raissi`` network and loss with causal weights on (isolates the weights
  from the network).
- ``raissi_balanced``: the ``raissi`` network and loss with the scale's gradient-norm loss
  balancing on, causal weights off (isolates the balancing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, git_sha, keep_median_figures, median_run, seed_summary, write_result  # noqa: E402

from sciflow.models.causal_pinn import CausalPINN, Config, train  # noqa: E402
from sciflow.models.causal_pinn.evaluate import GridReference, evaluate, predict_grid, reference  # noqa: E402
from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution  # noqa: E402

SCALES = {
    "smoke": Config(problem="allen_cahn", architecture="modified_mlp", width=32, depth=2, steps=100,
                    n_interior=512, n_chunks=16, n_initial=128, check_every=50),
    "test": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=3, steps=1500,
                   n_interior=1024, n_chunks=32, n_initial=256, n_harmonics=2, lr=2e-3,
                   decay_steps=1000, check_every=100, epsilon=10.0, lambda_ic=100.0, balance=False),
    # chosen by a 150-CPU-s pilot (2026-11-27): periodic embedding + 64 Fourier features of scale
    # 2 (jaxpi's AC embedding, smaller) with grad-norm balancing fell 0.49 -> 0.33 in 2500 steps;
    # without the Fourier features it stalled at 0.56. Taylor mode measured 1.15x faster here.
    "cpu": Config(problem="allen_cahn", architecture="modified_mlp", width=64, depth=3,
                  steps=1_000_000, n_interior=1024, n_chunks=32, n_initial=256, n_harmonics=1,
                  fourier_features=64, fourier_scale=2.0, epsilon=1.0, balance=True,
                  balance_every=250, lr=1e-3, decay_steps=2500, check_every=250,
                  derivative_engine="taylor"),
    "paper": Config(problem="allen_cahn", architecture="modified_mlp", width=256, depth=4,
                    fourier_features=128, fourier_scale=1.0, factorized=True, steps=300_000,
                    n_interior=8192, n_chunks=32, n_initial=1024, decay_steps=5000,
                    check_every=1000, balance_every=1000, compile=True),
}


# the Raissi et al. baseline network: tanh MLP, Glorot, 4 x 128 (a common size of the continuous
# Allen–Cahn PINN baselines in the literature; the causal-PINN paper does not state the size of
# its plain-PINN row)
RAISSI_WIDTH, RAISSI_DEPTH = 128, 4
MODES = ("causal", "plain", "raissi", "causal_mlp", "raissi_balanced")


def raissi_baseline(cfg: Config) -> Config:
    """The original PINN formulation (Raissi, Perdikaris & Karniadakis 2019) on ``cfg``'s problem,
    points, optimiser and schedule: plain tanh MLP, no embeddings, soft periodic BC and IC losses
    with unit weights, no gradient-norm balancing, no causal weights."""
    return replace(cfg, architecture="mlp", width=RAISSI_WIDTH, depth=RAISSI_DEPTH,
                   periodic_embedding=False, periodic_bc_loss=True, n_harmonics=1,
                   fourier_features=0, fourier_trainable=False, factorized=False,
                   causal=False, balance=False, lambda_ic=1.0, lambda_bc=1.0, lambda_res=1.0,
                   derivative_engine="auto", compile=False)


def mode_config(cfg: Config, mode: str) -> Config:
    """The configuration of run ``mode`` (see the module docstring) built from a scale's ``cfg``."""
    if mode == "causal":
        return replace(cfg, causal=True)
    if mode == "plain":
        return replace(cfg, causal=False)
    if mode == "raissi":
        return raissi_baseline(cfg)
    if mode == "causal_mlp":
        return replace(raissi_baseline(cfg), causal=True)
    if mode == "raissi_balanced":
        return replace(raissi_baseline(cfg), balance=True)
    raise ValueError(f"unknown run mode {mode!r}; expected one of {MODES}")


LABELS = {"causal": "causal, modified MLP + embeddings",
          "plain": "plain loss, same modified MLP + embeddings",
          "raissi": "plain PINN (Raissi): tanh MLP, soft BCs",
          "causal_mlp": "causal, Raissi's tanh MLP + soft BCs",
          "raissi_balanced": "plain, Raissi's tanh MLP + soft BCs + grad-norm balancing"}


def run(cfg: Config, device: str, tag: str, budget_s: float | None = None,
        wall_limit_s: float | None = None, threads: int | None = None) -> dict:
    """Train (stopping after ``budget_s`` CPU seconds if given) and record the learning curve:
    rel. L2 on every 4th reference time and point vs training CPU seconds (evaluation excluded)."""
    if threads is not None:  # a worker process
        torch.set_num_threads(threads)
    model = CausalPINN(cfg)
    ref = reference(model.problem)
    sub = GridReference(ref.t[::4], (ref.space[0][::4],), ref.values[::4, ::4].contiguous())
    curve: dict[str, list] = {"step": [], "cpu_s": [], "rel_l2_subgrid": []}
    spent_eval = [0.0]

    def record(step, m, hist):
        c = time.process_time()
        m.to("cpu")
        err = evaluate(m.predict, sub)["rel_l2"]
        m.to(device)
        spent_eval[0] += time.process_time() - c
        curve["step"].append(step)
        curve["cpu_s"].append(hist.cpu_s[-1] - spent_eval[0] + (time.process_time() - c))
        curve["rel_l2_subgrid"].append(err)
        print(f"[{tag}] step {step:6d}  cpu {curve['cpu_s'][-1]:7.1f}s  rel_l2 {err:.3e}", flush=True)
        return wall_limit_s is not None and time.perf_counter() - t0 > wall_limit_s

    t0, c0 = time.perf_counter(), time.process_time()
    hist = train(model, device=device, time_budget_s=budget_s, callback=record)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0 - spent_eval[0]
    model.to("cpu")
    metrics = evaluate(model.predict, ref)
    figs = RESULTS / "figures"
    figures = [plot_solution(predict_grid(model.predict, ref), ref, figs / f"pinn_allen_cahn_{tag}_solution.png",
                             title=f"Allen-Cahn ({tag})"),
               plot_losses(hist, figs / f"pinn_allen_cahn_{tag}_losses.png")]
    if cfg.causal:
        figures.append(plot_causal_weights(hist, figs / f"pinn_allen_cahn_{tag}_weights.png"))
    return {"figures": [str(f) for f in figures], "config": asdict(cfg), "seed": cfg.seed, "git_sha": git_sha(),
            "train_wall_seconds": seconds, "train_cpu_seconds": cpu, **metrics, "steps_run": hist.step[-1] + 1,
            "curve": curve, "final_terms": {k: v[-1] for k, v in hist.terms.items()}}


def _same_recipe(a: dict, b: dict) -> bool:
    """Whether two run configs (as JSON holds them: tuples are lists) differ at most in the seed; a
    field missing from one (added to ``Config`` since that run) counts at its default."""
    default = asdict(Config())
    a, b = (json.loads(json.dumps({**default, **c})) for c in (a, b))
    return {k: v for k, v in a.items() if k != "seed"} == {k: v for k, v in b.items() if k != "seed"}


def earlier_runs(path: Path, mode: str, cfg: Config, budget_min: float | None) -> tuple[list[dict], int | None]:
    """The per-seed records of ``mode`` already in ``path`` for the same recipe and budget (a file
    written before seeds were pooled holds one record, its config at the top level), and the seed
    whose figures carry the plain names."""
    if not path.is_file():
        return [], None
    old = json.loads(path.read_text())
    entry = old.get(mode)
    if not isinstance(entry, dict) or old.get("budget_cpu_minutes") != budget_min:
        return [], None
    out = []
    for r in entry.get("runs") or [entry]:
        conf = r.get("config")
        if conf is None and "config" in old:  # one record, the scale's config at the top level
            conf = asdict(mode_config(Config.from_dict(old["config"]), mode))
        if conf is not None and _same_recipe(conf, asdict(cfg)):
            out.append({"git_sha": old.get("environment", {}).get("git_sha"), **r, "config": conf,
                        "seed": conf["seed"]})
    shown = entry.get("figures_seed", old.get("config", {}).get("seed"))  # the one record's seed before pooling
    return out, shown if out else None


def pool_seeds(runs: list[dict], shown: int | None = None) -> dict:
    """One mode's entry from its per-seed records: the median seed's record (curve, terms) with the
    median, min and max over seeds of the scalar metrics, and every record under ``runs``. A median
    seed trained in this call (its record lists ``figures``) gives its figures the plain names, else
    those of seed ``shown`` stay (``figures_seed``); the other new figures are deleted."""
    runs = sorted(runs, key=lambda r: r["seed"])
    median = median_run(runs)
    if "figures" in median:
        shown = median["seed"]
    keep_median_figures(runs, median)
    entry = {**median, "median_seed": median["seed"], "figures_seed": shown, "seeds": [r["seed"] for r in runs]}
    if len(runs) > 1:
        keys = ("rel_l2", "max_abs", "train_cpu_seconds", "steps_run")
        summary = seed_summary(runs, list(keys))
        entry.update({k: summary.pop(f"{k}_median") for k in keys}, **summary)
        entry["runs"] = [{k: v for k, v in r.items() if k != "final_terms"} for r in runs]
    return entry


def plot_curves(scale: str) -> None:
    """Rel. L2 vs training CPU minutes of every ``pinn_allen_cahn_<scale>_*.json`` present."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for f in sorted(RESULTS.glob(f"pinn_allen_cahn_{scale}_*.json")):
        d = json.loads(f.read_text())
        for mode in MODES:
            if mode in d and "curve" in d[mode]:
                c = d[mode]["curve"]
                ax.semilogy([s / 60 for s in c["cpu_s"]], c["rel_l2_subgrid"], label=LABELS[mode])
    ax.axhline(1e-2, color="k", lw=0.8, ls="--")
    ax.set_xlabel("training CPU minutes (1 thread)")
    ax.set_ylabel("relative L2 vs allen_cahn.mat")
    ax.set_title(f"Allen-Cahn, scale {scale}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "figures" / f"pinn_allen_cahn_{scale}_curve.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="seeds to train (each with the whole budget; default: --seed). Records of other "
                         "seeds already in the output file for the same recipe and budget are kept, so "
                         "seeds can be added run by run; the JSON reports the median over all of them")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at a time (processes)")
    ap.add_argument("--only", choices=["both", *MODES], default="both",
                    help="which run(s): both = causal then plain; raissi = the original PINN "
                         "formulation baseline; causal_mlp = causal weights on that baseline; "
                         "raissi_balanced = that baseline with gradient-norm loss balancing")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="stop each run after this many CPU minutes (process time)")
    ap.add_argument("--wall-limit-min", type=float, default=None,
                    help="also stop each run after this many wall minutes (shared machines); "
                         "the JSON records the CPU time actually spent")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = replace(SCALES[args.scale], seed=args.seed)
    budget = None if args.budget_min is None else 60 * args.budget_min
    wall = None if args.wall_limit_min is None else 60 * args.wall_limit_min
    modes = ("causal", "plain") if args.only == "both" else (args.only,)
    seeds = args.seeds if args.seeds is not None else [args.seed]
    name = f"pinn_allen_cahn_{args.scale}_{args.only}"
    jobs = [(m, replace(mode_config(cfg, m), seed=s)) for m in modes for s in seeds]
    todo = [(c, args.device, f"{args.scale}_{m}_seed{c.seed}", budget, wall, args.threads) for m, c in jobs]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            done = [f.result() for f in [pool.submit(run, *t) for t in todo]]
    else:
        done = [run(*t) for t in todo]
    res = {}
    for m in modes:
        new = [r for (mode, _), r in zip(jobs, done) if mode == m]
        earlier, shown = earlier_runs(RESULTS / f"{name}.json", m, mode_config(cfg, m), args.budget_min)
        kept = [r for r in earlier if r["seed"] not in seeds]
        res[m] = pool_seeds(kept + new, shown if kept else None)
    write_result(name, {
        "config": res[modes[0]]["config"] if len(modes) == 1 else asdict(cfg),
        "budget_cpu_minutes": args.budget_min,
        "wall_limit_minutes": args.wall_limit_min, "jobs": args.jobs, **res,
        "conditions": "shared 2-core CPU (4-5 engineers); torch threads = %d per run, %d run(s) at a time; "
                      "same points, optimiser and CPU budget for every run, network and loss per run as "
                      "in its 'config' (a wall-clock cap can end one earlier: compare the curves at equal "
                      "CPU time); several seeds: the median over seeds, the median seed's curve"
                      % (args.threads, args.jobs),
    }, device=args.device)
    plot_curves(args.scale)


if __name__ == "__main__":
    main()
