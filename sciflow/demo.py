"""The main job (``sciflow demo``): a walk through sciflow in a few CPU minutes, one step at a time.

Steps (:data:`STEPS`; each runs alone with ``sciflow demo --step NAME``, all run by default):

``lorenz_ensemble``
    Chaotic dynamics learned end to end, with honest uncertainty (writes into the run folder
    itself, as it always has):

    1. **Data.** Lorenz-63 trajectories (σ=10, ρ=28, β=8/3) generated in-process by
       ``sciflow.data.pdes.lorenz`` (tight-tolerance Tsit5 on the shared solvers), split by
       trajectory into train / calibration / test.
    2. **Model.** A deep ensemble (Lakshminarayanan et al. 2017) of neural ODEs (Chen et al. 2018)
       ``dz/dt = f_θ(z)``, each trained by :func:`sciflow.training.fit` from its own seed on short
       windows (RK4 on the observation grid), with checkpoints and JSONL logs per member.
    3. **Uncertainty.** Forecasts from held-out initial conditions over about one Lyapunov time
       (λ₁ ≈ 0.9, so errors grow ~e-fold per time unit): the ensemble spread, wrapped in split
       conformal intervals (Vovk et al. 2005; Lei et al. 2018) calibrated per lead time and
       component on the calibration trajectories, so the band has ≥ 1 − α marginal coverage on
       exchangeable test windows.
    4. **Outputs**: ``metrics.json`` (RMSE per lead time vs. persistence, interval coverage and
       width, CRPS), ``config.yaml``, ``member_*/checkpoints``, ``plots/`` (``forecast.png``,
       ``error.png``, ``coverage.png``).

``causal_pinn_burgers``
    A PDE solved without data: viscous Burgers ``u_t + u u_x = (0.01/π) u_xx`` on ``[-1, 1]``,
    ``u(x, 0) = -sin(πx)``, by a causal PINN (Wang, Sankaran & Perdikaris 2022, eq. 3.4: the
    residual of time chunk ``i`` is weighted by ``exp(-ε Σ_{k<i} L_k)``), compared with the
    reference solution ``burgers_shock.mat`` (relative L2). Writes ``causal_pinn_burgers/``
    (``metrics.json``, ``solution.png``, ``causal_weights.png``, ``losses.png``).

Every step writes its own ``metrics.json``; the run folder gets ``report.md`` (metrics tables
and plots of the steps run, newest run of each step) and ``metrics.json`` with a ``steps``
summary. ``quick=True`` is a ~20 s-per-step smoke run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from sciflow.config import ConfigError


def demo_experiment(quick: bool = False, seed: int = 0):
    """The demo's :class:`~sciflow.config.ExperimentConfig` (also ``configs/lorenz_neural_ode``)."""
    from sciflow.config import load_experiment

    overrides = {"train.seed": seed, "data.seed": seed, "train.progress": True,
                 "eval.uq": "ensemble", "eval.ensemble_size": 3}
    if quick:
        overrides.update({"data.params.n": 12, "data.params.n_time": 120, "train.max_steps": 60,
                          "train.eval_every": 30, "train.checkpoint_every": 30, "train.log_every": 10,
                          "train.warmup_steps": 5, "eval.ensemble_size": 2, "eval.horizon": 30})
    return load_experiment("lorenz_neural_ode", overrides)


def _persistence_rmse(values: torch.Tensor) -> list[float]:
    err = values[:, 1:] - values[:, :1]
    return err.pow(2).flatten(2).mean(dim=(0, 2)).sqrt().tolist()


def _plots(out: Path, test, pred, metrics: dict[str, Any], dt: float, alpha: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    T = test.values.shape[1]
    t = [i * dt for i in range(T)]
    # 1. prediction vs truth with the conformal band, one test window
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    for c, (ax, name) in enumerate(zip(axes, "xyz")):
        ax.fill_between(t, pred.lower[0, :, c], pred.upper[0, :, c], color="C0", alpha=0.25,
                        label=f"{int(round(100 * (1 - alpha)))} % conformal band")
        if pred.samples is not None:
            for k in range(pred.samples.shape[0]):
                ax.plot(t, pred.samples[k, 0, :, c], color="C0", lw=0.6, alpha=0.5)
        ax.plot(t, pred.mean[0, :, c], color="C0", lw=1.8, label="ensemble mean")
        ax.plot(t, test.values[0, :, c], color="k", lw=1.2, ls="--", label="truth")
        ax.set_ylabel(name)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("lead time")
    fig.suptitle("Neural ODE ensemble forecast of Lorenz-63 (held-out initial condition)")
    fig.tight_layout()
    paths.append(out / "forecast.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # 2. error growth vs persistence
    lead = [(i + 1) * dt for i in range(T - 1)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(lead, metrics["rmse_per_lead"], label="neural ODE ensemble mean")
    ax.semilogy(lead, metrics["persistence_rmse_per_lead"], label="persistence", ls="--")
    ax.set_xlabel("lead time")
    ax.set_ylabel("RMSE (state units)")
    ax.set_title("Forecast error on test windows")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "error.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # 3. predictive band: coverage and width per lead time
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lead, metrics["coverage_per_lead"], label="empirical coverage")
    ax.axhline(1 - alpha, color="k", ls=":", label="nominal 1 - alpha")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("lead time")
    ax.set_ylabel("coverage")
    ax2 = ax.twinx()
    width = (pred.upper - pred.lower)[:, 1:].flatten(2).mean(dim=(0, 2))
    ax2.plot(lead, width, color="C1", label="mean band width")
    ax2.set_ylabel("band width", color="C1")
    ax.set_title("Split-conformal predictive band on test windows")
    ax.legend(loc="lower left")
    fig.tight_layout()
    paths.append(out / "coverage.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return [str(p) for p in paths]


def _train_member(exp, out: Path, splits, i: int, threads: int | None) -> tuple[dict, dict]:
    """Train ensemble member ``i`` (runs in a worker process when ``workers > 1``)."""
    from sciflow.cli import train_experiment

    if threads is not None:
        torch.set_num_threads(threads)
    model, res = train_experiment(exp, out / f"member_{i}", splits=splits, member=i)
    summary = {"member": i, "steps": res.steps, "final_val_loss": res.final_val,
               "skipped_steps": res.skipped_steps, "checkpoint": res.last_checkpoint}
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, summary


def run_lorenz_ensemble(out_dir: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0,
                        progress: bool = True, threads: int | None = 1, workers: int | None = None) -> dict[str, Any]:
    """Step ``lorenz_ensemble``: run into ``out_dir`` and return its metrics (also ``metrics.json``).

    ``workers``: ensemble members trained in parallel processes (default: one per CPU core, at
    most 2 and at most the ensemble size); each uses ``threads`` intra-op threads. Members are
    seeded individually, so the result does not depend on ``workers``.
    """
    from sciflow.cli import build_model, forecast_batch, prepare_splits, uq_metrics, write_config
    from sciflow.uq.conformal import AbsoluteResidual, SplitConformal
    from sciflow.uq.ensemble import DeepEnsemble

    if threads is not None:  # small MLPs: one intra-op thread is fastest and plays well with others
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    out = Path(out_dir)
    exp = demo_experiment(quick, seed)
    exp = replace(exp, train=replace(exp.train, progress=progress), run_dir=str(out))
    write_config(exp, out)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    splits = prepare_splits(exp)
    timings["data_s"] = time.perf_counter() - t0
    print(f"[demo] Lorenz-63: {len(splits.train)} train / {len(splits.val)} calibration / "
          f"{len(splits.test)} test trajectories of {splits.train.values.shape[1]} steps "
          f"({timings['data_s']:.1f} s)")

    n = exp.eval.ensemble_size
    workers = workers or max(1, min(2, os.cpu_count() or 1, n))
    t0 = time.perf_counter()
    if workers > 1:  # members are independent: train them side by side (spawn: fork-safe with OpenMP)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        quiet = replace(exp, train=replace(exp.train, progress=False))
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_train_member, [quiet] * n, [out] * n, [splits] * n, range(n), [threads] * n))
    else:
        results = [_train_member(exp, out, splits, i, threads) for i in range(n)]
    members, fits = [], []
    for i, (state, summary) in enumerate(results):
        model = build_model(exp, exp.train.seed + i)
        model.load_state_dict(state)
        model.eval()
        members.append(model)
        fits.append(summary)
        print(f"[demo] member {i}: {summary['steps']} steps, validation MSE (normalised) "
              f"{summary['final_val_loss']:.4f}")
    timings["train_s"] = time.perf_counter() - t0
    timings["train_workers"] = workers

    t0 = time.perf_counter()
    alpha = exp.eval.alpha
    ensemble = DeepEnsemble(members, alpha=alpha)
    cal = forecast_batch(splits.val, exp.eval.horizon)
    test = forecast_batch(splits.test, exp.eval.horizon)
    conformal = SplitConformal(ensemble, alpha, AbsoluteResidual(), separate_dims=(1, 2))
    conformal.calibrate([cal])
    pred = conformal.predict(test)
    raw = ensemble.predict(test)
    metrics: dict[str, Any] = {
        "task": "Lorenz-63 forecasting from held-out initial conditions",
        "model": "deep ensemble of neural ODEs + split conformal (per lead time and component)",
        "n_members": len(members), "alpha": alpha, "horizon_steps": test.values.shape[1] - 1,
        "dt": float(splits.train.times[1] - splits.train.times[0]),
        "n_calibration_windows": len(cal), "n_test_windows": len(test),
        **uq_metrics(pred, test.values, alpha),
        "ensemble_only_coverage": uq_metrics(raw, test.values, alpha).get("coverage"),
        "persistence_rmse_per_lead": _persistence_rmse(test.values),
        "members": fits,
    }
    metrics["persistence_rmse"] = float((test.values[:, 1:] - test.values[:, :1]).pow(2).mean().sqrt())
    metrics["rmse_ratio_vs_persistence"] = metrics["rmse"] / metrics["persistence_rmse"]
    metrics["plots"] = _plots(out / "plots", test, pred, metrics, metrics["dt"], alpha)
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    metrics["timings"] = timings
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"[demo] test RMSE {metrics['rmse']:.3f} (persistence {metrics['persistence_rmse']:.3f}); "
          f"{int(round(100 * (1 - alpha)))} % band coverage {metrics['coverage']:.3f} "
          f"(ensemble spread alone {metrics['ensemble_only_coverage']:.3f}); CRPS {metrics.get('crps', float('nan')):.3f}")
    print(f"[demo] wrote {out}/metrics.json, {out}/plots/*.png, {out}/member_*/checkpoints "
          f"in {timings['total_s']:.0f} s")
    return metrics


# ------------------------------------------------------------------------------ causal PINN step


def pinn_config(quick: bool = False, seed: int = 0):
    """The causal-PINN step's configuration (Burgers; ``quick``: a shorter smoke run).

    A 4 x 32 tanh MLP with the exact periodic embedding in x, N_t = 32 causal chunks with a
    fixed ε = 1, Adam then L-BFGS — sized for about a CPU minute, not for the paper's accuracy
    (the paper trains a 4 x 256 modified MLP for 2e5 steps; see ``benchmarks/pinn_burgers.py``).
    """
    from sciflow.models.causal_pinn import Config

    if quick:
        return Config(problem="burgers", width=24, depth=3, steps=60, n_interior=512, n_initial=128,
                      n_boundary=64, lbfgs_steps=20, check_every=20, seed=seed)
    return Config(problem="burgers", width=32, depth=4, steps=400, n_interior=1024, n_initial=128,
                  n_boundary=128, lbfgs_steps=200, check_every=50, seed=seed)


def run_causal_pinn_burgers(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
                            threads: int | None = 1, **_: Any) -> dict[str, Any]:
    """Step ``causal_pinn_burgers``: train, score against ``burgers_shock.mat``, plot; returns metrics."""
    from dataclasses import asdict

    from sciflow.models.causal_pinn import CausalPINN, train
    from sciflow.models.causal_pinn.evaluate import evaluate, predict_grid, reference
    from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution

    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = pinn_config(quick, seed)
    model = CausalPINN(cfg)
    t0 = time.perf_counter()
    hist = train(model)
    train_s = time.perf_counter() - t0
    ref = reference(model.problem)
    scores = evaluate(model.predict, ref)
    pred = predict_grid(model.predict, ref)
    # the same network at initialisation: how much of the error the training removed
    untrained = evaluate(CausalPINN(cfg).predict, ref)
    plots = [plot_solution(pred, ref, out / "solution.png", title="Burgers"),
             plot_causal_weights(hist, out / "causal_weights.png"),
             plot_losses(hist, out / "losses.png")]
    w_last = hist.weights[-1] if hist.weights and hist.weights[-1] else []
    metrics = {
        "task": "viscous Burgers (nu = 0.01/pi) solved by a causal PINN without data",
        "rel_l2": scores["rel_l2"], "max_abs_error": scores["max_abs"],
        "rel_l2_untrained": untrained["rel_l2"],
        "final_min_causal_weight": min(w_last) if w_last else None,
        "adam_steps": cfg.steps, "lbfgs_steps": cfg.lbfgs_steps, "train_s": train_s,
        "reference": "burgers_shock.mat (Raissi et al. 2019)",
        "published_rel_l2": {"value": 6.7e-4, "source": "Raissi, Perdikaris & Karniadakis 2019 (PINN, "
                             "2e4 L-BFGS steps, 9 x 20 MLP)"},
        "config": asdict(cfg), "plots": [str(p) for p in plots],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"[demo] causal PINN on Burgers: rel. L2 {metrics['rel_l2']:.3g} vs burgers_shock.mat "
          f"(untrained {metrics['rel_l2_untrained']:.3g}) after {train_s:.0f} s")
    return metrics


# ------------------------------------------------------------------------------ steps and report


@dataclass(frozen=True)
class Step:
    """A demo step: ``run(out_dir, quick=, seed=, ...) -> metrics``; ``folder`` relative to the run."""

    name: str
    title: str
    run: Callable[..., dict[str, Any]]
    folder: str
    headline: tuple[str, ...]
    available: Callable[[], bool] = lambda: True


STEPS: dict[str, Step] = {
    "lorenz_ensemble": Step(
        "lorenz_ensemble", "Lorenz-63: neural ODE ensemble with split-conformal bands", run_lorenz_ensemble, ".",
        ("rmse", "persistence_rmse", "rmse_ratio_vs_persistence", "nominal_coverage", "coverage",
         "ensemble_only_coverage", "crps")),
    "causal_pinn_burgers": Step(
        "causal_pinn_burgers", "Burgers: a PDE solved by a causal PINN", run_causal_pinn_burgers,
        "causal_pinn_burgers", ("rel_l2", "rel_l2_untrained", "max_abs_error", "final_min_causal_weight", "train_s")),
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md`` in the run folder: per step, its headline metrics and its plots."""
    lines = ["# sciflow demo report", "",
             f"Steps run: {', '.join(summary)}. Each step's full metrics are in its `metrics.json`.", ""]
    for name, info in summary.items():
        step = STEPS[name]
        lines += [f"## {step.title}", "", f"`sciflow demo --step {name}` ({info['seconds']:.0f} s)", ""]
        if info.get("skipped"):
            lines += [f"Skipped: {info['skipped']}", ""]
            continue
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(info['metrics'][k])} |" for k in step.headline if k in info["metrics"]]
        lines.append("")
        for p in info["metrics"].get("plots", []):
            rel = Path(p).resolve().relative_to(out.resolve()) if Path(p).resolve().is_relative_to(out.resolve()) else p
            lines += [f"![{Path(p).stem}]({rel})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(out_dir: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0, progress: bool = True,
             threads: int | None = 1, workers: int | None = None,
             steps: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the demo steps (default: all available) into ``out_dir``; write ``report.md``.

    Returns ``{step: metrics}``; the ``lorenz_ensemble`` step keeps writing ``metrics.json`` and
    ``plots/`` at the top of the run folder, the other steps into their own sub-folders.
    """
    names = list(steps) if steps else [k for k, st in STEPS.items() if st.available()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ConfigError(f"unknown demo step(s) {unknown}; allowed values: {sorted(STEPS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary = {k: v for k, v in summary.items() if k in STEPS}
    results = {}
    for name in names:
        step = STEPS[name]
        t0 = time.perf_counter()
        if not step.available():
            summary[name] = {"seconds": 0.0, "skipped": "its model family is not installed"}
            continue
        kwargs = {"quick": quick, "seed": seed, "threads": threads}
        if name == "lorenz_ensemble":
            kwargs.update(progress=progress, workers=workers)
        metrics = step.run(out / step.folder, **kwargs)
        results[name] = metrics
        summary[name] = {"seconds": time.perf_counter() - t0, "metrics": metrics}
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    report = write_report(out, {k: summary[k] for k in STEPS if k in summary})
    print(f"[demo] report: {report}")
    return results
