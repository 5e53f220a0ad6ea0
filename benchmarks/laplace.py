"""Linearised Laplace (``sciflow.uq.LinearizedLaplace``) on a forecaster whose head LastLayerLaplace
cannot take, and on the Burgers surrogate of ``uq_comparison.py`` with larger subnetworks.

``forecast``: the neural ODE of ``sciflow train lorenz_neural_ode`` (Lorenz-63, the last layer of
its vector field: the forecast is an ODE solve, nonlinear in it), scored over 50-step forecasts of
the test windows as ``sciflow evaluate --uq laplace`` does — with one noise variance for all
entries, one per lead time, and one per lead time and component (the CLI's choice) — beside the
CLI's split-conformal intervals (per lead time and component) around the same forecast.

``forecast/ensemble``: the same experiment as a five-member deep ensemble, scored as the ensemble,
as the mixture of its members' Laplace approximations (``--uq laplace`` on an ensemble run; MoLA,
Eschenhagen et al. 2021) and as split conformal around the ensemble mean.

``burgers``: the single MLP of ``uq_comparison.py`` (D = 8352 weights, 128 noisy training states)
with the closed-form last-layer Laplace and the linearised one over the last layer (the same
posterior: a check), the middle hidden layer, and every weight — the full GGN Laplace with the GLM
predictive of Immer et al. (2021) under one isotropic prior whose precision MacKay's fixed point
picks. Writes ``benchmarks/results/laplace.json`` (``laplace_smoke.json`` at ``--scale smoke``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import write_result
from sciflow.uq import LastLayerLaplace, LinearizedLaplace, PointForecaster, score_prediction

BENCHMARK = {
    "name": "laplace", "script": "laplace.py", "family": "uncertainty", "owner": "previous session",
    "kind": "accuracy",
    "dataset": "Lorenz-63 forecasts of the lorenz_neural_ode run; the Burgers surrogate of uq_comparison",
    "description": "Linearised Laplace over the last layer of a neural ODE's vector field (noise per lead time "
                   "and component) against split conformal; subnetworks of the Burgers MLP",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": ["laplace_smoke"], "cpu": ["laplace"]},
    "metrics": [
        {"label": "Lorenz-63 neural ODE, Laplace over its field's last layer: interval score (90 %)",
         "path": "forecast/laplace_lead_component/interval_score",
         "baselines": {"split conformal per lead and component": "forecast/conformal/interval_score",
                       "Laplace, noise per lead": "forecast/laplace_lead/interval_score",
                       "Laplace, one noise": "forecast/laplace_shared/interval_score"}},
        {"label": "Lorenz-63 neural ODE, Laplace over its field's last layer: 90 % coverage",
         "better": "higher", "path": "forecast/laplace_lead_component/coverage",
         "baselines": {"split conformal per lead and component": "forecast/conformal/coverage",
                       "Laplace, one noise": "forecast/laplace_shared/coverage"},
         "note": "nominal 0.9; closer to 0.9 from above is better"},
        {"label": "Lorenz-63 neural ODE, 5-member ensemble with a Laplace per member (MoLA): interval score (90 %)",
         "path": "forecast/ensemble/laplace/interval_score",
         "baselines": {"deep ensemble": "forecast/ensemble/ensemble/interval_score",
                       "split conformal around the ensemble mean": "forecast/ensemble/conformal/interval_score",
                       "Laplace of one member": "forecast/laplace_lead_component/interval_score"}},
        {"label": "Lorenz-63 neural ODE, 5-member ensemble with a Laplace per member (MoLA): CRPS",
         "path": "forecast/ensemble/laplace/crps",
         "baselines": {"deep ensemble": "forecast/ensemble/ensemble/crps",
                       "Laplace of one member": "forecast/laplace_lead_component/crps"}},
        {"label": "Burgers MLP, linearised Laplace over every weight: CRPS",
         "path": "burgers/all/crps",
         "baselines": {"last layer (closed form)": "burgers/last_layer_closed_form/crps",
                       "hidden layer": "burgers/hidden/crps"}},
    ],
}


def forecast(args) -> dict:
    """Train the Lorenz neural ODE through the CLI, then Laplace with three noise groupings and the
    CLI's conformal and Laplace evaluations of the same run."""
    from sciflow.cli.commands import main as cli
    from sciflow.cli.evaluation import evaluate_run, forecast_batch, laplace_predictor, uq_metrics
    from sciflow.cli.pipeline import load_run, load_trained, prepare_splits

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "lorenz"
        t0 = time.perf_counter()
        extra = ["train.progress=false"] + (["train.max_steps=60", "data.params.n=12"] if args.scale == "smoke" else [])
        assert cli(["train", "lorenz_neural_ode", *extra, "--run-dir", str(run)]) == 0
        out["train_s"] = time.perf_counter() - t0
        exp = load_run(run)
        splits = prepare_splits(exp)
        model = load_trained(exp, run, 0)
        test = forecast_batch(splits.test, exp.eval.horizon)
        for name, dims in (("shared", ()), ("lead", (1,)), ("lead_component", (1, 2))):
            t0 = time.perf_counter()
            lap = laplace_predictor(model, splits, exp.eval, noise_dims=dims)
            pred = lap.predict(test, generator=torch.Generator().manual_seed(exp.train.seed))
            m = uq_metrics(pred, test.values, exp.eval.alpha, given=int(splits.attrs.get("history", 1)))
            m |= {"seconds": time.perf_counter() - t0, "prior_precision": lap.prior_precision,
                  "effective_parameters": lap.effective_parameters, "n_params": lap.n_params}
            out[f"laplace_{name}"] = m
        for uq in ("conformal", "laplace"):
            t0 = time.perf_counter()
            out[uq if uq == "conformal" else "cli_laplace"] = evaluate_run(run, uq) | {
                "seconds": time.perf_counter() - t0}
    # the CLI's --uq laplace is the per-lead-and-component fit
    cli, ours = out["cli_laplace"]["crps"], out["laplace_lead_component"]["crps"]
    out["cli_matches_lead_component"] = abs(cli / ours - 1) < 1e-6
    out["ensemble"] = ensemble_forecast(args)
    return out


def ensemble_forecast(args) -> dict:
    """The same experiment trained as a deep ensemble (``eval.uq=ensemble``): the ensemble itself, the
    mixture of its members' Laplace approximations (``--uq laplace`` on the run: MoLA) and split
    conformal around the ensemble mean, all through ``sciflow evaluate``."""
    from sciflow.cli.commands import main as cli
    from sciflow.cli.evaluation import evaluate_run

    members = 2 if args.scale == "smoke" else 5
    out: dict = {"members": members}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "lorenz_ensemble"
        t0 = time.perf_counter()
        extra = ["train.progress=false", "eval.uq=ensemble", f"eval.ensemble_size={members}"] + \
            (["train.max_steps=60", "data.params.n=12"] if args.scale == "smoke" else [])
        assert cli(["train", "lorenz_neural_ode", *extra, "--run-dir", str(run)]) == 0
        out["train_s"] = time.perf_counter() - t0
        for uq in ("ensemble", "laplace", "conformal"):
            t0 = time.perf_counter()
            out[uq] = evaluate_run(run, uq) | {"seconds": time.perf_counter() - t0}
    return out


def burgers(args) -> dict:
    """uq_comparison's Burgers data and single MLP; Laplace over growing subnetworks."""
    from uq_comparison import burgers_data, split, train
    from sciflow.nn.mlp import MLP

    n_tr, n_va, n_te = (32, 16, 32) if args.scale == "smoke" else (128, 64, 256)
    width, steps = (16, 200) if args.scale == "smoke" else (64, 1500)
    data, _ = burgers_data(n_tr + n_va + n_te, 32, 0.05, seed=0)
    tr, va, te = split(data, n_tr, n_va)
    torch.manual_seed(0)
    point = train(PointForecaster(MLP(32, 32, width=width, depth=2)), tr, steps, 3e-3, 0)
    y = te.values[:, 1:]
    out: dict = {"n_train": n_tr, "width": width, "n_weights": sum(p.numel() for p in point.parameters())}
    variants = {
        "last_layer_closed_form": lambda: LastLayerLaplace(point, alpha=0.1, n_samples=200),
        "last_layer": lambda: LinearizedLaplace(point, alpha=0.1, n_samples=200),
        "hidden": lambda: LinearizedLaplace(point, ["net.net.2.weight", "net.net.2.bias"], alpha=0.1, n_samples=200),
        "all": lambda: LinearizedLaplace(point, "all", alpha=0.1, n_samples=200),
    }
    for name, make in variants.items():
        t0 = time.perf_counter()
        lap = make().fit([tr]).fit_noise([va])
        pred = lap.predict(te, generator=torch.Generator().manual_seed(0))
        out[name] = score_prediction(pred, y) | {
            "seconds": time.perf_counter() - t0, "prior_precision": lap.prior_precision,
            "observation_noise": float(lap.observation_noise),
            "mean_epistemic_variance_test": float((pred.variance - float(lap.observation_noise)).mean())}
        if hasattr(lap, "n_params"):
            out[name] |= {"n_params": lap.n_params, "effective_parameters": lap.effective_parameters}
        print(name, {k: round(float(out[name][k]), 4) for k in ("crps", "coverage", "seconds")}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("smoke", "cpu"), default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    payload = {"args": vars(args), "forecast": forecast(args), "burgers": burgers(args)}
    write_result("laplace_smoke" if args.scale == "smoke" else "laplace", payload)


if __name__ == "__main__":
    main()
