"""Conformal intervals for a stream of ERA5 forecasts: split conformal vs adaptive conformal (ACI).

Data: ``../shared/reference/era5/era5_t2m_2019-03_uk.grib`` (hourly 2 m temperature, 0.25°, UK,
March 2019; or ``--source``). Forecaster: anomaly persistence at lead ``--lead`` hours,
``x(t+h) ~ c(hour(t+h)) + x(t) - c(hour(t))`` with ``c`` the hour-of-day climatology of the first
``--fit-days`` (1-7 March). Scores: absolute residuals. Every grid point is its own stream.

Methods, all with target coverage 0.9 and calibrated on the forecasts of the next
``--calibration-days`` (8-14 March, out of sample for the forecaster, as conformal needs) whose
truth is known when the test stream starts; in the stream, a forecast's truth arrives ``lead``
hours after it was issued (ACI's ``delay = lead - 1``), so no interval uses a truth from its future:

- ``split``: split conformal, one quantile per grid point, frozen after the calibration week;
- ``rolling``: the quantile of all past scores, updated as the truths arrive (ACI with gamma 0);
- ``aci_<gamma>``: adaptive conformal inference (Gibbs & Candès 2021) with that step size;
- ``dtaci``: DtACI (Gibbs & Candès 2024) over the authors' grid of eight step sizes, issuing the
  experts' weighted mean level; ``dtaci_randomized``: the paper's Alg. 1, one expert drawn by the
  weights per step and grid point (seed 0);
- ``quantile_<lr>``: online quantile tracking (Angelopoulos, Candès & Tibshirani 2023), learning
  rate ``lr`` times the range of each grid point's calibration scores: never infinite intervals;
- ``pid_<lr>``: their conformal PID control, the same plus the saturating error integrator
  (``ki = csat = 1``); ``pid_ar_<lr>``: with the AR scorecaster too (one lag and the 24-hour
  seasonal lag of the scores, forgetting 0.99).

Recorded over the test stream (issue times from 15 March on): coverage; the share of grid points
whose long-run coverage is within 0.9 +- 0.03; the coverage of each calendar week of test issue
times (mean over grid points) and the worst of them; the share of infinite intervals and the mean
width of the finite ones (K); the forecast's RMSE.

    python benchmarks/conformal_era5.py [--scale smoke|cpu]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from _common import time_it, write_result
from sciflow.data.era5.loader import open_era5
from sciflow.data.weatherbench import climatology, climatology_forecast
from sciflow.uq import (AbsoluteResidual, ACIResult, AdaptiveConformal, ARScorecaster, ConformalPID, Prediction,
                        QuantileTracker)
from sciflow.uq.adaptive_conformal import DTACI_GAMMAS, rolling_quantile
from sciflow.uq.conformal import conformal_quantile

BENCHMARK = {
    "name": "conformal_era5", "script": "conformal_era5.py", "family": "uncertainty", "owner": "previous session",
    "kind": "accuracy",
    "dataset": "ERA5 2 m temperature, UK 0.25 deg, March 2019: 6-h anomaly-persistence forecasts issued hourly",
    "description": "90 % conformal intervals on a forecast stream: adaptive conformal (ACI, DtACI), "
                   "quantile tracking and conformal PID vs split and rolling conformal",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"]},
    "results": {"smoke": ["conformal_era5_smoke"], "cpu": ["conformal_era5"]},
    "metrics": [
        {"label": "ACI (gamma 0.02): share of grid points with long-run coverage in 0.9 +- 0.03", "better": "higher",
         "path": "methods/aci_0.02/points_within_0.03",
         "baselines": {"split conformal": "methods/split/points_within_0.03",
                       "rolling conformal": "methods/rolling/points_within_0.03",
                       "DtACI": "methods/dtaci/points_within_0.03",
                       "DtACI, randomized (their Alg. 1)": "methods/dtaci_randomized/points_within_0.03",
                       "quantile tracking (lr 0.05)": "methods/quantile_0.05/points_within_0.03"}},
        {"label": "quantile tracking (lr 0.05): share of grid points with long-run coverage in 0.9 +- 0.03",
         "better": "higher", "path": "methods/quantile_0.05/points_within_0.03",
         "baselines": {"split conformal": "methods/split/points_within_0.03",
                       "ACI (gamma 0.02)": "methods/aci_0.02/points_within_0.03",
                       "DtACI": "methods/dtaci/points_within_0.03"}},
        {"label": "conformal PID, P + I (lr 0.01): share of grid points with long-run coverage in 0.9 +- 0.03",
         "better": "higher", "path": "methods/pid_0.01/points_within_0.03",
         "baselines": {"quantile tracking (lr 0.01)": "methods/quantile_0.01/points_within_0.03",
                       "PID with AR scorecaster (lr 0.01)": "methods/pid_ar_0.01/points_within_0.03",
                       "ACI (gamma 0.02)": "methods/aci_0.02/points_within_0.03"}},
        {"label": "conformal PID, P + I (lr 0.05): share of grid points with long-run coverage in 0.9 +- 0.03",
         "better": "higher", "path": "methods/pid_0.05/points_within_0.03",
         "baselines": {"quantile tracking (lr 0.05)": "methods/quantile_0.05/points_within_0.03",
                       "PID with AR scorecaster (lr 0.05)": "methods/pid_ar_0.05/points_within_0.03"}},
        {"label": "ACI (gamma 0.02): worst weekly coverage", "better": "higher",
         "path": "methods/aci_0.02/worst_week_coverage",
         "baselines": {"split conformal": "methods/split/worst_week_coverage",
                       "rolling conformal": "methods/rolling/worst_week_coverage",
                       "DtACI": "methods/dtaci/worst_week_coverage",
                       "quantile tracking (lr 0.05)": "methods/quantile_0.05/worst_week_coverage",
                       "conformal PID (lr 0.05)": "methods/pid_0.05/worst_week_coverage",
                       "PID with AR scorecaster (lr 0.05)": "methods/pid_ar_0.05/worst_week_coverage"},
         "note": "mean over grid points of each test week's coverage; nominal 0.9"},
        {"label": "ACI step time: sorted score memory vs re-sorting every step (speed-up, same intervals)",
         "path": "speed/speedup", "better": "higher", "unit": "x"},
        {"label": "ACI (gamma 0.02): share of infinite intervals (alpha_t below 1 / (n + 1))",
         "path": "methods/aci_0.02/infinite_fraction",
         "baselines": {"split conformal": "methods/split/infinite_fraction",
                       "rolling conformal": "methods/rolling/infinite_fraction",
                       "DtACI": "methods/dtaci/infinite_fraction",
                       "quantile tracking (lr 0.05)": "methods/quantile_0.05/infinite_fraction",
                       "conformal PID (lr 0.05)": "methods/pid_0.05/infinite_fraction"}},
        {"label": "ACI (gamma 0.02): mean width of the finite 90 % intervals", "unit": "K",
         "path": "methods/aci_0.02/mean_width",
         "baselines": {"split conformal": "methods/split/mean_width",
                       "rolling conformal": "methods/rolling/mean_width", "DtACI": "methods/dtaci/mean_width",
                       "quantile tracking (lr 0.05)": "methods/quantile_0.05/mean_width",
                       "conformal PID (lr 0.05)": "methods/pid_0.05/mean_width",
                       "PID with AR scorecaster (lr 0.05)": "methods/pid_ar_0.05/mean_width"}},
    ],
}

GRIB = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "era5" / "era5_t2m_2019-03_uk.grib"
SCALES = {"smoke": {"coarsen": 4, "gammas": [0.02], "lrs": [0.01, 0.05], "repeats": 1},
          "cpu": {"coarsen": 1, "gammas": [0.005, 0.02, 0.05], "lrs": [0.01, 0.05, 0.1], "repeats": 3}}
ALPHA = 0.1


def stream(source: str, lead: int, coarsen: int, fit_days: int, calibration_days: int):
    """Forecasts and truths ``(issue time, lat, lon)`` from the first issue time after the
    forecaster's fitting period, the issue times, and the index where the test stream starts."""
    ds = open_era5(source, variables=["2m_temperature"])
    if coarsen > 1:
        from sciflow.data.era5 import coarsen as _coarsen

        ds = _coarsen(ds, coarsen)
    t2m = ds["2m_temperature"].astype(np.float64)
    times = ds["time"].values
    fit_end = np.datetime64(str(times[0])[:10]) + np.timedelta64(fit_days, "D")
    cal_end = fit_end + np.timedelta64(calibration_days, "D")
    clim = climatology(t2m.sel(time=times < fit_end), by="hour")
    x = torch.from_numpy(t2m.values)
    c = torch.from_numpy(climatology_forecast(clim, times, by="hour").values)  # c(hour(t)) at every t
    # issue times after the fitting period whose truth is in the record (no truth seen in fitting)
    issue = torch.arange(int(np.searchsorted(times, fit_end)), x.shape[0] - lead)
    pred = c[issue + lead] + x[issue] - c[issue]
    truth = x[issue + lead]
    test_from = int(np.searchsorted(times[issue], cal_end))
    return pred, truth, test_from, times[issue], ds["lat"].values, ds["lon"].values


def weekly(cov_t: torch.Tensor, issue_times: np.ndarray) -> list[float]:
    """Coverage (mean over grid points) of each calendar week (7-day blocks) of the stream."""
    days = (issue_times - issue_times[0]).astype("timedelta64[D]").astype(np.int64)
    weeks = torch.from_numpy(days // 7)
    return [float(cov_t[weeks == w].mean()) for w in torch.unique(weeks)]


def summarise(name: str, res: ACIResult, issue_times: np.ndarray, cpu_s: float) -> dict:
    per_point = res.coverage()
    weeks = weekly((~res.miscovered).double().flatten(1).mean(1), issue_times)
    out = {**res.summary(), "points_within_0.03": float(((per_point - 0.9).abs() <= 0.03).double().mean()),
           "point_coverage_min": float(per_point.min()), "point_coverage_max": float(per_point.max()),
           "weekly_coverage": weeks, "worst_week_coverage": min(weeks), "cpu_s": cpu_s}
    print(f"{name:>10}: coverage {out['coverage']:.3f}, points within 0.9+-0.03 {out['points_within_0.03']:.2f}, "
          f"weeks {', '.join(f'{w:.3f}' for w in weeks)}, width {out['mean_width']:.2f} K", flush=True)
    return out


def resort_aci(cal_scores: torch.Tensor, scores: torch.Tensor, gamma: float, delay: int) -> torch.Tensor:
    """The reference ACI loop: every step re-sorts all past scores (``rolling_quantile``). Returns
    the issued quantiles, to check and time ``AdaptiveConformal``'s sorted memory against."""
    past, valid = cal_scores, torch.ones_like(cal_scores, dtype=torch.bool)
    a = torch.full(scores.shape[1:], ALPHA, dtype=torch.float64)
    qs, errs = [], []
    for t in range(scores.shape[0]):
        if t > delay:  # the truth of step t - delay - 1 has arrived
            a = a + gamma * (ALPHA - errs[t - delay - 1].double())
            past = torch.cat([past, scores[t - delay - 1:t - delay]])
            valid = torch.ones_like(past, dtype=torch.bool)
        qs.append(rolling_quantile(past, valid, a))
        errs.append(scores[t] > qs[-1])
    return torch.stack(qs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--source", default=os.environ.get("SCIFLOW_ERA5_SOURCE", str(GRIB)))
    ap.add_argument("--lead", type=int, default=6, help="forecast lead time in hours")
    ap.add_argument("--fit-days", type=int, default=7, help="days fitting the forecaster's climatology")
    ap.add_argument("--calibration-days", type=int, default=7, help="the next days' forecasts calibrate")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sc = SCALES[args.scale]
    pred, truth, test_from, issue_times, lat, lon = stream(args.source, args.lead, sc["coarsen"], args.fit_days,
                                                           args.calibration_days)
    score = AbsoluteResidual()
    n_cal = test_from - args.lead + 1  # issued in the calibration days and verified before the test starts
    cal_scores = score.score(Prediction(pred[:n_cal]), truth[:n_cal])
    test_pred, test_y, test_times = Prediction(pred[test_from:]), truth[test_from:], issue_times[test_from:]
    methods = {}
    c0 = time.process_time()
    q = conformal_quantile(cal_scores, ALPHA).expand_as(test_y)
    lo, hi = score.interval(test_pred, q)
    split = ACIResult(lo, hi, torch.full_like(q, ALPHA), score.score(test_pred, test_y) > q)
    methods["split"] = summarise("split", split, test_times, time.process_time() - c0)
    runs = {}
    for name, gamma in [("rolling", 0.0)] + [(f"aci_{g:g}", g) for g in sc["gammas"]]:
        c0 = time.process_time()
        aci = AdaptiveConformal(ALPHA, gamma, score, delay=args.lead - 1).calibrate_scores(cal_scores)
        runs[gamma] = aci.run(test_pred, test_y)
        methods[name] = summarise(name, runs[gamma], test_times, time.process_time() - c0)
        methods[name]["gamma"] = gamma
    c0 = time.process_time()
    dt = AdaptiveConformal(ALPHA, DTACI_GAMMAS, score, delay=args.lead - 1).calibrate_scores(cal_scores)
    res = dt.run(test_pred, test_y)
    methods["dtaci"] = summarise("dtaci", res, test_times, time.process_time() - c0)
    methods["dtaci"]["gammas"] = list(DTACI_GAMMAS)
    c0 = time.process_time()
    rnd = AdaptiveConformal(ALPHA, DTACI_GAMMAS, score, delay=args.lead - 1, randomize=True)
    res = rnd.calibrate_scores(cal_scores).run(test_pred, test_y, generator=torch.Generator().manual_seed(0))
    methods["dtaci_randomized"] = summarise("dtaci_rnd", res, test_times, time.process_time() - c0)
    methods["dtaci"]["final_weighted_gamma_quartiles"] = torch.quantile(
        (dt.weights * dt.gammas.reshape(-1, 1, 1)).sum(0).flatten(), torch.tensor([0.25, 0.5, 0.75],
                                                                                  dtype=torch.float64)).tolist()
    for lr in sc["lrs"]:
        c0 = time.process_time()
        qt = QuantileTracker(ALPHA, lr, score, delay=args.lead - 1).calibrate_scores(cal_scores)
        methods[f"quantile_{lr:g}"] = summarise(f"quantile_{lr:g}", qt.run(test_pred, test_y), test_times,
                                                time.process_time() - c0)
        methods[f"quantile_{lr:g}"]["lr"] = lr
        for name, caster in ((f"pid_{lr:g}", None), (f"pid_ar_{lr:g}", ARScorecaster(order=1, period=24))):
            c0 = time.process_time()
            pid = ConformalPID(ALPHA, lr, score, delay=args.lead - 1, scorecaster=caster).calibrate_scores(cal_scores)
            methods[name] = summarise(name, pid.run(test_pred, test_y), test_times, time.process_time() - c0)
            methods[name].update(lr=lr, ki=pid.ki, csat=pid.csat, scorecaster=repr(caster))
    # speed of the sorted score memory against re-sorting every step (medians), same intervals
    def memory_run():
        aci = AdaptiveConformal(ALPHA, 0.02, score, delay=args.lead - 1).calibrate_scores(cal_scores)
        return aci.run(test_pred, test_y)

    def resort_run():
        return resort_aci(cal_scores, score.score(test_pred, test_y), 0.02, args.lead - 1)

    same = bool(torch.equal(runs[0.02].upper, test_pred.mean + resort_run()))  # the loop's gamma-0.02 run
    resort_s = time_it(resort_run, repeats=sc["repeats"], warmup=0)["median_s"]
    memory_s = time_it(memory_run, repeats=sc["repeats"], warmup=0)["median_s"]
    speed = {"aci_0.02_sorted_memory_s": memory_s, "aci_0.02_resort_every_step_s": resort_s,
             "speedup": resort_s / memory_s, "same_intervals": same, "repeats": sc["repeats"]}
    print(f"sorted memory {memory_s:.2f} s vs re-sort {resort_s:.2f} s: {resort_s / memory_s:.1f}x, same: {same}")
    rmse = float(((test_pred.mean - test_y) ** 2).mean().sqrt())
    write_result("conformal_era5" + ("_smoke" if args.scale == "smoke" else ""), {
        "scale": args.scale, "alpha": ALPHA, "lead_h": args.lead, "fit_days": args.fit_days,
        "calibration_days": args.calibration_days,
        "grid": [len(lat), len(lon)], "n_calibration": int(cal_scores.shape[0]), "n_test": int(test_y.shape[0]),
        "test_first_issue": str(test_times[0]), "forecast_rmse_K": rmse, "methods": methods, "speed": speed})


if __name__ == "__main__":
    main()
