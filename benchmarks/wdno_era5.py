"""ERA5 2 m temperature, 24-hour trajectories: WDNO vs persistence, climatology and FNO-3D.

Data: ``../shared/reference/era5/era5_t2m_2019-03_uk.grib`` (hourly ``t2m``, 0.25°, UK, March
2019) through ``sciflow.data.era5.open_era5``; training windows from 1–24 March, test windows from
the last week (25–31 March), split by time before windowing so no test hour is seen in training
(``sciflow.models.neural_operator.weather.era5_forecast_data``). A window is 24 hourly fields; the
first ``history = 6`` are given, the remaining 18 are forecast (WDNO's conditioning by
replacement; the FNO-3D maps the 6 given hours to the 18 others in one shot).

Baselines measured in the same run (WeatherBench, Rasp et al. 2020): persistence of the last given
hour; climatology of the training period (time mean) and its hour-of-day version (the diurnal
cycle, a strong baseline for 2 m temperature); anomaly persistence (the hourly climatology plus the
last given hour's departure from it).

``--target anomaly`` (default) trains the learned models on departures from the training period's
hourly climatology and adds the climatology back to their forecasts (the usual practice of weather
ML: the known diurnal cycle is not left for the network to learn; the climatology uses training
hours only, so nothing of the test period leaks); ``--target field`` learns the fields themselves
(at the cpu scale: WDNO lat-weighted RMSE 1.95 K with fields vs 1.55 K with anomalies, hourly
climatology 1.78 K).

Scores per lead hour: latitude-weighted RMSE (Rasp et al. 2020, eq. 1) and latitude-weighted CRPS
(ensemble CRPS for WDNO; a deterministic forecast's CRPS is its MAE); WDNO also reports the
spread–skill ratio. The same script runs on a WeatherBench-2 zarr store with
``--source <store> --channels geopotential@500,temperature@850 --test-start ...``.

``--scale cpu`` coarsens the grid 2x (16 x 24) and trains a few hundred steps on one core;
``--scale gpu`` (the GPU check) keeps 0.25° and caps each model's training by wall clock
(``train_s``); ``--scale paper`` trains for hours. Writes ``benchmarks/results/wdno_era5[_<scale>].json``
and figures under ``benchmarks/results/figures/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch

from _common import training_budget, write_result
from _operators import figure_path, plot_fields, predict, train
from sciflow.models.neural_operator import Config, NeuralOperator
from sciflow.models.neural_operator.weather import (channel_climatologies, climatology_trajectory, departures,
                                                    era5_forecast_data, lat_weighted_crps,
                                                    lat_weighted_rmse_per_lead, persistence_forecast)
from sciflow.uq.scores import latitude_weights, spread_skill_ratio

BENCHMARK = {
    "name": "wdno_era5", "script": "wdno_era5.py", "family": "wavelet diffusion", "owner": "D", "kind": "accuracy",
    "dataset": "ERA5 t2m, UK, March 2019 hourly (train 1-24, test 25-31 March), 24 h windows, 6 h given",
    "description": "latitude-weighted RMSE / CRPS of WDNO vs persistence, (hourly) climatology, anomaly persistence "
                   "and FNO-3D in the same run; the learned models forecast departures from the hourly climatology",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu", "--device", "cuda"]},
    "results": {"smoke": ["wdno_era5_smoke"], "cpu": ["wdno_era5"], "gpu": ["wdno_era5_gpu"]},
    "seed_flag": "--seed",
    "metrics": [
        {"label": "WDNO ensemble-mean lat-weighted RMSE (K, mean over 1-18 h)", "path": "results/wdno/rmse_mean",
         "unit": "K",
         "baselines": {"persistence": "results/persistence/rmse_mean", "climatology": "results/climatology/rmse_mean",
                       "hourly climatology": "results/climatology_hourly/rmse_mean",
                       "anomaly persistence": "results/anomaly_persistence/rmse_mean",
                       "FNO-3D": "results/fno3d/rmse_mean"}},
        {"label": "WDNO lat-weighted CRPS (K, mean over 1-18 h)", "path": "results/wdno/crps_mean", "unit": "K",
         "baselines": {"persistence": "results/persistence/crps_mean",
                       "hourly climatology": "results/climatology_hourly/crps_mean",
                       "FNO-3D": "results/fno3d/crps_mean"}},
    ],
    "timeout_s": {"cpu": 2400, "gpu": 900},
}

GRIB = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "era5" / "era5_t2m_2019-03_uk.grib"
SCALES = {
    "smoke": dict(coarsen=4, train_stride=12, steps=3, wdno_steps=3, batch=8, n_samples=2, nfe=4, base=8,
                  test_stride=24),
    "cpu": dict(coarsen=2, train_stride=3, steps=100, wdno_steps=400, batch=8, n_samples=8, nfe=20, base=8,
                test_stride=6),
    "gpu": dict(coarsen=1, train_stride=1, steps=5000, wdno_steps=20000, batch=32, n_samples=16, nfe=50, base=32,
                test_stride=3, train_s=15.0, wdno_train_s=40.0),
    "paper": dict(coarsen=1, train_stride=1, steps=5000, wdno_steps=20000, batch=32, n_samples=16, nfe=50, base=32,
                  test_stride=3),
}


def scores(pred: torch.Tensor, truth: torch.Tensor, lat: torch.Tensor, history: int) -> dict:
    """``pred``: ``(batch, window, channel, lat, lon)`` or an ensemble with a leading sample axis."""
    ens = pred if pred.ndim == 6 else pred[None]
    f, y = ens[:, :, history:], truth[:, history:]
    rmse = lat_weighted_rmse_per_lead(f.mean(0), y, lat)  # (lead, channel)
    crps = lat_weighted_crps(f, y, lat)
    out = {"rmse_per_lead": rmse[:, 0].tolist(), "crps_per_lead": crps[:, 0].tolist(),
           "rmse_mean": float(rmse.mean()), "crps_mean": float(crps.mean())}
    if ens.shape[0] > 1:
        w = latitude_weights(lat).reshape(-1, 1)
        out["spread_skill"] = float(spread_skill_ratio(f, y, weights=w))
        out["single_member_rmse_mean"] = float(lat_weighted_rmse_per_lead(f[0], y, lat).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--source", default=os.environ.get("SCIFLOW_ERA5_SOURCE", str(GRIB)),
                    help="ERA5 GRIB / NetCDF / zarr source (default: $SCIFLOW_ERA5_SOURCE, else the reference GRIB)")
    ap.add_argument("--channels", default="2m_temperature")
    ap.add_argument("--test-start", default="2019-03-25")
    ap.add_argument("--window", type=int, default=24)
    ap.add_argument("--history", type=int, default=6)
    ap.add_argument("--models", default="wdno,fno3d")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-s", type=float, default=None,
                    help="wall-clock cap on each model's training in seconds (default: the scale's, if any)")
    ap.add_argument("--target", choices=["field", "anomaly"], default="anomaly",
                    help="what the learned models forecast: the fields, or departures from the hourly climatology")
    ap.add_argument("--scaling", choices=["channel", "field"], default="channel",
                    help="WDNO coefficient scaling: per sub-band channel, or one scale per field (Config.scaling)")
    ap.add_argument("--tag", default="", help="suffix of the result file (runs of a subset of --models)")
    ap.add_argument("--wavelet-mode", default="periodization", choices=["periodization", "zero"],
                    help="WDNO boundary mode (zero: the jump to 0 at the edges of a K-valued field dominates "
                         "the coefficient statistics)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sc = dict(SCALES[args.scale])
    if args.train_s is not None:
        sc["train_s"] = sc["wdno_train_s"] = args.train_s
    dev = torch.device(args.device)
    channels = args.channels.split(",")
    H = args.history
    t0 = time.perf_counter()
    data = era5_forecast_data(args.source, channels, test_start=args.test_start, window=args.window, history=H,
                              train_stride=sc["train_stride"], test_stride=sc["test_stride"], coarsen=sc["coarsen"])
    load_s = time.perf_counter() - t0
    truth = data.test.values
    lat = data.lat
    results: dict[str, dict] = {}
    preds: dict[str, torch.Tensor] = {}
    results["persistence"] = scores(persistence_forecast(data.test, H), truth, lat, H)
    results["climatology"] = scores(climatology_trajectory(data, data.test_init, by=None, like=data.test),
                                    truth, lat, H)
    clims = channel_climatologies(data, "hour")  # the training period's hour-of-day climatology, once
    hourly = climatology_trajectory(data, data.test_init, by="hour", like=data.test, clims=clims)
    results["climatology_hourly"] = scores(hourly, truth, lat, H)
    # departures from the hourly climatology, history steps included
    clim_test = climatology_trajectory(data, data.test_init, by="hour", clims=clims)
    test_anom = departures(data, data.test, data.test_init, clims)
    results["anomaly_persistence"] = scores(clim_test + persistence_forecast(test_anom, H), truth, lat, H)
    if args.target == "anomaly":
        train_b, test_b, offset = departures(data, data.train, data.train_init, clims), test_anom, clim_test
    else:
        train_b, test_b, offset = data.train, data.test, torch.zeros(())
    C = len(channels)
    out_name = (("wdno_era5" if args.scale == "cpu" else f"wdno_era5_{args.scale}")
                + (f"_{args.tag}" if args.tag else ""))
    n_lat, n_lon = truth.shape[-2:]
    models = args.models.split(",")
    if "fno3d" in models:
        torch.manual_seed(args.seed)
        cfg = Config(dim=2, channels=C, history=H, modes=(8, min(8, (n_lat + 4) // 2), min(8, (n_lon + 4) // 2)),
                     width=20, time_padding=6, space_padding=4, loss="mse")  # K-valued fields: see Config.loss
        model = NeuralOperator(cfg)
        model.fit_scaler(train_b.values)
        training = train(model, train_b, steps=sc["steps"], batch_size=sc["batch"], lr=1e-3, weight_decay=1e-4,
                         halve_every=max(1, sc["steps"] // 4), seed=args.seed, device=args.device,
                         max_time_s=training_budget(sc.get("train_s"), 2 if "wdno" in models else 1))
        model = model.to(dev).eval()
        pred = predict(lambda b: model.predict(b.to(dev)).cpu(), test_b) + offset
        preds["FNO-3D"] = pred
        results["fno3d"] = {**scores(pred, truth, lat, H), "training": training,
                            "parameters": sum(p.numel() for p in model.parameters())}
        write_result(out_name, {"complete": False, "results": results}, device=args.device)  # survives interruption
    if "wdno" in models:
        from sciflow.models.wavelet_diffusion import Config as WDNOConfig
        from sciflow.models.wavelet_diffusion import WDNO

        torch.manual_seed(args.seed)
        wcfg = WDNOConfig(dim=2, channels=C, forcing_channels=0, n_initial=H, base_channels=sc["base"],
                          channel_mults=(1, 2, 2), num_res_blocks=1, wavelet="bior2.4", mode=args.wavelet_mode,
                          scaling=args.scaling)
        model = WDNO(wcfg)
        model.fit_scaler(train_b)
        training = train(model, train_b, steps=sc["wdno_steps"], batch_size=sc["batch"], lr=1e-3, seed=args.seed,
                         device=args.device, grad_clip=1.0, max_time_s=training_budget(sc.get("wdno_train_s"), 1))
        model = model.to(dev).eval()
        g = torch.Generator(device=dev).manual_seed(args.seed)
        t1 = time.perf_counter()
        samples = predict(lambda b: model.sample(b.to(dev), sc["n_samples"], nfe=sc["nfe"], generator=g).cpu(),
                          test_b, chunk=8) + offset
        sample_s = time.perf_counter() - t1
        preds["WDNO mean"] = samples.mean(0)
        preds["WDNO spread"] = samples.std(0)
        results["wdno"] = {**scores(samples, truth, lat, H), "training": training, "n_samples": sc["n_samples"],
                           "nfe": sc["nfe"], "sampler": "ddim", "sample_s": sample_s,
                           "trajectories_per_s": len(data.test) * sc["n_samples"] / sample_s,
                           "parameters": sum(p.numel() for p in model.parameters()),
                           "config": dataclasses.asdict(wcfg)}
    best = min(("persistence", "climatology", "climatology_hourly", "anomaly_persistence"),
               key=lambda k: results[k]["rmse_mean"])
    ratios = {k: {"rmse_vs_" + best: v["rmse_mean"] / results[best]["rmse_mean"]} for k, v in results.items()}
    payload = {
        "complete": True,
        "config": {"scale": args.scale, **sc, "source": args.source, "channels": channels, "window": args.window,
                   "history": H, "test_start": args.test_start, "target": args.target, "grid": [n_lat, n_lon],
                   "n_train_windows": len(data.train), "n_test_windows": len(data.test), "load_s": load_s},
        "results": results, "ratios": ratios, "best_baseline": best,
        "note": ("train 1-24 March 2019, test 25-31 March; " + (
            "CPU scale coarsened 2x with a few hundred steps" if args.scale == "cpu" else
            f"grid coarsened {sc['coarsen']}x, training capped at {sc['train_s']:g} s (WDNO {sc['wdno_train_s']:g} s) "
            "of wall clock" if sc.get("train_s") else f"grid coarsened {sc['coarsen']}x")
            + ": far below the data and compute of WeatherBench-scale models"),
    }
    rows = {"truth": truth[0, H:, 0], "hourly climatology": hourly[0, H:, 0]}
    rows.update({k: v[0, H:, 0] for k, v in preds.items()})
    plot_fields(rows, figure_path(f"{out_name}.png"),
                title="ERA5 t2m (K), first test window, forecast hours 1 / 9 / 18", cmap="coolwarm",
                times=[0, (args.window - H) // 2, args.window - H - 1], transpose=False)
    _plot_leads(results, figure_path(f"{out_name}_leads.png"))
    write_result(out_name, payload, device=args.device)


def _plot_leads(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, r in results.items():
        leads = range(1, len(r["rmse_per_lead"]) + 1)
        axes[0].plot(leads, r["rmse_per_lead"], label=name)
        axes[1].plot(leads, r["crps_per_lead"], label=name)
    axes[0].set_ylabel("lat-weighted RMSE (K)")
    axes[1].set_ylabel("lat-weighted CRPS (K)")
    for ax in axes:
        ax.set_xlabel("lead (h)")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
