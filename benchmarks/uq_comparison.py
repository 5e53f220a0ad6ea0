"""UQ comparison on a neural-PDE surrogate (CPU-sized Dongre & Hora 2023 setting).

Task: learn the 1-D viscous Burgers map ``u(., 0) -> u(., T)`` (periodic, GRF initial states,
``sciflow.data.pdes.burgers``) from noisy snapshots with small MLPs, then compare predictive
distributions on held-out initial states:

- ``single``: one deterministic MLP + homoscedastic noise fitted on validation residuals (anchor),
- ``deep_ensemble``: M point MLPs (vectorised training) + validation-fitted noise;
  ``deep_ensemble_gaussian``: M Gaussian-head MLPs (beta-NLL),
- ``mc_dropout``: one point MLP with dropout (N batched passes) + validation-fitted noise;
  ``mc_dropout_gaussian``: a Gaussian-head MLP with dropout,
- ``hmc``: HMC over the weights of a small MLP (Gaussian prior; likelihood noise = the MAP fit's
  validation residual std, like the others' validation-fitted noise), 4 chains, the low-rank Fisher
  mass matrix (``--hmc-mass``; ``benchmarks/hmc_mass.py`` compares them on this network);
  ``hmc_known_noise``: the same with the true measurement noise (overconfident where the small
  MLP's misfit exceeds it),
- ``laplace``: last-layer Laplace around the single model (prior precision from the evidence,
  noise variance fitted on validation),
- ``swag``: SWAG (Maddox et al. 2019) from the single model's weights, the SGD rate picked on
  validation; ``multiswag``: a SWAG around each point-ensemble member at that rate, pooled
  (Wilson & Izmailov 2020),
- ``conformal_*``: split conformal around the single model and around the ensemble.

Reports coverage / width of 90 % intervals, CRPS, Gaussian NLL, RMSE, PIT calibration error,
spread–skill, HMC diagnostics and training times (vectorised vs sequential ensemble ratio) in
``benchmarks/results/uq_comparison.json``. HMC diagnostics come twice: ``diagnostics`` in weight
space (uninformative for a network: hidden-unit permutations) and ``function_diagnostics``, the
rank-normalised split-R-hat / ESS of the network's predictions at every test output (the ones to
read; Izmailov et al. 2021, see ``sciflow.uq.hmc``). ``--scale`` multiplies data size and training steps.
``--navier-stokes`` adds the same comparison on a coarse 2-D vorticity map.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from _common import write_result
from sciflow.data.batches import TrajectoryBatch
from sciflow.nn.mlp import MLP
from sciflow.uq import (HMC, NUTS, AbsoluteResidual, DeepEnsemble, GaussianForecaster, GaussianLikelihood,
                        GaussianPrior, LastLayerLaplace, MCDropout, NormalizedResidual, PointForecaster, Prediction,
                        SWAG, MixturePredictor,
                        SamplingPredictor, SplitConformal, score_prediction)

ALPHA = 0.1


def burgers_data(n: int, nx: int, noise: float, seed: int) -> tuple[TrajectoryBatch, float]:
    from sciflow.data.pdes import burgers

    ds = burgers.generate(n, seed, nx=nx, nt=2, t_final=0.5, nu=0.05, dt=5e-3)
    u = torch.as_tensor(ds["u"].values, dtype=torch.float32)
    scale = float(u[:, 0].std())
    u = u / scale
    g = torch.Generator().manual_seed(seed + 1)
    u[:, 1] += noise * torch.randn(u[:, 1].shape, generator=g)  # noisy measurements of u(T)
    return TrajectoryBatch(u, torch.tensor([0.0, 0.5])), scale


def ns_data(n: int, res: int, noise: float, seed: int) -> tuple[TrajectoryBatch, float]:
    from sciflow.data.pdes import navier_stokes

    ds = navier_stokes.generate(n, seed, resolution=res, nt=2, t_final=1.0, dt=1e-2, nu=1e-3,
                                dtype=torch.float64)
    w = torch.as_tensor(ds["vorticity"].values, dtype=torch.float32)
    scale = float(w[:, 0].std())
    w = w / scale
    g = torch.Generator().manual_seed(seed + 1)
    w[:, 1] += noise * torch.randn(w[:, 1].shape, generator=g)
    return TrajectoryBatch(w, torch.tensor([0.0, 1.0])), scale


def train(model, batch, steps, lr, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch).total.backward()
        opt.step()
    return model.eval()


def split(data: TrajectoryBatch, n_tr: int, n_va: int) -> tuple[TrajectoryBatch, TrajectoryBatch, TrajectoryBatch]:
    """Train, validation and test states, in that order."""
    return data.index(slice(0, n_tr)), data.index(slice(n_tr, n_tr + n_va)), data.index(slice(n_tr + n_va, None))


def hmc_network(train_b, val_b, d: int, width: int, steps: int, lr: float):
    """The small point MLP HMC samples (one hidden layer of ``width``), fitted by Adam, and its
    validation residual std, the likelihood noise of the ``hmc`` rows."""
    torch.manual_seed(0)
    net = train(PointForecaster(MLP(d, d, width=width, depth=1)), train_b, steps, lr, 0)
    with torch.no_grad():
        return net, float(((net(val_b) - val_b.values[:, 1:]) ** 2).mean().sqrt())


def validation_noise(predictor, val_b, g) -> float:
    """Homoscedastic noise variance making the mean predictive variance match the validation MSE
    (never below 1e-6): sigma^2 = mean (mean - y)^2 - mean epistemic variance."""
    p = predictor.predict(val_b, generator=g)
    epistemic = p.samples.var(0, unbiased=False).mean() if p.samples is not None and p.samples.shape[0] > 1 else 0.0
    mse = ((p.mean - val_b.values[:, 1:]) ** 2).mean()
    return max(float(mse - epistemic), 1e-6)


def compare(train_b, val_b, test_b, d, noise, args) -> dict:
    steps, width = int(args.steps * args.scale), args.width
    y_test = test_b.values[:, 1:]
    out: dict = {}
    times: dict = {}

    # anchor: single deterministic model + homoscedastic noise from validation residuals
    t0 = time.perf_counter()
    torch.manual_seed(0)
    point = train(PointForecaster(MLP(d, d, width=width, depth=2)), train_b, steps, args.lr, 0)
    times["single"] = time.perf_counter() - t0
    with torch.no_grad():
        s2 = ((point(val_b) - val_b.values[:, 1:]) ** 2).mean()
        mean = point(test_b)
    out["single"] = score_prediction(Prediction.from_gaussian(mean, s2.expand_as(mean), ALPHA), y_test)

    # last-layer Laplace around the same network: the evidence picks the prior precision; the
    # noise variance is fitted on validation (mean predictive variance = validation MSE, as for
    # the others), with the prior precision re-tuned for it
    t0 = time.perf_counter()
    lap = LastLayerLaplace(point, alpha=ALPHA, n_samples=200).fit([train_b]).fit_noise([val_b])
    times["laplace"] = time.perf_counter() - t0
    lap_pred = lap.predict(test_b, generator=torch.Generator().manual_seed(0))
    out["laplace"] = score_prediction(lap_pred, y_test)
    out["laplace"]["prior_precision"] = lap.prior_precision
    out["laplace"]["observation_noise"] = lap.observation_noise
    out["laplace"]["mean_epistemic_variance_test"] = float((lap_pred.variance - lap.observation_noise).mean())

    # SWAG from a copy of the same network: SGD with momentum on minibatches of 16 at a constant
    # rate, weights collected once per epoch for 50 epochs (rank 20); the rate picked from a grid by
    # validation CRPS; noise fitted on validation as for the ensembles
    t0 = time.perf_counter()
    g_sw = torch.Generator().manual_seed(0)
    minis = [train_b.index(i) for i in torch.randperm(train_b.batch_size, generator=g_sw).split(16)]

    def swag_of(model, lr, n_samples):
        """SWAG from a copy of ``model``: 50 epochs, weights collected once per epoch, rank 20."""
        return SWAG(copy.deepcopy(model), alpha=ALPHA, rank=20, n_samples=n_samples).fit(
            minis, steps=50 * len(minis), lr=lr, collect_every=len(minis), momentum=0.9)

    best = None
    for lr_s in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1):
        try:
            sw = swag_of(point, lr_s, 200)
        except FloatingPointError:
            continue
        sw.observation_noise = validation_noise(sw, val_b, g_sw)
        crps_val = score_prediction(sw.predict(val_b, generator=g_sw), val_b.values[:, 1:])["crps"]
        if best is None or crps_val < best[0]:
            best = (crps_val, lr_s, sw)
    times["swag"] = time.perf_counter() - t0
    out["swag"] = score_prediction(best[2].predict(test_b, generator=g_sw), y_test)
    out["swag"]["lr"], out["swag"]["observation_noise"] = best[1], best[2].observation_noise

    # deep ensembles: point members + homoscedastic noise fitted on validation (same aleatoric
    # treatment as the anchor), and Gaussian-head members (beta-NLL); vectorised over members
    g = torch.Generator().manual_seed(0)
    point_factory = lambda: PointForecaster(MLP(d, d, width=width, depth=2))  # noqa: E731
    t0 = time.perf_counter()
    ens = DeepEnsemble.fit(point_factory, [train_b], n_members=args.members, steps=steps, lr=args.lr,
                           seed=0, alpha=ALPHA, n_samples_per_member=20)
    times["deep_ensemble"] = time.perf_counter() - t0
    ens.observation_noise = validation_noise(ens, val_b, g)
    ens_pred = ens.predict(test_b, generator=g)
    out["deep_ensemble"] = score_prediction(ens_pred, y_test)
    # MultiSWAG: a SWAG around each ensemble member at SWAG's chosen rate, pooled; validation noise
    t0 = time.perf_counter()
    swags = [swag_of(m, best[1], 40) for m in ens.members]
    multi = MixturePredictor(swags, alpha=ALPHA)
    noise_m = validation_noise(multi, val_b, g_sw)
    for s in swags:
        s.observation_noise = noise_m
    times["multiswag"] = time.perf_counter() - t0 + times["deep_ensemble"]
    out["multiswag"] = score_prediction(multi.predict(test_b, generator=g_sw), y_test)
    gauss_factory = lambda: GaussianForecaster(MLP(d, 2 * d, width=width, depth=2), beta=0.5)  # noqa: E731
    t0 = time.perf_counter()
    ens_g = DeepEnsemble.fit(gauss_factory, [train_b], n_members=args.members, steps=steps, lr=args.lr,
                             seed=0, alpha=ALPHA, n_samples_per_member=20)
    times["deep_ensemble_gaussian"] = time.perf_counter() - t0
    out["deep_ensemble_gaussian"] = score_prediction(ens_g.predict(test_b, generator=g), y_test)
    n_seq = max(steps // 5, 1)
    t0 = time.perf_counter()
    DeepEnsemble.fit(point_factory, [train_b], n_members=args.members, steps=n_seq, lr=args.lr, seed=0,
                     vectorise=False)
    times["deep_ensemble_sequential_per_step"] = (time.perf_counter() - t0) / n_seq
    times["deep_ensemble_vectorised_per_step"] = times["deep_ensemble"] / steps

    # MC dropout: point MLP with dropout + validation noise, and a Gaussian-head MLP with dropout
    t0 = time.perf_counter()
    drop = train(PointForecaster(MLP(d, d, width=width, depth=2, dropout=args.dropout)), train_b, steps, args.lr, 0)
    times["mc_dropout"] = time.perf_counter() - t0
    noise_d = validation_noise(MCDropout(drop, n_passes=100, alpha=ALPHA), val_b, g)
    mcd = MCDropout(drop, n_passes=100, alpha=ALPHA, observation_noise=noise_d)
    out["mc_dropout"] = score_prediction(mcd.predict(test_b, generator=g), y_test)
    drop_g = train(GaussianForecaster(MLP(d, 2 * d, width=width, depth=2, dropout=args.dropout), beta=0.5),
                   train_b, steps, args.lr, 0)
    out["mc_dropout_gaussian"] = score_prediction(
        MCDropout(drop_g, n_passes=100, alpha=ALPHA).predict(test_b, generator=g), y_test)

    # HMC over a small point MLP, started at its MAP-ish fit. Likelihood noise (``hmc``): the fit's
    # validation residual std, the aleatoric treatment every other method gets; ``hmc_known_noise``:
    # the true measurement noise, too small for the misfit of a width-16 MLP (model error, not noise),
    # so its posterior concentrates on a wrong function (NS: coverage 0.16 in the first run)
    small, fitted = hmc_network(train_b, val_b, d, args.hmc_width, steps, args.lr)
    out["_hmc_noise_std"] = {"validation_fit": fitted, "measurement": float(noise)}
    diag_b = test_b.index(slice(0, args.hmc_diag_inputs))  # function-space R-hat/ESS at these test inputs
    for key, sigma in (("hmc", fitted), ("hmc_known_noise", float(noise))):
        t0 = time.perf_counter()
        sampler, extra = HMC, {}
        if args.hmc_sampler == "nuts":
            sampler, extra = NUTS, {"max_tree_depth": args.hmc_max_tree_depth}
        hmc = sampler(small, GaussianPrior(1.0), GaussianLikelihood(sigma), [train_b], alpha=ALPHA)
        n_warmup = int(args.hmc_warmup * args.scale)
        res = hmc.run(n_samples=int(args.hmc_samples * args.scale), n_warmup=n_warmup,
                      n_chains=4, n_leapfrog=args.hmc_leapfrog, init_jitter=0.0, mass_matrix=args.hmc_mass,
                      generator=torch.Generator().manual_seed(0), **extra)
        times[key] = time.perf_counter() - t0
        out[key] = score_prediction(hmc.predict(test_b, generator=g, max_draws=400), y_test)
        out[key]["diagnostics"] = res.summary()
        out[key]["function_diagnostics"] = hmc.function_diagnostics(diag_b).summary()
        if args.hmc_sampler == "nuts":  # a tree of depth j takes 2^j - 1 leapfrog steps
            depths = torch.tensor(hmc.tree_depths, dtype=torch.float64)
            out[key]["gradient_evals_per_chain"] = float((2**depths - 1).sum()) / res.samples.shape[0]
            out[key]["mean_tree_depth"] = float(depths.mean())
            out[key]["max_tree_depth_fraction"] = hmc.max_depth_fraction  # post-warm-up, at the limit
        else:
            out[key]["gradient_evals_per_chain"] = (res.samples.shape[1] + n_warmup) * args.hmc_leapfrog

    # split conformal around the anchor (absolute residual) and the ensemble (normalised)
    cp_point = SplitConformal(SamplingPredictor(point), ALPHA, AbsoluteResidual())
    cp_point.calibrate([val_b])
    out["conformal_single"] = score_prediction(cp_point.predict(test_b), y_test)
    cp_ens = SplitConformal(ens, ALPHA, NormalizedResidual())
    cp_ens.calibrate([val_b], generator=g)
    out["conformal_ensemble"] = score_prediction(cp_ens.wrap(ens_pred), y_test)
    for k, v in times.items():
        out.setdefault("_timings_s", {})[k] = v
    out["_timings_s"]["ensemble_vectorised_speedup"] = (times["deep_ensemble_sequential_per_step"]
                                                        / times["deep_ensemble_vectorised_per_step"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--nx", type=int, default=32)
    ap.add_argument("--noise", type=float, default=0.05, help="measurement noise (units of std(u0))")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--hmc-width", type=int, default=16)
    ap.add_argument("--hmc-samples", type=int, default=200)
    ap.add_argument("--hmc-warmup", type=int, default=200)
    ap.add_argument("--hmc-leapfrog", type=int, default=10, help="leapfrog steps per HMC transition")
    ap.add_argument("--hmc-sampler", choices=("hmc", "nuts"), default="hmc",
                    help="fixed-length HMC, or NUTS (chains one after another, --hmc-leapfrog ignored)")
    ap.add_argument("--hmc-max-tree-depth", type=int, default=6, help="NUTS only")
    ap.add_argument("--hmc-mass", choices=("diag", "dense", "fisher_diag", "low_rank"), default="low_rank",
                    help="mass matrix adapted in warm-up (dense: D x D, for D well below n_warmup / 2; "
                         "fisher_diag / low_rank: from draws and gradients, any D)")
    ap.add_argument("--hmc-diag-inputs", type=int, default=64,
                    help="test inputs whose every output gets a function-space R-hat / ESS")
    ap.add_argument("--navier-stokes", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_tr = int(args.n_train * args.scale)
    # 64 validation / 256 test states; fewer below scale 1 (smoke runs: generation and scoring)
    n_va, n_te = (64, 256) if args.scale >= 1 else (max(16, int(64 * args.scale)), max(32, int(256 * args.scale)))
    data, scale = burgers_data(n_tr + n_va + n_te, args.nx, args.noise, seed=0)
    tr, va, te = split(data, n_tr, n_va)
    payload = {"task": {"burgers": {"n_train": n_tr, "n_val": n_va, "n_test": n_te, "nx": args.nx, "nu": 0.05,
                                    "T": 0.5, "noise_std_normalised": args.noise, "u0_std": scale}},
               "alpha": ALPHA, "args": vars(args),
               "burgers": compare(tr, va, te, args.nx, args.noise, args)}
    if args.navier_stokes:
        res = 16
        data, scale = ns_data(n_tr + n_va + n_te, res, args.noise, seed=0)
        data = TrajectoryBatch(data.values.reshape(data.values.shape[0], 2, -1), data.times)
        tr, va, te = split(data, n_tr, n_va)
        payload["task"]["navier_stokes"] = {"resolution": res, "nu": 1e-3, "T": 1.0, "vorticity_std": scale}
        payload["navier_stokes"] = compare(tr, va, te, res * res, args.noise, args)
    write_result("uq_comparison", payload)


if __name__ == "__main__":
    main()
