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

``wdno_burgers``
    A wavelet diffusion neural operator (Hu et al., ICLR 2025) as a generative surrogate of forced
    Burgers, with the 5–95 % band of its samples; relative L2 of the ensemble mean vs persistence,
    CRPS and band coverage. Writes ``wdno_burgers/``.

``stable_sde_irregular``
    An irregular, partly missing time series (Lorenz-63 at random times, 30 % of the values
    missing) forecast with a predictive distribution by a stable neural SDE (LNSDE, Oh, Lim &
    Kim, ICLR 2024); CRPS vs persistence and 90 % coverage. Writes ``stable_sde_irregular/``.

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


def _write_json(obj: Any, path: Path) -> None:
    from sciflow.data.io import write_json  # strict JSON, atomic

    write_json(obj, path)


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
          f"(ensemble spread alone {metrics['ensemble_only_coverage']:.3f}); CRPS {metrics.get('crps', float('nan')):.3f}")
    print(f"[demo] wrote {out}/metrics.json, {out}/plots/*.png, {out}/member_*/checkpoints "
          f"in {timings['total_s']:.0f} s")
    return metrics


# ------------------------------------------------------------------------------ causal PINN step


def pinn_config(quick: bool = False, seed: int = 0):
    """The causal-PINN step's configuration (Burgers; ``quick``: a shorter smoke run).

    A 6 x 32 tanh MLP with the exact periodic embedding in x, N_t = 32 causal chunks with a
    fixed ε = 1, gradient-norm loss balancing, 500 Adam steps then 1000 L-BFGS iterations —
    sized for about a CPU minute (rel. L2 of a few 1e-2), not for the paper's accuracy (the paper
    trains a 4 x 256 modified MLP for 2e5 steps; see ``benchmarks/pinn_burgers.py``).
    """
    from sciflow.models.causal_pinn import Config

    if quick:
        return Config(problem="burgers", width=24, depth=3, steps=60, n_interior=512, n_initial=128,
                      n_boundary=64, lbfgs_steps=20, check_every=20, seed=seed)
    return Config(problem="burgers", width=32, depth=6, steps=500, lr=2e-3, n_interior=2048, n_initial=256,
                  n_boundary=128, balance=True, lbfgs_steps=1000, check_every=50, seed=seed)


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
    _write_json(metrics, out / "metrics.json")
    print(f"[demo] causal PINN on Burgers: rel. L2 {metrics['rel_l2']:.3g} vs burgers_shock.mat "
          f"(untrained {metrics['rel_l2_untrained']:.3g}) after {train_s:.0f} s")
    return metrics


# ------------------------------------------------------------------------------ WDNO step


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_wdno_burgers(out_dir: str | Path, *, quick: bool = False, seed: int = 0, threads: int | None = 1,
                     **_: Any) -> dict[str, Any]:
    """Step ``wdno_burgers``: a generative surrogate of forced Burgers with an uncertainty band.

    Data: ``sciflow.data.pdes.burgers.generate_control`` (``u_t + u u_x = 0.01 u_xx + f``,
    ``x ∈ [0, 1]``, zero Dirichlet data, Gaussian-bump ``u0`` and space–time Gaussian forcing),
    17 x 33 (time x space). Model: WDNO (Hu et al., ICLR 2025) in the simulation task — given
    ``u(t=0)`` and the forcing ``f``, a DDPM over the one-level wavelet coefficients of the whole
    trajectory generates ``u`` (v-prediction loss, the family default; DDIM sampling). An ensemble of generated
    trajectories per test condition gives the mean and the 5–95 % band; scored by relative L2
    of the mean, CRPS and the band's coverage. Small U-Net and budget (a CPU minute); the
    paper-sized run is ``benchmarks/wdno_burgers.py --scale gpu``.
    """
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.data.pdes.burgers import generate_control
    from sciflow.models.wavelet_diffusion import WDNO, Config
    from sciflow.uq.scores import crps_ensemble, interval_coverage

    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_test = (24, 4) if quick else (96, 8)
    steps, n_samples, nfe = (30, 4, 4) if quick else (400, 16, 10)
    t0 = time.perf_counter()
    ds = generate_control(n_train + n_test, seed, nx=33, nt=17, n_modes=64, dt=2e-3)
    u = torch.tensor(ds.u.values, dtype=torch.float32)
    f = torch.tensor(ds.forcing.values, dtype=torch.float32)
    times = torch.tensor(ds.time.values, dtype=torch.float32)
    train_b = TrajectoryBatch(u[:n_train], times, f[:n_train])
    test_b = TrajectoryBatch(u[n_train:], times, f[n_train:])
    data_s = time.perf_counter() - t0

    torch.manual_seed(seed)  # the U-Net's initial weights
    model = WDNO(Config(task="simulation", space="wavelet", base_channels=16, channel_mults=(1, 2),
                        num_res_blocks=1, groups=4, num_heads=2))
    model.fit_scaler(train_b)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (16,), generator=g)
        loss = model.loss(train_b.index(idx), generator=g).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        samples = model.sample(test_b, n_samples, nfe=nfe, generator=torch.Generator().manual_seed(seed + 1))
    fut, true = samples[:, :, 1:], test_b.values[:, 1:]  # frame 0 is given
    mean = fut.mean(0)
    lo, hi = torch.quantile(fut, 0.05, dim=0), torch.quantile(fut, 0.95, dim=0)
    rel = ((mean - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)).mean()
    # the "no dynamics" reference: persistence of the given initial state
    persist = ((test_b.values[:, :1] - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)).mean()
    metrics = {
        "task": "forced Burgers: u(t) from u(0) and f by a wavelet diffusion neural operator",
        "rel_l2_ensemble_mean": float(rel), "rel_l2_persistence": float(persist),
        "crps": float(crps_ensemble(fut, true, fair=True)), "coverage_90": float(interval_coverage(lo, hi, true)),
        "n_samples": n_samples, "nfe": nfe, "train_steps": steps, "first_loss": losses[0], "last_loss": losses[-1],
        "n_train": n_train, "n_test": n_test, "grid": list(u.shape[1:]), "data_s": data_s, "train_s": train_s,
    }
    plt = _plt()
    x = ds.x.values
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, k in zip(axes, (len(times) // 4, len(times) // 2, len(times) - 1)):
        ax.fill_between(x, lo[0, k - 1], hi[0, k - 1], color="C0", alpha=0.3, label="5-95 % of generated")
        ax.plot(x, mean[0, k - 1], color="C0", label="WDNO ensemble mean")
        ax.plot(x, test_b.values[0, k], "k--", label="solver")
        ax.set_title(f"t = {float(times[k]):.2f}")
        ax.set_xlabel("x")
    axes[0].set_ylabel("u")
    axes[0].legend(fontsize=8)
    fig.suptitle("WDNO surrogate of forced Burgers (held-out u0 and forcing)")
    p1 = out / "wdno_band.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, img, name in zip(axes, (test_b.values[0], samples[0, 0], (hi - lo)[0]),
                             ("solver u(t, x)", "one WDNO sample", "band width (5-95 %)")):
        im = ax.imshow(img.T, origin="lower", aspect="auto", extent=[0, float(times[-1]), 0, 1])
        ax.set_title(name)
        ax.set_xlabel("t")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("x")
    p2 = out / "wdno_trajectory.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    metrics["plots"] = [str(p1), str(p2)]
    _write_json(metrics, out / "metrics.json")
    print(f"[demo] WDNO on forced Burgers: rel. L2 of the ensemble mean {metrics['rel_l2_ensemble_mean']:.3g} "
          f"(persistence {metrics['rel_l2_persistence']:.3g}), 90 % band coverage {metrics['coverage_90']:.2f}")
    return metrics


# ------------------------------------------------------------------------------ stable SDE step


def run_stable_sde_irregular(out_dir: str | Path, *, quick: bool = False, seed: int = 0,
                             threads: int | None = 1, **_: Any) -> dict[str, Any]:
    """Step ``stable_sde_irregular``: forecast an irregular, partly missing series with an LNSDE.

    Data: Lorenz-63 (``generate_lorenz63``) observed at 24 random times of ``[0, 1.2]`` with 30 %
    of the values missing and noise 0.5; the last 4 observations are the targets. Model: the
    Lévy-noise-free *linear noise* stable neural SDE (LNSDE, Oh, Lim & Kim, ICLR 2024, eq. 8:
    ``dz = γ(t, z; θ) dt + σ(t; θ) z dW``) driven by a Hermite-cubic control path of the
    observations; its samples give a predictive distribution at the target times. Scored by
    CRPS against persistence (the last observed value) and 90 % interval coverage.
    """
    from sciflow.data.batches import IrregularBatch
    from sciflow.data.pdes.lorenz import generate_lorenz63, to_irregular_batch
    from sciflow.models.stable_sde import Config, StableSDE
    from sciflow.uq.scores import crps_ensemble, interval_coverage

    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_test = (32, 16) if quick else (192, 64)
    steps = 20 if quick else 250
    ds = generate_lorenz63(n_train + n_test, n_time=121, dt=0.01, n_obs=24, missing_rate=0.3, noise_std=0.5,
                           seed=seed)
    b = to_irregular_batch(ds, n_target=4)
    scale = float(b.values[b.mask].std())
    center = b.values[b.mask].mean()

    def norm(batch: IrregularBatch, idx: torch.Tensor) -> IrregularBatch:
        return IrregularBatch(values=torch.where(batch.mask[idx], (batch.values[idx] - center) / scale, 0.0),
                              times=batch.times[idx], mask=batch.mask[idx],
                              targets=(batch.targets[idx] - center) / scale, target_times=batch.target_times[idx],
                              target_mask=batch.target_mask[idx] if batch.target_mask is not None else None)

    train, test = norm(b, torch.arange(n_train)), norm(b, torch.arange(n_train, n_train + n_test))
    torch.manual_seed(seed)  # initial weights
    model = StableSDE(Config(kind="lnsde", input_channels=3, hidden_dim=32, task="forecasting", dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, n_train, (32,), generator=g)
        out_l = model.loss(train.index(idx))
        opt.zero_grad()
        out_l.total.backward()
        opt.step()
        losses.append(float(out_l.total.detach()))
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        samples = model.sample(test, 64, generator=torch.Generator().manual_seed(seed + 1))  # (S, B, 4, 3)
    y = test.targets
    last_obs = torch.stack([test.values[i, test.mask[i].any(-1)][-1] for i in range(len(y))])  # (B, 3)
    persistence = last_obs[:, None].expand_as(y)
    lo, hi = samples.quantile(0.05, 0), samples.quantile(0.95, 0)
    metrics = {
        "task": "Lorenz-63 observed irregularly (30 % missing, noise 0.5): forecast the last 4 observations",
        "crps": float(crps_ensemble(samples, y)) * scale,
        "persistence_mae": float((persistence - y).abs().mean()) * scale,  # CRPS of a point forecast
        "mean_mae": float((samples.mean(0) - y).abs().mean()) * scale,
        "coverage_90": float(interval_coverage(lo, hi, y)),
        "train_steps": steps, "first_loss": losses[0], "last_loss": losses[-1], "train_s": train_s,
        "n_train": n_train, "n_test": n_test, "units": "state units (CRPS and MAE rescaled)",
    }
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True, constrained_layout=True)
    i = 0
    obs_t = test.times[i]
    for c, (ax, name) in enumerate(zip(axes, "xyz")):
        m = test.mask[i, :, c]
        ax.plot(obs_t[m], test.values[i, m, c] * scale + center, "o", ms=4, color="k", label="observed")
        tt = test.target_times[i]
        ax.fill_between(tt, lo[i, :, c] * scale + center, hi[i, :, c] * scale + center, color="C1", alpha=0.3,
                        label="LNSDE 5-95 %")
        ax.plot(tt, samples[:, i, :, c].mean(0) * scale + center, color="C1", label="LNSDE mean")
        ax.plot(tt, y[i, :, c] * scale + center, "k*", ms=7, label="truth")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8, ncol=2)
    axes[-1].set_xlabel("t")
    fig.suptitle("Stable neural SDE forecast of an irregular, partly missing series")
    p = out / "forecast.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    metrics["plots"] = [str(p)]
    _write_json(metrics, out / "metrics.json")
    print(f"[demo] LNSDE on irregular Lorenz-63: CRPS {metrics['crps']:.3g} vs persistence MAE "
          f"{metrics['persistence_mae']:.3g}; 90 % coverage {metrics['coverage_90']:.2f}")
    return metrics


def _importable(module: str) -> Callable[[], bool]:
    def check() -> bool:
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:
            return False
    return check


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
    default: bool = True  # part of a plain `sciflow demo` (others run with --step NAME)


STEPS: dict[str, Step] = {
    "lorenz_ensemble": Step(
        "lorenz_ensemble", "Lorenz-63: neural ODE ensemble with split-conformal bands", run_lorenz_ensemble, ".",
        ("rmse", "persistence_rmse", "rmse_ratio_vs_persistence", "nominal_coverage", "coverage",
         "ensemble_only_coverage", "crps")),
    "causal_pinn_burgers": Step(
        "causal_pinn_burgers", "Burgers: a PDE solved by a causal PINN", run_causal_pinn_burgers,
        "causal_pinn_burgers", ("rel_l2", "rel_l2_untrained", "max_abs_error", "final_min_causal_weight", "train_s")),
    "wdno_burgers": Step(
        "wdno_burgers", "Forced Burgers: a WDNO surrogate with an uncertainty band", run_wdno_burgers,
        "wdno_burgers", ("rel_l2_ensemble_mean", "rel_l2_persistence", "crps", "coverage_90", "train_s"),
        _importable("sciflow.models.wavelet_diffusion")),
    "stable_sde_irregular": Step(
        "stable_sde_irregular", "An irregular, partly missing series forecast by a stable neural SDE",
        run_stable_sde_irregular, "stable_sde_irregular",
        ("crps", "persistence_mae", "mean_mae", "coverage_90", "train_s"), _importable("sciflow.models.stable_sde")),
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
    names = list(steps) if steps else [k for k, st in STEPS.items() if st.default and st.available()]
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
    _write_json(json.loads(json.dumps(summary, default=str)), summary_path)  # paths as strings
    report = write_report(out, {k: summary[k] for k in STEPS if k in summary})
    print(f"[demo] report: {report}")
    return results
