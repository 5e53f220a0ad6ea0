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
y; z is decoded only), Gaussian likelihood, the last ``n_forward`` bins hidden; forecast CRPS of
the posterior samples against the clean state (``sciflow.uq.scores.crps_ensemble``) and the
coverage of their 90 % central interval, vs climatology samples; JSON
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
from _common import time_it, write_result  # noqa: E402

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
        "co_bps": float(cs["co_bps"]),
        "heldin_bps": float(cs["heldin_bps"]),
        "fp_bps": float(forward_prediction_bps(rates, counts, cfg.n_forward)),
        "true_rates_co_bps": float(bits_per_spike(true_rates[:, obs, cfg.n_input:], counts[:, obs, cfg.n_input:])),
    }


def gaussian_task(args, device) -> None:
    from sciflow.data.pdes.lorenz import generate_lorenz63
    from sciflow.uq.scores import crps_ensemble, interval_coverage

    steps = args.steps or 300 * args.scale
    n_fwd = 10
    cfg = Config(obs_dim=3, input_dim=2, n_forward=n_fwd, likelihood="gaussian", latent_dim=16, n_channels=2,
                 encoder_hidden=64, d_model=64, ff_dim=128, generator_hidden=64, kl_ramp_steps=steps // 3,
                 coordinated_dropout=0.0)
    models = {"langevin_flow": LangevinFlow, "gru_svae": GRUSequentialVAE, "latent_ode": LatentODE}
    per_seed: dict[str, list[dict[str, float]]] = {k: [] for k in (*models, "climatology")}
    for seed in range(args.seeds):
        ds = generate_lorenz63(100 * args.scale, n_time=60, dt=0.02, noise_std=0.1, seed=seed)
        mean = torch.tensor(ds.attrs["state_mean"], dtype=torch.float32)
        std = torch.tensor(ds.attrs["state_std"], dtype=torch.float32)
        obs = (torch.tensor(ds["observed"].values, dtype=torch.float32) - mean) / std
        clean = (torch.tensor(ds["state"].values, dtype=torch.float32) - mean) / std
        times = torch.tensor(ds["time"].values, dtype=torch.float32)
        n_test = obs.shape[0] // 5
        tr = TrajectoryBatch(values=obs[n_test:].to(device), times=times.to(device))
        te = TrajectoryBatch(values=obs[:n_test].to(device), times=times.to(device))
        truth = clean[:n_test, -n_fwd:].to(device)
        g = torch.Generator().manual_seed(seed)
        pool = clean[n_test:].reshape(-1, 3)
        clim = pool[torch.randint(pool.shape[0], (32,), generator=g)][:, None, None, :].expand(32, *truth.shape)
        for name, cls in (*models.items(), ("climatology", None)):
            if cls is None:
                fc = clim.to(device)
            else:
                torch.manual_seed(seed)
                model = cls(cfg).to(device)
                train(model, tr, steps, 32, 3e-3, seed)
                model.eval()
                fc = model.sample(te, 32, generator=torch.Generator(device=device).manual_seed(seed))[:, :, -n_fwd:]
            lo, hi = fc.quantile(0.05, dim=0), fc.quantile(0.95, dim=0)
            per_seed[name].append({"crps": float(crps_ensemble(fc, truth)),
                                   "coverage90": float(interval_coverage(lo, hi, truth))})
            print(name, seed, per_seed[name][-1], flush=True)
    summary = {name: {k: {"mean": statistics.mean(r[k] for r in rs), "std": statistics.pstdev([r[k] for r in rs])}
                      for k in rs[0]} for name, rs in per_seed.items()}
    write_result("langevin_flow_lorenz63_gaussian",
                 {"config": {**cfg.__dict__, "steps": steps, "scale": args.scale, "seeds": args.seeds},
                  "metrics": summary, "per_seed": per_seed,
                  "ratios": {f"{k}_crps_over_climatology":
                             summary[k]["crps"]["mean"] / summary["climatology"]["crps"]["mean"] for k in models}},
                 device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--task", choices=("spikes", "gaussian"), default="spikes")
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
    summary = {name: {k: {"mean": statistics.mean(r[k] for r in rs),
                          "std": statistics.pstdev([r[k] for r in rs])} for k in rs[0]}
               for name, rs in results.items()}

    # speed: one epoch (every training trial once, batch 32) closed-form force vs autograd.grad per bin
    tr, _, _ = make_data(args.scale, 0, device)
    timings = {}
    for label, closed in (("closed_form", True), ("autograd_naive", False)):
        torch.manual_seed(0)
        model = LangevinFlow(Config(**{**cfg.__dict__, "closed_form_force": closed})).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def epoch():
            for i in range(0, len(tr), 32):
                loss = model.loss(tr.index(slice(i, i + 32)))
                opt.zero_grad()
                loss.total.backward()
                opt.step()
        timings[label] = time_it(epoch, repeats=3, warmup=1, device=device)
    payload = {
        "config": {**cfg.__dict__, "steps": steps, "scale": args.scale, "seeds": args.seeds,
                   "n_train_trials": len(tr)},
        "metrics": summary, "per_seed": results, "train_seconds": train_s,
        "epoch_timing": timings,
        "ratios": {"autograd_naive_over_closed_form_epoch":
                   timings["autograd_naive"]["median_s"] / timings["closed_form"]["median_s"]},
    }
    write_result("langevin_flow_lorenz", payload, device=device)


if __name__ == "__main__":
    main()
