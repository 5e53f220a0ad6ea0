"""LangevinFlow vs the LFADS-like GRU sequential VAE and a latent ODE on the Lorenz-driven spiking population.

Data: :func:`sciflow.data.pdes.lorenz.generate_lorenz_spiking` (Lorenz-63 latent, random log-linear
readout, Poisson counts). The last ``n_heldout`` neurons are held out (decoded, never encoded)
and the last ``n_forward`` bins are hidden from the encoder. Trials are split 80/20 into
train/test; metrics on the test trials (rates = mean of ``n_eval_samples`` posterior samples):
rate R² vs the true rates, co-smoothing bits/spike (held-out neurons), held-in bps, fp-bps; mean ±
std over seeds. Speed: one training epoch of LangevinFlow with the closed-form force of the
coupled-oscillator potential vs the naive ``autograd.grad`` force at every bin (same model and
data, same run).

With ``--task gaussian``: noisy (10 % noise), partially observed Lorenz-63 (the encoder sees x and
y; z is decoded only), Gaussian likelihood, the last 10 bins hidden; 80/20/20 train/calibration/
test trials. Forecast CRPS (``sciflow.uq.scores.crps_ensemble``), coverage and width of the 90 %
central interval of 64 draws of ``model.sample`` (posterior, latent-path and observation noise)
against the held-out noisy observations (``obs_*``) and the clean state (``clean_*``); the same for
the noise-free ``model.sample_means`` (``means_*``, what earlier versions reported); split-conformal
CQR intervals (``sciflow.uq.SplitConformal``, one quantile per horizon and channel, calibrated on
the calibration trials) (``conformal_*``); climatology samples as the reference. JSON
``langevin_flow_lorenz63_gaussian.json``.

    python benchmarks/langevin_flow_lorenz.py                  # CPU size, a few minutes
    python benchmarks/langevin_flow_lorenz.py --scale 4        # more conditions, bins and steps
    python benchmarks/langevin_flow_lorenz.py --task gaussian  # continuous observations, CRPS
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, shown_path, time_it, write_result  # noqa: E402

from sciflow.data.batches import TrajectoryBatch  # noqa: E402
from sciflow.data.pdes.lorenz import generate_lorenz_spiking  # noqa: E402
from sciflow.models.langevin_flow import (Config, GRUSequentialVAE, LangevinFlow, LatentODE,  # noqa: E402
                                          bits_per_spike,
                                          co_smoothing, forward_prediction_bps, rate_r2)


def make_data(scale: int, seed: int, device):
    ds = generate_lorenz_spiking(n=16 * scale, n_trials=10, n_neurons=30, n_bins=50 * min(scale, 2),
                                 bin_width=0.01, latent_dt=0.02, base_rate=20.0, readout_scale=1.0, seed=seed)
    counts = torch.tensor(ds["counts"].values, dtype=torch.float32)
    rates = torch.tensor(ds["rates"].values, dtype=torch.float32) * float(ds.attrs["bin_width"])
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(counts.shape[0], generator=g)
    n_test = counts.shape[0] // 5
    te, tr = perm[:n_test], perm[n_test:]
    times = torch.tensor(ds["time"].values, dtype=torch.float32)
    mk = lambda idx: TrajectoryBatch(values=counts[idx].to(device), times=times.to(device))  # noqa: E731
    return mk(tr), mk(te), rates[te].to(device)


def train(model, data: TrajectoryBatch, steps: int, batch_size: int, lr: float, seed: int):
    torch.manual_seed(seed)  # training noise (reparameterisation, dropout) in a script is seeded here
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=g)
        loss = model.loss(data.index(idx))
        opt.zero_grad()
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return float(loss.terms["nll"])


def evaluate(model, test: TrajectoryBatch, true_rates, cfg: Config, seed: int) -> dict[str, float]:
    model.eval()
    rates = model.posterior_mean(test, generator=torch.Generator(device=test.values.device).manual_seed(seed))
    counts = test.values
    held_out = list(range(cfg.n_input, cfg.obs_dim))
    T = counts.shape[1]
    obs = slice(0, T - cfg.n_forward)
    cs = co_smoothing(rates[:, obs], counts[:, obs], held_out)
    return {
        "rate_r2": float(rate_r2(rates, true_rates)),
        "rate_r2_variance_weighted": float(rate_r2(rates, true_rates, variance_weighted=True)),
        "co_bps": float(cs["co_bps"]),
        "heldin_bps": float(cs["heldin_bps"]),
        "fp_bps": float(forward_prediction_bps(rates, counts, cfg.n_forward)),
        "true_rates_co_bps": float(bits_per_spike(true_rates[:, obs, cfg.n_input:], counts[:, obs, cfg.n_input:])),
    }


def _forecast_scores(draws, truth) -> dict[str, float]:
    from sciflow.uq.scores import crps_ensemble, interval_coverage

    lo, hi = draws.quantile(0.05, dim=0), draws.quantile(0.95, dim=0)
    return {"crps": float(crps_ensemble(draws, truth)), "coverage90": float(interval_coverage(lo, hi, truth)),
            "width90": float((hi - lo).mean())}


def gaussian_task(args, device) -> None:
    """Forecast calibration on noisy, partially observed Lorenz-63 (see the module docstring)."""
    from sciflow.data.pdes.lorenz import generate_lorenz63
    from sciflow.uq.conformal import QuantileScore, SplitConformal
    from sciflow.uq.prediction import Prediction
    from sciflow.uq.sampling import SamplingPredictor
    from sciflow.uq.scores import interval_coverage

    steps = args.steps or 300 * args.scale
    n_fwd, n_draws = 10, 64
    cfg = Config(obs_dim=3, input_dim=2, n_forward=n_fwd, likelihood="gaussian", latent_dim=16, n_channels=2,
                 encoder_hidden=64, d_model=64, ff_dim=128, generator_hidden=64, kl_ramp_steps=steps // 3,
                 coordinated_dropout=0.0)
    models = {"langevin_flow": LangevinFlow, "gru_svae": GRUSequentialVAE, "latent_ode": LatentODE}
    per_seed: dict[str, list[dict[str, float]]] = {k: [] for k in (*models, "climatology")}
    for seed in range(args.seeds):
        n_cal = n_test = 20 * args.scale
        ds = generate_lorenz63(80 * args.scale + n_cal + n_test, n_time=60, dt=0.02, noise_std=0.1, seed=seed)
        mean = torch.tensor(ds.attrs["state_mean"], dtype=torch.float32)
        std = torch.tensor(ds.attrs["state_std"], dtype=torch.float32)
        obs = (torch.tensor(ds["observed"].values, dtype=torch.float32) - mean) / std
        clean = (torch.tensor(ds["state"].values, dtype=torch.float32) - mean) / std
        times = torch.tensor(ds["time"].values, dtype=torch.float32).to(device)
        te_i, cal_i, tr_i = slice(0, n_test), slice(n_test, n_test + n_cal), slice(n_test + n_cal, None)
        tr = TrajectoryBatch(values=obs[tr_i].to(device), times=times)
        cal = TrajectoryBatch(values=obs[cal_i].to(device), times=times)
        te = TrajectoryBatch(values=obs[te_i].to(device), times=times)
        truth_obs, truth_clean = obs[te_i, -n_fwd:].to(device), clean[te_i, -n_fwd:].to(device)
        g = torch.Generator().manual_seed(seed)
        pool_obs, pool_clean = obs[tr_i].reshape(-1, 3), clean[tr_i].reshape(-1, 3)
        pick = torch.randint(pool_obs.shape[0], (n_draws,), generator=g)
        expand = lambda x: x[pick][:, None, None, :].expand(n_draws, *truth_obs.shape).to(device)  # noqa: E731
        per_seed["climatology"].append({
            **{f"obs_{k}": v for k, v in _forecast_scores(expand(pool_obs), truth_obs).items()},
            **{f"clean_{k}": v for k, v in _forecast_scores(expand(pool_clean), truth_clean).items()}})
        for name, cls in models.items():
            torch.manual_seed(seed)
            model = cls(cfg).to(device)
            train(model, tr, steps, 32, 3e-3, seed)
            model.eval()
            gen = torch.Generator(device=device).manual_seed(seed)
            draws = model.sample(te, n_draws, generator=gen)[:, :, -n_fwd:]  # observation noise included
            means = model.sample_means(te, n_draws, generator=gen)[:, :, -n_fwd:]  # latent uncertainty only
            row = {**{f"obs_{k}": v for k, v in _forecast_scores(draws, truth_obs).items()},
                   **{f"clean_{k}": v for k, v in _forecast_scores(draws, truth_clean).items()},
                   **{f"means_obs_{k}": v for k, v in _forecast_scores(means, truth_obs).items()},
                   **{f"means_clean_{k}": v for k, v in _forecast_scores(means, truth_clean).items()}}
            # split conformal (CQR around the model's own 90 % interval), one quantile per
            # (horizon, channel), calibrated on held-out trials against their noisy observations
            predictor = SamplingPredictor(model, n_samples=n_draws, alpha=0.1)
            cp = SplitConformal(predictor, alpha=0.1, score=QuantileScore())
            cal_draws = model.sample(cal, n_draws, generator=gen)[:, :, -n_fwd:]
            cal_pred = Prediction.from_samples(cal_draws, 0.1)
            cp.calibrate_scores(cp.score.score(cal_pred, cal.values[:, -n_fwd:]))
            conf = cp.wrap(Prediction.from_samples(draws, 0.1))
            row["conformal_obs_coverage90"] = float(interval_coverage(conf.lower, conf.upper, truth_obs))
            row["conformal_obs_width90"] = float((conf.upper - conf.lower).mean())
            if cfg.observation_std == "decoded":
                with torch.no_grad():
                    row["mean_predictive_std_forecast"] = float(
                        model.observation_std(model._draw_params(te, 1, gen))[:, -n_fwd:].mean())
            per_seed[name].append(row)
            print(name, seed, {k: round(v, 4) for k, v in row.items()}, flush=True)
    summary = {name: {k: {"mean": statistics.mean(r[k] for r in rs), "std": statistics.pstdev([r[k] for r in rs])}
                      for k in rs[0]} for name, rs in per_seed.items()}
    clim = summary["climatology"]
    write_result("langevin_flow_lorenz63_gaussian",
                 {"config": {**cfg.__dict__, "steps": steps, "scale": args.scale, "seeds": args.seeds,
                             "n_draws": n_draws, "n_train": 80 * args.scale, "n_calibration": 20 * args.scale,
                             "n_test": 20 * args.scale},
                  "notes": "obs_*: model.sample (posterior + latent-path + observation noise) vs the held-out noisy "
                           "observations; clean_*: the same draws vs the noise-free state; means_*: "
                           "model.sample_means (no observation noise); conformal_*: split-conformal CQR.",
                  "metrics": summary, "per_seed": per_seed,
                  "ratios": {f"{k}_obs_crps_over_climatology":
                             summary[k]["obs_crps"]["mean"] / clim["obs_crps"]["mean"] for k in models}},
                 device=device)


def save_figures(model, test: TrajectoryBatch, true_rates, tag: str) -> list[str]:
    """3-D latents, inferred vs true rates and a raster with predicted rates, under results/figures/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sciflow.models.langevin_flow.plots import plot_latents_3d, plot_raster, plot_rates

    out = RESULTS / "figures"  # the suite's --out folder when run by benchmarks/run.py
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    gen = torch.Generator(device=test.values.device).manual_seed(0)
    rates = model.posterior_mean(test, generator=gen)
    figs = {"rates": plot_rates(rates, true_rates, neurons=(0, 1, 2, 3)),
            "raster": plot_raster(test.values, rates)}
    if isinstance(model, LangevinFlow):
        figs["latents3d"] = plot_latents_3d(model.latents(test, generator=gen), title=f"{tag} latents z[0:3]")
    paths = []
    for key, fig in figs.items():
        path = out / f"{tag}_{key}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        paths.append(shown_path(path))
    plt.close("all")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--task", choices=("spikes", "gaussian"), default="spikes")
    ap.add_argument("--no-figures", action="store_true", help="skip the PNGs (smoke runs)")
    ap.add_argument("--speed-repeats", type=int, default=3, help="timed epochs per variant (0: skip timing)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if args.task == "gaussian":
        return gaussian_task(args, device)
    steps = args.steps or 300 * args.scale
    cfg = Config(obs_dim=30, input_dim=24, n_forward=5, latent_dim=16, n_channels=2, encoder_hidden=64,
                 d_model=64, ff_dim=128, generator_hidden=64, kl_ramp_steps=steps // 3, coordinated_dropout=0.2,
                 n_eval_samples=8)
    models = {"langevin_flow": LangevinFlow, "gru_svae": GRUSequentialVAE, "latent_ode": LatentODE}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in models}
    train_s: dict[str, list[float]] = {k: [] for k in models}
    figures: list[str] = []
    for seed in range(args.seeds):
        tr, te, true = make_data(args.scale, seed, device)
        for name, cls in models.items():
            torch.manual_seed(seed)
            model = cls(cfg).to(device)
            t0 = time.perf_counter()
            train(model, tr, steps, 32, 3e-3, seed)
            train_s[name].append(time.perf_counter() - t0)
            results[name].append(evaluate(model, te, true, cfg, seed))
            print(name, seed, results[name][-1], flush=True)
            if seed == 0 and not args.no_figures:
                figures += save_figures(model, te, true, f"langevin_flow_lorenz_{name}")
    summary = {name: {k: {"mean": statistics.mean(r[k] for r in rs),
                          "std": statistics.pstdev([r[k] for r in rs])} for k in rs[0]}
               for name, rs in results.items()}

    # speed: one epoch (every training trial once, batch 32) closed-form force vs autograd.grad per bin
    if args.speed_repeats > 0:
        tr, _, _ = make_data(args.scale, 0, device)
    timings = {}
    for label, closed in (("closed_form", True), ("autograd_naive", False)) if args.speed_repeats > 0 else ():
        torch.manual_seed(0)
        model = LangevinFlow(Config(**{**cfg.__dict__, "closed_form_force": closed})).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def epoch():
            for i in range(0, len(tr), 32):
                loss = model.loss(tr.index(slice(i, i + 32)))
                opt.zero_grad()
                loss.total.backward()
                opt.step()
        timings[label] = time_it(epoch, repeats=args.speed_repeats, warmup=1, device=device)
    payload = {
        "config": {**cfg.__dict__, "steps": steps, "scale": args.scale, "seeds": args.seeds,
                   "n_train_trials": len(tr)},
        "metrics": summary, "per_seed": results, "train_seconds": train_s,
        "epoch_timing": timings, "figures": figures,
        "ratios": {"autograd_naive_over_closed_form_epoch":
                   timings["autograd_naive"]["median_s"] / timings["closed_form"]["median_s"]} if timings else {},
    }
    write_result("langevin_flow_lorenz", payload, device=device)


if __name__ == "__main__":
    main()
