"""WDNO on forced Burgers (Hu et al., "Wavelet Diffusion Neural Operator", ICLR 2025, Sec. 4.1):
simulation (WDNO vs physical-space DDPM vs FNO-2D over (t, x)), super-resolution x4 (vs nearest /
bilinear interpolation), control (solver-evaluated J, guided vs unguided), ensemble UQ. The
simulation table has two WDNO rows: ``wdno``, the packaged model (``sciflow/configs/wdno_burgers.yaml``:
the physical-space DDPM's U-Net with its first level replaced by the DWT, ``_operators.matched_levels``,
and one scale per field), and ``wdno_same_unet``, the DDPM's U-Net itself on the coefficients (why the
first is the default: ``wdno_burgers_ablation.py``, issue 9). Each scale names the physical-space U-Net
(``unet``); the WDNO rows and the control model derive theirs from it.

    python benchmarks/wdno_burgers.py                 # --scale cpu: CPU-sized, one thread
    python benchmarks/wdno_burgers.py --scale smoke   # seconds; plumbing only
    python benchmarks/wdno_burgers.py --scale gpu     # the GPU check: paper-sized grid, ~12 s of training per model
    python benchmarks/wdno_burgers.py --scale paper   # paper-sized grid and budgets (hours on one GPU)

Data: ``sciflow.data.pdes.burgers.generate_control`` (nu = 0.01, x in [0, 1], zero Dirichlet data,
Gaussian-bump u0, space-time Gaussian forcing) on a fine (T, X) = (2^k + 1, 2^m + 1) grid; the
simulation / control models train on its [::2, ::2] copy, the super-resolution model on the fine
trajectories and their subsampled copies. All models of one task share the optimiser, steps,
batch size and learning-rate schedule. Writes benchmarks/results/wdno_burgers[_<scale>].json and
figures under benchmarks/results/figures/.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, shown_path, synchronize, time_left, training_budget, write_result  # noqa: E402
from _operators import matched_levels  # noqa: E402

from sciflow.config import from_dict, packaged_config, read_yaml  # noqa: E402
from sciflow.data.batches import TrajectoryBatch  # noqa: E402
from sciflow.data.pdes.burgers import generate_control  # noqa: E402
from sciflow.models.wavelet_diffusion import (WDNO, Config, ControlObjective, ResimulatedObjective,  # noqa: E402
                                              SuperResolutionConfig, WDNOSuperResolution, burgers_simulator,
                                              evaluate_burgers_control)
from sciflow.models.neural_operator import relative_l2  # noqa: E402
from sciflow.models.wavelet_diffusion.superres import interpolate as multilinear  # noqa: E402
from sciflow.models.wavelet_diffusion.superres import nearest  # noqa: E402
from sciflow.nn.fno import FNO2d  # noqa: E402
from sciflow.nn.wavelets import dwtn  # noqa: E402
from sciflow.training import steps_within  # noqa: E402
from sciflow.uq.scores import crps_ensemble, interval_coverage, spread_skill_ratio  # noqa: E402

BENCHMARK = {
    "name": "wdno_burgers", "script": "wdno_burgers.py", "family": "wavelet diffusion", "owner": "C",
    "kind": "accuracy",
    "dataset": "forced Burgers, nu = 0.01, x in [0, 1], zero boundary (generate_control); cpu: 17 x 33 "
               "(super-resolution 9 x 17 -> 33 x 65), 192 train / 12 test; gpu: 33 x 129 (-> 65 x 257)",
    "description": "WDNO (U-Net levels matched to the DWT, and the DDPM's own U-Net) vs physical-space DDPM vs "
                   "FNO-2D simulation MSE; super-resolution x4 vs interpolation; "
                   "solver-evaluated control J guided vs unguided; ensemble CRPS",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu", "--device", "cuda"]},
    "results": {"smoke": ["wdno_burgers_smoke"], "cpu": ["wdno_burgers"], "gpu": ["wdno_burgers_gpu"]},
    "seed_flag": "--seed",
    "metrics": [
        {"label": "WDNO simulation MSE (ensemble mean)", "path": "results/wdno/sim_mse_ensemble_mean",
         "baselines": {"DDPM (physical space)": "results/ddpm_physical/sim_mse_ensemble_mean",
                       "WDNO on the DDPM's U-Net": "results/wdno_same_unet/sim_mse_ensemble_mean",
                       "FNO-2D over (t, x)": "results/fno2d/sim_mse"}},
        {"label": "WDNO simulation MSE (single sample)", "path": "results/wdno/sim_mse_single_sample",
         "baselines": {"DDPM (physical space)": "results/ddpm_physical/sim_mse_single_sample",
                       "WDNO on the DDPM's U-Net": "results/wdno_same_unet/sim_mse_single_sample"}},
        {"label": "WDNO ensemble CRPS", "path": "results/wdno/crps",
         "baselines": {"DDPM (physical space)": "results/ddpm_physical/crps"}},
        {"label": "super-resolution x4 MSE", "path": "results/superres_x4/wdno_superres/mse",
         "baselines": {"bilinear": "results/superres_x4/bilinear/mse", "nearest": "results/superres_x4/nearest/mse"}},
        {"label": "control J (solver-evaluated), guided", "path": "results/control/wdno_guided/J",
         "baselines": {"unguided": "results/control/wdno_unguided/J", "zero forcing": "results/control/zero_forcing/J",
                       "data forcing": "results/control/data_forcing/J"}},
    ],
    "timeout_s": {"cpu": 5400, "gpu": 900},
}

#: ``unet``: the physical-space DDPM's U-Net (the WDNO's is derived from it: ``matched_levels``), also the
#: super-resolution model's (at the cpu scale the same as its packaged config)
SCALES = {
    "smoke": dict(unet=dict(base_channels=8, channel_mults=(1, 2)),
                  n_train=16, n_test=4, nt=9, nx=17, n_modes=32, dt=5e-3, steps=4, sr_steps=4, batch=8,
                  n_samples=2, nfe=4, n_control=4,
                  n_control_val=2, guidance_scales=(1.0,), lr=1e-3, fno_width=8),
    "cpu": dict(unet=dict(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1),
                n_train=192, n_test=12, nt=33, nx=65, n_modes=128, dt=2e-3, steps=None, sr_steps=None, batch=16,
                sr_batch=8, n_samples=8, nfe=20, n_control=12, n_control_val=4,
                guidance_scales=(300.0, 3000.0, 30000.0, 300000.0), lr=None, fno_width=32),
    # the GPU check: the paper-size grid and network, every model's training sized to ``train_s``
    # seconds of wall clock from its measured step rate (a complete cosine schedule, fewer steps)
    # (shortened further under the suite runner's deadline: ``_common.training_budget``; the super-resolution
    # and control parts run only while the time left allows, see ``main``)
    "gpu": dict(unet=dict(base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=2),
                n_train=1000, n_test=50, nt=65, nx=257, n_modes=512, dt=1e-3, steps=40000, sr_steps=40000,
                batch=64, n_samples=8,
                nfe=50, n_control=16, n_control_val=8, guidance_scales=(30.0, 300.0, 3000.0, 30000.0),
                lr=2e-4, fno_width=64, train_s=12.0),
    "paper": dict(unet=dict(base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=2),
                  n_train=6000, n_test=200, nt=65, nx=257, n_modes=512, dt=1e-3, steps=40000, sr_steps=40000,
                  batch=64, n_samples=32,
                  nfe=50, n_control=64, n_control_val=32, guidance_scales=(30.0, 300.0, 3000.0, 30000.0),
                  lr=2e-4, fno_width=64),
}


def model_section(name: str) -> tuple[dict, dict]:
    doc = read_yaml(packaged_config(name))
    model = dict(doc["model"])
    model.pop("name")
    return model, dict(doc.get("train", {}))


def simulation_configs(model_yaml: dict, unet: dict) -> dict[str, dict]:
    """``Config`` keywords of the simulation models: the packaged WDNO options with the physical-space
    ``unet`` (``ddpm_physical``, ``wdno_same_unet``) or its matched levels (``wdno``, also the control
    model's). At the cpu scale ``wdno`` is the packaged config itself (checked by a test)."""
    same = {**model_yaml, **unet}
    return {"wdno": {**same, **matched_levels(unet), "space": "wavelet"},
            "ddpm_physical": {**same, "space": "physical"},
            "wdno_same_unet": {**same, "space": "wavelet"}}


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train(loss_fn, params, steps: int, lr: float, n: int, batch: int, seed: int, warmup: int = 20,
          max_time_s: float | None = None, on_step: Callable[[int], None] | None = None) -> dict:
    """Adam + warm-up + cosine decay over ``steps`` mini-batches of indices ``0..n-1``.

    ``max_time_s``: from the rate of steps 10-30, cut ``steps`` to what fits in that
    many wall-clock seconds (``sciflow.training.steps_within``, as ``fit(time_schedule="fit")``;
    the schedule then decays completely over the shorter run; should the device slow down after the
    probe, the run stops at the progress print past 1.5x the budget, ``stopped_early``). Losses stay
    on the device until the end (no host synchronisation per step). ``on_step(k)`` runs after the
    ``k``-th optimiser step (e.g. a learning curve)."""
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    curve, t0 = [], time.perf_counter()
    requested = steps
    probe, window = (10, 20) if max_time_s is not None else (-1, 0)
    perm, pos = torch.randperm(n, generator=g), 0
    step, stopped_early = 0, False
    while step < steps:
        if step == probe:  # the first steps include compilation/warm-up: time the next ones
            synchronize(params[0].device)
            t_probe = time.perf_counter()
        if step == probe + window and probe >= 0:
            synchronize(params[0].device)
            now = time.perf_counter()
            steps = steps_within(max_time_s, now - t0, step, window / max(now - t_probe, 1e-9), steps)
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos: pos + batch]
        pos += batch
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = loss_fn(idx, g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        curve.append(loss.detach())
        step += 1
        if on_step is not None:
            on_step(step)
        if step % max(steps // 5, 1) == 0:
            print(f"  step {step}/{steps} loss {float(curve[-1]):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            # the print has synchronised already: a free look at the clock
            if max_time_s is not None and step < steps and time.perf_counter() - t0 > 1.5 * max_time_s:
                stopped_early = True
                break
    curve = torch.stack(curve).cpu().tolist()
    wall = time.perf_counter() - t0
    k = max(len(curve) // 10, 1)
    return {"steps": step, "planned_steps": steps, "requested_steps": requested, "max_time_s": max_time_s,
            "stopped_early": stopped_early, "batch_size": batch, "lr": lr,
            "train_wall_s": wall, "steps_per_s": step / wall,
            "loss_first": sum(curve[:k]) / k, "loss_last": sum(curve[-k:]) / k}


def interpolate(coarse: torch.Tensor, shape: tuple[int, int], mode: str) -> torch.Tensor:
    """Endpoint-aligned interpolation of ``(B, T, X)`` onto ``shape``: bilinear, or nearest by rounding."""
    return (multilinear if mode == "bilinear" else nearest)(coarse[:, None], shape)[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--train-s", type=float, default=None,
                    help="wall-clock cap on each model's training in seconds (default: the scale's, if any)")
    ap.add_argument("--only", choices=["control"], default=None,
                    help="run only the control part (data, control model, guidance comparison); writes "
                         "wdno_burgers_control[_<scale>].json")
    args = ap.parse_args()
    if args.only == "control":
        return control_only(args)
    torch.set_num_threads(args.threads)
    sc = dict(SCALES[args.scale], **({} if args.train_s is None else {"train_s": args.train_s}))
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    model_yaml, train_yaml = model_section("wdno_burgers")
    sr_yaml, sr_train_yaml = model_section("wdno_burgers_superres")
    steps = sc["steps"] or int(train_yaml["max_steps"])
    sr_steps = sc["sr_steps"] or int(sr_train_yaml["max_steps"])
    lr = sc["lr"] or float(train_yaml["lr"])
    warmup = min(int(train_yaml.get("warmup_steps", 20)), max(steps // 5, 1))

    # ------------------------------------------------------------------ data
    t0 = time.perf_counter()
    n = sc["n_train"] + sc["n_test"]
    ds = generate_control(n, args.seed, nx=sc["nx"], nt=sc["nt"], n_modes=sc["n_modes"], dt=sc["dt"], device=dev)
    gen_s = time.perf_counter() - t0
    u_fine = torch.tensor(ds.u.values, dtype=torch.float32)
    f_fine = torch.tensor(ds.forcing.values, dtype=torch.float32)
    t_fine = torch.tensor(ds.time.values)
    x_fine = torch.tensor(ds.x.values)
    u, f = u_fine[:, ::2, ::2].contiguous(), f_fine[:, ::2, ::2].contiguous()
    t_grid, x_grid = t_fine[::2], x_fine[::2]
    ntr = sc["n_train"]
    T, X = u.shape[1:]
    times = t_grid.float()
    train_b = TrajectoryBatch(u[:ntr], times, f[:ntr])
    test_b = TrajectoryBatch(u[ntr:], times, f[ntr:]).to(dev)
    u_test = u[ntr:].to(dev)

    sim_cfgs = simulation_configs(model_yaml, sc["unet"])
    results: dict = {}
    models: dict = {}
    train_dev = train_b.to(dev)
    name = "wdno_burgers" if args.scale == "cpu" else f"wdno_burgers_{args.scale}"
    # six training phases (three diffusion models, FNO, super-resolution, control); a time-budgeted scale
    # (train_s) shares the runner's deadline among those left, and runs the super-resolution and control
    # parts only while the time left exceeds twice the longest simulation phase (else: recorded as skipped)
    phases = {"left": 6, "longest_s": 0.0}
    skipped: dict[str, str] = {}

    def budget() -> float | None:
        phases["left"] -= 1
        return training_budget(sc.get("train_s"), phases["left"] + 1)

    def time_allows(part: str, extra_s: float = 0.0) -> bool:
        need = 2 * phases["longest_s"] + extra_s
        if sc.get("train_s") is None or time_left() > need:
            return True
        skipped[part] = f"{time_left():.0f} s left before the runner's deadline, about {need:.0f} s needed"
        phases["left"] -= 1
        return False

    def config() -> dict:
        return {"scale": args.scale, "n_train": ntr, "n_test": sc["n_test"], "grid": [T, X],
                "fine_grid": list(u_fine.shape[1:]), "steps": steps, "sr_steps": sr_steps, "batch": sc["batch"],
                "sr_batch": sc.get("sr_batch", sc["batch"]),
                "lr": lr, "models": {name: {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
                                     for name, kw in sim_cfgs.items()},
                "data_generation_s": gen_s, "total_wall_s": time.perf_counter() - t_start,
                "nu": 0.01, "n_modes": sc["n_modes"], "dt": sc["dt"]}

    def save(complete: bool) -> None:  # partial results survive an interrupted run
        write_result(name, {"complete": complete, "skipped": skipped, "config": config(), "results": results},
                     device=dev)

    def fit_wdno(kw: dict, task: str) -> tuple[WDNO, dict]:
        """A WDNO of ``task`` from ``Config`` keywords ``kw``, scaler fitted, ``steps`` Adam steps, eval mode."""
        m = WDNO(from_dict(Config, {**kw, "task": task}, prefix="model"))
        m.fit_scaler(train_b)
        m.to(dev)
        info = train(lambda idx, g: m.loss(train_dev.index(idx.to(dev))).total, list(m.parameters()), steps, lr,
                     ntr, sc["batch"], args.seed, warmup, max_time_s=budget())
        return m.eval(), info

    # ------------------------------------------------------------------ simulation: WDNO / DDPM / FNO
    for model_name, kw in sim_cfgs.items():
        t_phase = time.perf_counter()
        m, info = fit_wdno(kw, "simulation")
        t0 = time.perf_counter()
        gs = torch.Generator(device=dev).manual_seed(args.seed + 1)
        samples = m.sample(test_b, sc["n_samples"], nfe=sc["nfe"], generator=gs)  # (S, B, T, X)
        synchronize(dev)
        sample_s = time.perf_counter() - t0
        fut = samples[:, :, 1:]
        true = u_test[:, 1:]
        per_sample_mse = (fut - true).pow(2).mean((2, 3))  # (S, B)
        mean_pred = fut.mean(0)
        q_lo, q_hi = torch.quantile(fut, 0.05, dim=0), torch.quantile(fut, 0.95, dim=0)
        results[model_name] = {
            "config": {k: getattr(m.cfg, k) for k in ("space", "wavelet", "mode", "scaling", "prediction",
                                                    "base_channels",
                                                    "channel_mults",
                                                    "num_res_blocks", "schedule", "replacement", "clip_denoised")},
            "parameters": sum(p.numel() for p in m.parameters()), "training": info,
            "sim_mse_single_sample": float(per_sample_mse.mean()),
            "sim_mse_ensemble_mean": float((mean_pred - true).pow(2).mean()),
            "sim_rel_l2_single_sample": float(relative_l2(fut.flatten(0, 1), true.repeat(sc["n_samples"], 1, 1))),
            "sim_rel_l2_ensemble_mean": float(relative_l2(mean_pred, true)),
            "crps": float(crps_ensemble(fut, true, fair=True)),
            "coverage_90": float(interval_coverage(q_lo, q_hi, true)),
            "spread_skill": float(spread_skill_ratio(fut, true)),
            "n_samples": sc["n_samples"], "nfe": sc["nfe"], "sampler": "ddim",
            "sample_s": sample_s, "trajectories_per_s": samples.shape[0] * samples.shape[1] / sample_s,
        }
        models[model_name] = (m, samples)
        print(model_name, {k: v for k, v in results[model_name].items()
                           if k.startswith(("sim_", "crps", "cov", "spread"))}, flush=True)
        phases["longest_s"] = max(phases["longest_s"], time.perf_counter() - t_phase)
        save(False)

    # FNO-2D over (t, x): input (u0 broadcast in time, f), output u; the same budget
    su, sf = float(u[:ntr].std()), float(f[:ntr].std())
    fno = FNO2d(in_channels=2, out_channels=1, modes=(min(12, T // 2), min(16, X // 2)), width=sc["fno_width"],
                padding=(4, 4)).to(dev)

    def fno_in(uu, ff):
        return torch.stack([uu[:, :1].expand(-1, uu.shape[1], -1) / su, ff / sf], 1)

    u_tr, f_tr = u[:ntr].to(dev), f[:ntr].to(dev)
    info = train(lambda idx, g: F.mse_loss(fno(fno_in(u_tr[idx.to(dev)], f_tr[idx.to(dev)]))[:, 0],
                                           u_tr[idx.to(dev)] / su),
                 list(fno.parameters()), steps, lr, ntr, sc["batch"], args.seed, warmup, max_time_s=budget())
    with torch.no_grad():
        t0 = time.perf_counter()
        pred = fno(fno_in(u_test, test_b.condition))[:, 0] * su
        synchronize(dev)
        fno_s = time.perf_counter() - t0
    results["fno2d"] = {"parameters": sum(p.numel() for p in fno.parameters()), "training": info,
                        "sim_mse": float((pred[:, 1:] - u_test[:, 1:]).pow(2).mean()),
                        "sim_rel_l2": float(relative_l2(pred[:, 1:], u_test[:, 1:])), "predict_s": fno_s}
    models["fno2d"] = pred
    print("fno2d", results["fno2d"]["sim_mse"], results["fno2d"]["sim_rel_l2"], flush=True)
    save(False)
    if time_allows("superres_x4"):
        coarse, up, truth_fine = super_resolution(sc, args, dev, u_fine, f_fine, t_fine, sr_yaml, sr_steps, lr, warmup,
                                                  ntr, results, budget())
        save(False)
    # the control part's own sweeps (hundreds of differentiable-solver gradients at the gpu scale)
    if time_allows("control", 0.0 if sc.get("train_s") is None else control_cost_s(sc, args, dev, u, t_grid, x_grid)):
        ctrl, c_info = fit_wdno(sim_cfgs["wdno"], "control")
        results["control"], (ctest_f, f_ung, f_gui) = run_control(ctrl, c_info, sc, args, dev, u, f, t_grid, x_grid,
                                                                  ntr)
    if not args.no_figures:  # the panels of the parts that ran
        sr_fig = None if "superres_x4" in skipped else (coarse.cpu(), up.cpu(), truth_fine.cpu())
        ctrl_fig = None if "control" in skipped else (ctest_f, f_ung, f_gui)
        results["figures"] = figures(name, u_test.cpu(), test_b.condition.cpu(), models, sr_fig, ctrl_fig)
    save(True)


def super_resolution(sc: dict, args, dev: torch.device, u_fine, f_fine, t_fine, sr_yaml: dict, sr_steps: int,
                     lr: float, warmup: int, ntr: int, results: dict, max_time_s: float | None):
    """Train the x4 super-resolution WDNO on the fine trajectories and score it against nearest and
    bilinear interpolation of the coarse copy; adds ``results["superres_x4"]``, returns
    ``(coarse, upsampled, truth_fine)`` for the figures."""
    fine_fields = torch.stack([u_fine, f_fine], 2)  # (N, T_f, 2, X_f)
    sr_cfg = from_dict(SuperResolutionConfig, {**sr_yaml, **sc["unet"]}, prefix="model")
    sr = WDNOSuperResolution(sr_cfg)
    sr_train = TrajectoryBatch(fine_fields[:ntr], t_fine.float())
    sr.fit_scaler(sr_train)
    sr.to(dev)
    srb = sr_train.to(dev)
    sr_info = train(lambda idx, g: sr.loss(srb.index(idx.to(dev))).total, list(sr.parameters()), sr_steps, lr, ntr,
                    sc.get("sr_batch", sc["batch"]), args.seed, warmup, max_time_s=max_time_s)
    sr.eval()
    truth_fine = u_fine[ntr:].to(dev)
    coarse = fine_fields[ntr:, ::4, :, ::4].to(dev)  # (B, T_f/4 + 1, 2, X_f/4 + 1)
    t0 = time.perf_counter()
    up = sr.upsample(TrajectoryBatch(coarse, t_fine[::4].float().to(dev)), 4, 1, nfe=sc["nfe"],
                     generator=torch.Generator(device=dev).manual_seed(args.seed + 2))[0, :, :, 0]
    synchronize(dev)
    sr_s = time.perf_counter() - t0
    shape_f = tuple(truth_fine.shape[1:])
    sr_res = {"training": sr_info, "parameters": sum(p.numel() for p in sr.parameters()), "sample_s": sr_s,
              "coarse_grid": list(coarse.shape[1:2]) + list(coarse.shape[3:]), "fine_grid": list(shape_f)}
    for key, pred_f in (("wdno_superres", up), ("nearest", interpolate(coarse[:, :, 0], shape_f, "nearest")),
                        ("bilinear", interpolate(coarse[:, :, 0], shape_f, "bilinear"))):
        sr_res[key] = {"mse": float((pred_f - truth_fine).pow(2).mean()),
                       "rel_l2": float(relative_l2(pred_f, truth_fine))}
    sr_res["ratio_mse_wdno_to_bilinear"] = sr_res["wdno_superres"]["mse"] / sr_res["bilinear"]["mse"]
    results["superres_x4"] = sr_res
    print("superres", {k: v for k, v in sr_res.items() if isinstance(v, dict) and "mse" in v})
    return coarse, up, truth_fine


# ---------------------------------------------------------------------- control
# J = mean|u(T) - u*|^2 + LAMBDA mean f^2, always scored by re-running the solver on the forcing. Compared
# on the same trained control model, conditions and seed:
#   unguided;  guided with the paper's objective (ControlObjective: J on the generated u, f of x0-hat);
#   guided with the re-simulated objective (ResimulatedObjective: the state term on a differentiable
#   Burgers solve of x0-hat's forcing, a coarser solver than the one that scores);
#   and the model-free baseline: ``nfe`` steps of gradient descent on f from zero on the same
#   re-simulated J (the same number of solver gradients as guidance), f <- f - eta (T X) dJ/df.
# Guidance scales and eta are chosen on training conditions, never on the test ones.
LAMBDA = 0.01
CONTROL = {
    "smoke": dict(resim_scales=(1000.0,), adjoint_etas=(0.1,), solver_modes=16, solver_dt=0.1),
    "cpu": dict(resim_scales=(3e3, 1e4, 3e4, 6e4), adjoint_etas=(0.1, 0.2, 0.4, 0.8), solver_modes=64,
                solver_dt=1e-2),
    # untested on a GPU: coefficient gradients shrink with the grid (33 x 129 vs 17 x 33), hence larger w
    "gpu": dict(resim_scales=(3e4, 3e5), adjoint_etas=(0.2, 0.4), solver_modes=128, solver_dt=4e-3),
    "paper": dict(resim_scales=(1e4, 3e4, 1e5, 3e5), adjoint_etas=(0.1, 0.2, 0.4, 0.8), solver_modes=256,
                  solver_dt=2e-3),
}


def control_cost_s(sc: dict, args, dev: torch.device, u: torch.Tensor, t_grid: torch.Tensor,
                   x_grid: torch.Tensor) -> float:
    """Seconds :func:`run_control` spends beyond training its model: 2 (R + E) guided (re-simulated) and
    adjoint-descent runs of ``nfe`` guidance-solver gradients each (R, E: the swept scales / step sizes,
    on the validation conditions, then on the test ones) and ``len(guidance_scales) + 2 (R + E) + 4``
    solver scorings, from one of each timed here on the test conditions."""
    cfg = CONTROL[args.scale]
    runs = 2 * (len(cfg["resim_scales"]) + len(cfg["adjoint_etas"]))
    uu = u[: sc["n_control"]].double()
    sim = guidance_simulator(uu, t_grid, x_grid, cfg, dev)
    fv = torch.zeros(uu.shape[0], 1, *uu.shape[1:], dtype=torch.float64, device=dev, requires_grad=True)
    synchronize(dev)
    t0 = time.perf_counter()
    torch.autograd.grad(sim(fv).sum(), fv)
    synchronize(dev)
    t1 = time.perf_counter()
    evaluate_burgers_control(fv.detach()[:, 0], uu[:, 0], uu[:, -1], t_grid, x_grid, nu=0.01, weight=LAMBDA,
                             n_modes=sc["n_modes"], dt=sc["dt"])
    t2 = time.perf_counter()
    return runs * sc["nfe"] * (t1 - t0) + (len(sc["guidance_scales"]) + runs + 4) * (t2 - t1)


def guidance_simulator(uu: torch.Tensor, t_grid: torch.Tensor, x_grid: torch.Tensor, cfg: dict,
                       dev: torch.device):
    """The differentiable solver guidance and adjoint descent run from the initial states ``uu[:, 0]``
    (the scale's coarser ``solver_modes`` / ``solver_dt``; scoring uses the data's solver)."""
    return burgers_simulator(uu[:, 0].double().to(dev), t_grid, x_grid, nu=0.01, n_modes=cfg["solver_modes"],
                             dt=cfg["solver_dt"])


def run_control(ctrl: WDNO, c_info: dict, sc: dict, args, dev: torch.device, u: torch.Tensor, f: torch.Tensor,
                t_grid: torch.Tensor, x_grid: torch.Tensor, ntr: int) -> tuple[dict, tuple]:
    """The control comparison (see the comment above) -> (results, (data, unguided, guided test forcings))."""
    cfg = CONTROL[args.scale]
    times = t_grid.float().to(dev)
    kw = dict(nu=0.01, weight=LAMBDA, n_modes=sc["n_modes"], dt=sc["dt"])

    def score(fc: torch.Tensor, uu: torch.Tensor):
        if not torch.isfinite(fc).all():  # a diverged step size: ranked last in the sweep
            return None
        return evaluate_burgers_control(fc, uu[:, 0].double(), uu[:, -1].double(), t_grid, x_grid, **kw)

    def resimulated(uu: torch.Tensor) -> ResimulatedObjective:
        return ResimulatedObjective(guidance_simulator(uu, t_grid, x_grid, cfg, dev), uu[:, -1].unsqueeze(1).to(dev),
                                    LAMBDA)

    def guided(uu: torch.Tensor, kind: str, scale: float):
        target = uu[:, -1].unsqueeze(1).to(dev)
        objective = ControlObjective(target, LAMBDA) if kind == "paper" else resimulated(uu)
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            out = ctrl.generate(TrajectoryBatch(uu.to(dev), times), 1, nfe=sc["nfe"], guidance=objective,
                                guidance_scale=scale, exact_known=False,  # the model's own u(T), for its own J
                                generator=torch.Generator(device=dev).manual_seed(args.seed + 3))
        except FloatingPointError:  # a scale too large for the sampler: ranked last in the sweep
            out = None
        synchronize(dev)
        cost = {"process_cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0}
        if out is None:
            return None, torch.full(uu.shape, float("nan"), dtype=torch.float64), float("inf"), cost
        fc = out.forcing[0].double().cpu()
        own = ControlObjective(target, LAMBDA)(out.state[0].unsqueeze(1), out.forcing[0].unsqueeze(1))
        return score(fc, uu), fc, float(own.mean()), cost

    def adjoint(uu: torch.Tensor, eta: float):
        objective = resimulated(uu)
        fv = torch.zeros(uu.shape[0], 1, *uu.shape[1:], dtype=torch.float64, device=dev)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(sc["nfe"]):
            fv.requires_grad_(True)
            (g,) = torch.autograd.grad(objective(None, fv).sum(), fv)
            fv = (fv - eta * uu.shape[1] * uu.shape[2] * g).detach()
        synchronize(dev)
        cost = {"process_cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0}
        fc = fv[:, 0].cpu()
        return score(fc, uu), fc, cost

    def mean_j(r) -> float:
        return float("inf") if r is None else float(r.J.mean())

    nval, nct = sc["n_control_val"], sc["n_control"]
    val_u = u[:nval]  # selection on training conditions, never on the test ones
    sweeps = {"paper_objective": {str(s): mean_j(guided(val_u, "paper", s)[0]) for s in sc["guidance_scales"]},
              "resimulated": {str(s): mean_j(guided(val_u, "resimulated", s)[0]) for s in cfg["resim_scales"]},
              "adjoint_descent_eta": {str(e): mean_j(adjoint(val_u, e)[0]) for e in cfg["adjoint_etas"]}}
    best = {k: float(min(v, key=v.get)) for k, v in sweeps.items()}
    ctest_u = u[ntr: ntr + nct]
    ctest_f = f[ntr: ntr + nct].double()
    r_ung, f_ung, own_ung, cost_ung = guided(ctest_u, "paper", 0.0)
    r_pap, _, own_pap, cost_pap = guided(ctest_u, "paper", best["paper_objective"])
    r_gui, f_gui, own_gui, cost_gui = guided(ctest_u, "resimulated", best["resimulated"])
    r_adj, _, cost_adj = adjoint(ctest_u, best["adjoint_descent_eta"])
    r_true, r_zero = score(ctest_f, ctest_u), score(torch.zeros_like(ctest_f), ctest_u)
    # for information only, never used for selection: the test cost at every swept setting (step-size sensitivity)
    on_test = {"resimulated": {str(s): mean_j(r_gui) if s == best["resimulated"] else
                               mean_j(guided(ctest_u, "resimulated", s)[0]) for s in cfg["resim_scales"]},
               "adjoint_descent_eta": {str(e): mean_j(r_adj) if e == best["adjoint_descent_eta"] else
                                       mean_j(adjoint(ctest_u, e)[0]) for e in cfg["adjoint_etas"]}}

    def summ(r, **extra) -> dict:
        if r is None:
            return {"J": float("inf"), **extra}
        return {"J": float(r.J.mean()), "state_cost": float(r.state_cost.mean()), "energy": float(r.energy.mean()),
                **extra}

    res = {"training": c_info, "lambda": LAMBDA, "n_conditions": nct, "nfe": sc["nfe"],
           "guidance_solver": {"n_modes": cfg["solver_modes"], "dt": cfg["solver_dt"]},
           "sweeps_on_train_conditions": sweeps, "sweeps_on_test_conditions_not_for_selection": on_test,
           "guidance_scale": best["resimulated"],
           "guidance_scale_paper_objective": best["paper_objective"], "adjoint_eta": best["adjoint_descent_eta"],
           "wdno_unguided": summ(r_ung, model_own_J=own_ung, cost=cost_ung),
           "wdno_guided": summ(r_gui, model_own_J=own_gui, cost=cost_gui, objective="resimulated"),
           "wdno_guided_paper_objective": summ(r_pap, model_own_J=own_pap, cost=cost_pap),
           "adjoint_descent": summ(r_adj, cost=cost_adj),
           "data_forcing": summ(r_true), "zero_forcing": summ(r_zero),
           "ratio_J_guided_to_unguided": mean_j(r_gui) / mean_j(r_ung),
           "ratio_J_paper_objective_guided_to_unguided": mean_j(r_pap) / mean_j(r_ung),
           "ratio_J_guided_to_adjoint_descent": mean_j(r_gui) / mean_j(r_adj)}
    print("control", res, flush=True)
    return res, (ctest_f, f_ung, f_gui)


def control_only(args) -> None:
    """``--only control``: the data and the control model of the full run (same sizes, budgets and
    seeds; the network's initial weights differ, as the full run draws them after the other models)
    and :func:`run_control`; writes ``wdno_burgers_control[_<scale>].json``."""
    torch.set_num_threads(args.threads)
    sc = SCALES[args.scale]
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    t_start, c_start = time.perf_counter(), time.process_time()
    model_yaml, train_yaml = model_section("wdno_burgers")
    steps = sc["steps"] or int(train_yaml["max_steps"])
    lr = sc["lr"] or float(train_yaml["lr"])
    warmup = min(int(train_yaml.get("warmup_steps", 20)), max(steps // 5, 1))
    ds = generate_control(sc["n_train"] + sc["n_test"], args.seed, nx=sc["nx"], nt=sc["nt"], n_modes=sc["n_modes"],
                          dt=sc["dt"], device=dev)
    u = torch.tensor(ds.u.values, dtype=torch.float32)[:, ::2, ::2].contiguous()
    f = torch.tensor(ds.forcing.values, dtype=torch.float32)[:, ::2, ::2].contiguous()
    t_grid, x_grid = torch.tensor(ds.time.values)[::2], torch.tensor(ds.x.values)[::2]
    ntr = sc["n_train"]
    train_b = TrajectoryBatch(u[:ntr], t_grid.float(), f[:ntr])
    cfg_kw = {**simulation_configs(model_yaml, sc["unet"])["wdno"], "task": "control"}
    ctrl = WDNO(from_dict(Config, cfg_kw, prefix="model"))
    ctrl.fit_scaler(train_b)
    ctrl.to(dev)
    train_dev = train_b.to(dev)
    info = train(lambda idx, g: ctrl.loss(train_dev.index(idx.to(dev))).total, list(ctrl.parameters()), steps, lr,
                 ntr, sc["batch"], args.seed, warmup, max_time_s=sc.get("train_s"))
    res, _ = run_control(ctrl.eval(), info, sc, args, dev, u, f, t_grid, x_grid, ntr)
    config = {"scale": args.scale, "only": "control", "n_train": ntr, "grid": list(u.shape[1:]), "steps": steps,
              "batch": sc["batch"], "lr": lr,
              "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg_kw.items()},
              "nu": 0.01, "n_modes": sc["n_modes"], "dt": sc["dt"], "total_wall_s": time.perf_counter() - t_start,
              "total_process_cpu_s": time.process_time() - c_start}
    name = "wdno_burgers_control" if args.scale == "cpu" else f"wdno_burgers_control_{args.scale}"
    write_result(name, {"config": config, "results": {"control": res}}, device=dev)


def figures(name, u_test, f_test, models, superres=None, control=None) -> list[str]:
    """Trajectories vs truth, sub-bands, ensemble spread; with ``superres`` = (coarse, upsampled, truth)
    the super-resolved field, with ``control`` = (data, unguided, guided forcings) the control signals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = RESULTS / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    wd, dd, fno = models["wdno"][1].cpu(), models["ddpm_physical"][1].cpu(), models["fno2d"].cpu()
    i = 0
    lim = float(u_test[i].abs().max())
    # 1. trajectories vs truth
    fig, ax = plt.subplots(1, 5, figsize=(17, 3.2), sharey=True)
    for a, (title, fld) in zip(ax, [("forcing f", f_test[i]), ("truth u", u_test[i]), ("WDNO sample", wd[0, i]),
                                    ("DDPM (physical) sample", dd[0, i]), ("FNO-2D", fno[i])]):
        v = float(fld.abs().max()) if title.startswith("forcing") else lim
        im = a.imshow(fld, aspect="auto", origin="lower", cmap="RdBu_r", extent=(0, 1, 0, 1), vmin=-v, vmax=v)
        a.set_title(title)
        a.set_xlabel("x")
        fig.colorbar(im, ax=a)
    ax[0].set_ylabel("t")
    fig.tight_layout()
    paths.append(_save(fig, out / f"{name}_trajectories.png"))
    # 2. wavelet sub-bands of the truth
    bands = dwtn(u_test[i:i + 1].double(), "bior2.4", "zero", dim=2)[0]
    fig, ax = plt.subplots(1, 4, figsize=(13, 3))
    for a, b, key in zip(ax, bands, ["aa (approx.)", "ad (detail in x)", "da (detail in t)", "dd"]):
        im = a.imshow(b, aspect="auto", origin="lower", cmap="RdBu_r")
        a.set_title(key)
        fig.colorbar(im, ax=a)
    fig.suptitle("one-level bior2.4 coefficients of u(t, x) (rows: time)")
    fig.tight_layout()
    paths.append(_save(fig, out / f"{name}_subbands.png"))
    # 3. ensemble spread at the final time
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
    x = torch.linspace(0, 1, u_test.shape[-1])
    for a, j in zip(ax, range(3)):
        s = wd[:, j, -1]
        a.fill_between(x, torch.quantile(s, 0.05, 0), torch.quantile(s, 0.95, 0), alpha=0.3, label="WDNO 90% band")
        a.plot(x, s.mean(0), label="WDNO mean")
        a.plot(x, u_test[j, -1], "k--", label="truth")
        a.set_title(f"test case {j}: u(T, x)")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / f"{name}_ensemble.png"))
    if superres is None:
        return paths
    coarse, up, truth_fine = superres
    # 4. super-resolved field
    fig, ax = plt.subplots(1, 4, figsize=(15, 3.2), sharey=True)
    shape = tuple(truth_fine.shape[1:])
    for a, (title, fld) in zip(ax, [("coarse input", coarse[0, :, 0]),
                                    ("bilinear x4", interpolate(coarse[:, :, 0], shape, "bilinear")[0]),
                                    ("WDNO super-resolution x4", up[0]), ("truth", truth_fine[0])]):
        im = a.imshow(fld, aspect="auto", origin="lower", cmap="RdBu_r", extent=(0, 1, 0, 1))
        a.set_title(title)
        fig.colorbar(im, ax=a)
    fig.tight_layout()
    paths.append(_save(fig, out / f"{name}_superres.png"))
    if control is None:
        return paths
    f_true, f_ung, f_gui = control
    # 5. control signals
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.2), sharey=True)
    for a, (title, fld) in zip(ax, [("data forcing", f_true[0]), ("WDNO unguided", f_ung[0]),
                                    ("WDNO guided", f_gui[0])]):
        im = a.imshow(fld, aspect="auto", origin="lower", cmap="RdBu_r", extent=(0, 1, 0, 1))
        a.set_title(title)
        fig.colorbar(im, ax=a)
    fig.tight_layout()
    paths.append(_save(fig, out / f"{name}_control.png"))
    return paths


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return shown_path(path)


if __name__ == "__main__":
    main()
