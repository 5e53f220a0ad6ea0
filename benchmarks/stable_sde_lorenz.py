"""Irregular Lorenz-63 forecasting or interpolation with uncertainty: stable SDEs vs neural ODE/CDE + conformal.

Data (``sciflow.data.timeseries.lorenz_forecasting_splits``): Lorenz-63 trajectories on
``t ∈ [0, (n_time−1)·dt]``, ``n_obs`` random grid times per trajectory, a fraction of each channel
removed, Gaussian observation noise (5 % of the channel std); the last ``n_target`` observation
times are forecast (noiseless state), everything normalised by the observed training statistics.
``--task interpolation`` holds out ``n_target`` observation times spread over the interior of each
window instead (``lorenz_interpolation_splits``) and writes ``stable_sde_lorenz_interpolation``.

Models (Oh, Lim & Kim, ICLR 2024; same control-path pipeline): LSDE, LNSDE, GSDE with a Gaussian
observation head — the predictive distribution is the mixture over SDE sample paths of the head's
Gaussian — and the deterministic neural ODE / neural CDE (MSE head) whose point forecasts get
split-conformal 90 % intervals calibrated on the validation split (``sciflow.uq.SplitConformal``,
one quantile per lead time and channel). The SDEs are also reported with conformal intervals around
their sample mean. Early stopping on validation loss.

Scores on the test split (``sciflow.uq.scores``): CRPS (``n_samples`` draws; for a point forecast
the CRPS is its absolute error), empirical coverage and mean width of the central 90 % interval,
RMSE of the mean, and the Gaussian NLL: of the moment-matched predictive (mean and variance of the
draws) for sample paths; of the Gaussian whose central 90 % interval is the reported one
(σ = half-width / z₀.₉₅) for conformal intervals, so deterministic models get a density too.

    python benchmarks/stable_sde_lorenz.py                  # default scale (about 6 CPU-min)
    python benchmarks/stable_sde_lorenz.py --task interpolation
    python benchmarks/stable_sde_lorenz.py --scale large

Writes ``benchmarks/results/stable_sde_lorenz.json`` and ``stable_sde_lorenz.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
from stable_sde_uea import LABELS, BestValidation  # noqa: E402

from sciflow.data.timeseries import lorenz_forecasting_splits, lorenz_interpolation_splits  # noqa: E402
from sciflow.models.stable_sde import Config, StableSDE  # noqa: E402
from sciflow.training import BatchLoader, NonFiniteLossError, TrainConfig, fit, seed_everything  # noqa: E402
from sciflow.uq import scores  # noqa: E402
from sciflow.uq.conformal import AbsoluteResidual, SplitConformal  # noqa: E402
from sciflow.uq.sampling import SamplingPredictor  # noqa: E402

SCALES: dict[str, dict[str, Any]] = {
    "default": {"n": 96, "n_time": 150, "dt": 0.02, "n_obs": 40, "n_target": 8, "rates": [0.0, 0.3, 0.5, 0.7],
                "seeds": [0, 1, 2, 3, 4], "epochs": 30, "patience": 10, "hidden_dim": 16, "batch_size": 32, "lr": 5e-3,
                "n_samples": 64},
    "large": {"n": 512, "n_time": 300, "dt": 0.02, "n_obs": 80, "n_target": 16, "rates": [0.0, 0.3, 0.5, 0.7],
              "seeds": [0, 1, 2, 3, 4], "epochs": 100, "patience": 20, "hidden_dim": 32, "batch_size": 64,
              "lr": 2e-3, "n_samples": 128},
}
MODELS = ["lsde", "lnsde", "gsde", "neural_ode", "neural_cde"]
ALPHA = 0.1


def _scores(pred, y: torch.Tensor, interval_nll: bool = False) -> dict[str, float]:
    # Gaussian NLL: moment-matched to the draws, or matched to the central (1 - ALPHA) interval
    std = pred.interval_std if interval_nll else pred.std
    out = {"nll": float(scores.gaussian_nll(pred.mean, std.pow(2).clamp_min(1e-6), y)),
           "rmse": float((pred.mean - y).pow(2).mean().sqrt()),
           "coverage": float(scores.interval_coverage(pred.lower, pred.upper, y)),
           "width": float(scores.interval_width(pred.lower, pred.upper)),
           "interval_score": float(scores.interval_score(pred.lower, pred.upper, y, ALPHA).mean())}
    if pred.samples is not None and pred.samples.shape[0] > 1:
        out["crps"] = float(scores.crps_ensemble(pred.samples, y).mean())
    else:  # a point forecast: the CRPS is the absolute error
        out["crps"] = float((pred.mean - y).abs().mean())
    return out


def run_one(splits, kind: str, seed: int, p: Mapping[str, Any]) -> dict[str, Any]:
    sde = kind in ("lsde", "lnsde", "gsde", "neural_sde")
    seed_everything(seed)
    model = StableSDE(Config(kind=kind, input_channels=splits.n_channels, hidden_dim=p["hidden_dim"],
                             task=p.get("task", "forecasting"), likelihood="gaussian" if sde else "mse"))
    bs = min(p["batch_size"], len(splits.train))
    per_epoch = max(1, len(splits.train) // bs)
    cfg = TrainConfig(max_steps=p["epochs"] * per_epoch, lr=p["lr"], eval_every=per_epoch, log_every=0,
                      progress=False, device="cpu", seed=seed, max_nonfinite=5, grad_clip=10.0)
    best = BestValidation(p["patience"], by_loss=True)
    out: dict[str, Any] = {"model": kind, "seed": seed, "stochastic": sde}
    t0 = time.perf_counter()
    try:
        res = fit(model, BatchLoader(splits.train, bs, seed=seed), BatchLoader(splits.val, 1024, shuffle=False),
                  cfg, callbacks=[best])
        out.update(steps=res.steps, skipped_steps=res.skipped_steps)
    except (NonFiniteLossError, RuntimeError, ValueError) as e:
        out.update(failed=True, error=f"{type(e).__name__}: {str(e)[:200]}")
    out["train_s"] = time.perf_counter() - t0
    out["epochs_run"] = best.epochs
    if best.state is None:
        out["failed"] = True
        return out
    model.load_state_dict(best.state)
    model.eval()
    g = lambda: torch.Generator().manual_seed(1000 + seed)  # noqa: E731
    y = splits.test.targets
    base = SamplingPredictor(model, p["n_samples"], ALPHA)
    conf = SplitConformal(base, ALPHA, AbsoluteResidual(), separate_dims=(1, 2)).calibrate([splits.val], generator=g())
    pred = base.predict(splits.test, generator=g())
    out["conformal"] = _scores(conf.wrap(pred), y, interval_nll=True)
    if sde:
        out["sampled"] = _scores(pred, y)
    out["failed"] = bool(out.get("failed", False) or not torch.isfinite(pred.mean).all()
                         or out.get("skipped_steps", 0) != 0)
    return out


def _ms(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return "—"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def summarise(runs, rates, models) -> tuple[dict, str]:
    lines = ["| missing | model | intervals | CRPS | 90 % coverage | width | RMSE | NLL | failures |",
             "|---|---|---|---|---|---|---|---|---|"]
    table: dict[str, Any] = {}
    for r in rates:
        for m in models:
            rs = [x for x in runs if x["missing_rate"] == r and x["model"] == m]
            fails = sum(bool(x.get("failed")) for x in rs)
            for how in ("sampled", "conformal"):
                got = [x[how] for x in rs if how in x]
                if not got:
                    continue
                cell = {k: [g[k] for g in got] for k in ("crps", "coverage", "width", "rmse", "nll")}
                table.setdefault(str(r), {}).setdefault(m, {})[how] = {
                    **{k: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
                       for k, v in cell.items()}, "failures": fails, "n": len(rs)}
                label = "SDE sample paths" if how == "sampled" else "split conformal"
                lines.append(f"| {int(100 * r)} % | {LABELS.get(m, m)} | {label} | {_ms(cell['crps'])} | "
                             f"{_ms(cell['coverage'])} | {_ms(cell['width'])} | {_ms(cell['rmse'])} | "
                             f"{_ms(cell['nll'])} | {fails} |")
    return table, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="default")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--rates", nargs="+", type=float)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--task", choices=["forecasting", "interpolation"], default="forecasting")
    ap.add_argument("--name", help="result file stem (default stable_sde_lorenz[_interpolation])")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = dict(SCALES[args.scale])
    if args.rates:
        p["rates"] = args.rates
    if args.seeds:
        p["seeds"] = list(range(args.seeds))
    if args.epochs:
        p["epochs"] = args.epochs
    p["task"] = args.task
    name = args.name or ("stable_sde_lorenz" if args.task == "forecasting" else "stable_sde_lorenz_interpolation")
    make_splits = lorenz_forecasting_splits if args.task == "forecasting" else lorenz_interpolation_splits
    t_start = time.perf_counter()
    runs = []
    for r in p["rates"]:
        for s in p["seeds"]:
            splits = make_splits(p["n"], n_time=p["n_time"], dt=p["dt"], n_obs=p["n_obs"],
                                 n_target=p["n_target"], missing_rate=r, seed=s)
            for m in args.models:
                res = run_one(splits, m, s, p)
                res.update(missing_rate=r)
                runs.append(res)
                c = res.get("sampled", res.get("conformal", {}))
                print(f"r={r:.1f} seed={s} {m:11s} crps={c.get('crps', float('nan')):.3f} "
                      f"cov={c.get('coverage', float('nan')):.3f} failed={res.get('failed')} {res['train_s']:.1f}s",
                      flush=True)
    table, md = summarise(runs, p["rates"], args.models)
    write_result(name, {"scale": args.scale, "params": {**p, "models": args.models, "alpha": ALPHA},
                             "table": table, "runs": runs, "total_wall_s": time.perf_counter() - t_start})
    header = (f"# Irregular Lorenz-63 {args.task} with uncertainty ({args.scale} scale)\n\n"
              f"Test split, normalised units; mean ± std over {len(p['seeds'])} seeds; nominal coverage "
              f"{1 - ALPHA:.0%}. CRPS from {p['n_samples']} draws (point forecasts: absolute error). "
              f"NLL: Gaussian, moment-matched to the draws (sample paths) or matched to the interval (conformal). "
              f"Command: `python benchmarks/stable_sde_lorenz.py --scale {args.scale} --task {args.task}`.\n\n")
    (RESULTS / f"{name}.md").write_text(header + md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
