"""Demo step ``lorenz_ensemble``: a neural ODE ensemble on Lorenz-63 with split-conformal bands."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sciflow.demo._common import _write_json


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
    _write_json(metrics, out / "metrics.json")
    print(f"[demo] test RMSE {metrics['rmse']:.3f} (persistence {metrics['persistence_rmse']:.3f}); "
          f"{int(round(100 * (1 - alpha)))} % band coverage {metrics['coverage']:.3f} "
          f"(ensemble spread alone {metrics['ensemble_only_coverage']:.3f}); "
          f"CRPS {metrics.get('crps', float('nan')):.3f}")
    print(f"[demo] wrote {out}/metrics.json, {out}/plots/*.png, {out}/member_*/checkpoints "
          f"in {timings['total_s']:.0f} s")
    return metrics


