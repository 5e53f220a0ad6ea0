"""Why WDNO trails the physical-space DDPM on forced Burgers (issue 9): ablations on one dataset.

Every variant trains on the same data (the ``--scale cpu`` set of ``wdno_burgers.py``: 192
forced-Burgers trajectories on the 17 x 33 (time x space) grid, 12 test conditions), from the
same seed, with the same optimiser (Adam, warm-up + cosine decay, batch 16, gradient clipping 1)
and the same number of steps, and is scored by the *physical-space* test error of its samples
(frames 1..T; the wavelet models' loss lives on scaled sub-bands and is not comparable across
representations). Reported per variant: single-sample and ensemble-mean MSE, the error per time
index and per space index (single samples), process CPU time (one torch thread), and with
``--eval-at`` the learning curve of the test MSE within one run.

    python benchmarks/wdno_burgers_ablation.py                       # --scale cpu, every variant
    python benchmarks/wdno_burgers_ablation.py --only wdno,ddpm      # some variants, merged into the JSON
    python benchmarks/wdno_burgers_ablation.py --scale smoke         # seconds; plumbing only
    python benchmarks/wdno_burgers_ablation.py --grid coarse,full,fine   # does the gap close with resolution?

Variants are ``Config`` overrides of the benchmark's model (``sciflow/configs/wdno_burgers.yaml``
with the cpu-scale network). Writes ``benchmarks/results/wdno_burgers_ablation[_<scale>][_<tag>].json``;
running a subset updates those variants in an existing file and keeps the others.

Resolution (``--grid``): the same variants (by default the physical-space DDPM and the matched,
field-scaled WDNO, ``wdno_matched_field``) on each named grid, every other setting unchanged:
``coarse`` = the [::2, ::2] copy of the generator's grid (17 x 33 at the cpu scale, the benchmark's),
``full`` = the generator's grid (33 x 65), ``fine`` = a second generation with every axis refined 2x
(65 x 129; ``n_modes`` doubled and ``dt`` halved, as the benchmark's scales do; the same random
initial states and forcings, so the three grids sample the same trajectories, ``fine[::2, ::2]``
agreeing with ``full`` to ~2e-5). Results keyed by grid in
``benchmarks/results/wdno_burgers_resolution[_<scale>][_<tag>].json``, with the WDNO / DDPM ratios
of each grid; a grid / variant pair that is run again replaces its entry, the others are kept.

Viscosity (``--nu``, default 0.01, the WDNO setting): the generator's ``nu`` for every grid. Smaller
values give steep fronts (over the 204 cpu-scale trajectories at ``nu = 0.002``, the per-trajectory
largest |u_x| on the 33 x 65 grid has median 20 and maximum 91, against 9 and 29 at 0.01: fronts
over 2-3 grid points); a non-default ``nu`` is added to the result name (``..._nu<nu>``, unless the
tag already holds it) and recorded in the JSON config. ``--n-modes`` overrides the scale's sine
modes of the spectral solver (``fine`` uses twice as many): at ``nu = 0.002`` use 256 (128 vs 256
modes differ by 2.5e-3 relative L2 on the output grid, 256 vs 512 by 6e-4, 1e-2 at worst at the
steepest front); the default 128 resolves ``nu = 0.01`` to 2e-8.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
from _operators import matched_levels  # noqa: E402
from wdno_burgers import model_section, train  # noqa: E402

from sciflow.config import from_dict  # noqa: E402
from sciflow.data.batches import TrajectoryBatch  # noqa: E402
from sciflow.data.pdes.burgers import generate_control  # noqa: E402
from sciflow.models.neural_operator import relative_l2  # noqa: E402
from sciflow.models.wavelet_diffusion import WDNO, Config  # noqa: E402
from sciflow.nn.wavelets import dwtn  # noqa: E402

SCALES = {
    # width_ratio: the variants' ``base_channels`` overrides are cpu-scale widths, scaled by this (smoke: 8 / 32)
    "smoke": dict(n_train=8, n_test=2, nt=9, nx=17, n_modes=32, dt=5e-3, steps=2, batch=4, n_samples=2, nfe=2,
                  model=dict(base_channels=8, channel_mults=(1, 2)), eval_at=(), width_ratio=0.25),
    "cpu": dict(n_train=192, n_test=12, nt=33, nx=65, n_modes=128, dt=2e-3, steps=150, batch=16, n_samples=4,
                nfe=20, model={}, eval_at=()),
}

#: The reference every variant departs from: WDNO as it was before issue 9 (per-channel scaling, the
#: physical-space DDPM's U-Net, unconstrained edges), whatever the packaged config now says; a scale's
#: ``model`` overrides it.
BASELINE = {"scaling": "channel", "base_channels": 32, "channel_mults": (1, 2, 2), "zero_boundary": False}

#: name -> (Config overrides, options). ``nfe``: sampler budget; ``full_grid``: train on the generator's
#: 33 x 65 grid instead of its [::2, ::2] copy (only without ``--grid``); ``matched_levels``: add
#: ``_operators.matched_levels`` of the scale's network (the physical U-Net with its first level
#: replaced by the DWT; at the cpu scale width 64, levels (1, 1)).
VARIANTS: dict[str, tuple[dict, dict]] = {
    "ddpm_physical": ({"space": "physical"}, {}),
    "wdno": ({}, {}),
    "wdno_nfe50": ({}, {"nfe": 50}),
    "wdno_noclip": ({"clip_denoised": None}, {}),
    "wdno_eps": ({"prediction": "eps"}, {}),
    "wdno_residual": ({"residual": True}, {}),
    "wdno_periodization": ({"mode": "periodization"}, {}),
    "wdno_haar": ({"wavelet": "haar"}, {}),
    "wdno_bior1.3": ({"wavelet": "bior1.3"}, {}),
    "wdno_field_scaling": ({"scaling": "field"}, {}),
    "wdno_field_scaling_haar": ({"scaling": "field", "wavelet": "haar"}, {}),
    "wdno_field_scaling_periodization": ({"scaling": "field", "mode": "periodization"}, {}),
    "wdno_width64": ({"base_channels": 64}, {}),
    "wdno_field_scaling_width64": ({"scaling": "field", "base_channels": 64}, {}),
    "ddpm_physical_width64": ({"space": "physical", "base_channels": 64}, {}),
    # the physical U-Net with its first level replaced by the DWT: widths (64, 64) from the coefficient grid
    "wdno_width64_1level": ({"base_channels": 64, "channel_mults": (1, 1)}, {}),
    "wdno_field_scaling_width64_1level": ({"scaling": "field", "base_channels": 64, "channel_mults": (1, 1)}, {}),
    "wdno_full_grid": ({}, {"full_grid": True}),
    "ddpm_physical_full_grid": ({"space": "physical"}, {"full_grid": True}),
    "wdno_field_scaling_full_grid": ({"scaling": "field"}, {"full_grid": True}),
    # the benchmark's ``wdno_matched`` (at the cpu scale the same model as wdno_field_scaling_width64_1level)
    "wdno_matched_field": ({"scaling": "field"}, {"matched_levels": True}),
    # the zero Dirichlet data imposed on the samples (the packaged model): in physical space the edges are known
    # entries (training changes too), in wavelet space the same network's denoised estimates are projected
    "ddpm_physical_zero_boundary": ({"space": "physical", "zero_boundary": True}, {}),
    "wdno_matched_field_zero_boundary": ({"scaling": "field", "zero_boundary": True}, {"matched_levels": True}),
}

#: the generator's viscosity without ``--nu`` (the WDNO setting); result names and keys are unchanged for it
DEFAULT_NU = 0.01

#: ``--grid`` choices: the trajectories of the scale's generation on its [::2, ::2] copy, on its own grid,
#: and regenerated with every axis refined 2x
GRIDS = ("coarse", "full", "fine")
#: the variants ``--grid`` runs when ``--only`` is not given
RESOLUTION_VARIANTS = ("ddpm_physical", "wdno_matched_field")


def make_data(sc: dict, seed: int, grids: list[str]) -> tuple[dict, dict]:
    """``grid -> (train, test)`` TrajectoryBatches for ``grids`` and ``grid -> description``.
    ``coarse`` and ``full`` come from one generation on the scale's ``(nt, nx)`` grid; ``fine``
    from one with ``2 (nt - 1) + 1`` times, ``2 (nx - 1) + 1`` points, ``2 n_modes`` and ``dt / 2``."""
    n, ntr = sc["n_train"] + sc["n_test"], sc["n_train"]
    gens = {}
    if {"coarse", "full"} & set(grids):
        gens["full"] = dict(nx=sc["nx"], nt=sc["nt"], n_modes=sc["n_modes"], dt=sc["dt"])
    if "fine" in grids:
        gens["fine"] = dict(nx=2 * (sc["nx"] - 1) + 1, nt=2 * (sc["nt"] - 1) + 1, n_modes=2 * sc["n_modes"],
                            dt=sc["dt"] / 2)
    data, info = {}, {}
    for key, kw in gens.items():
        c0 = time.process_time()
        ds = generate_control(n, seed, nu=sc.get("nu", DEFAULT_NU), **kw)
        gen_cpu = time.process_time() - c0
        u = torch.tensor(ds.u.values, dtype=torch.float32)
        f = torch.tensor(ds.forcing.values, dtype=torch.float32)
        t = torch.tensor(ds.time.values, dtype=torch.float32)
        if key == "full":
            views = {"coarse": (u[:, ::2, ::2], f[:, ::2, ::2], t[::2]), "full": (u, f, t)}
        else:
            views = {"fine": (u, f, t)}
        for g, (uu, ff, tt) in views.items():
            if g not in grids:
                continue
            uu, ff = uu.contiguous(), ff.contiguous()
            test_u = uu[ntr:, 1:]
            data[g] = (TrajectoryBatch(uu[:ntr], tt, ff[:ntr]), TrajectoryBatch(uu[ntr:], tt, ff[ntr:]))
            info[g] = {"grid": list(uu.shape[1:]), "generated_on": list(u.shape[1:]),
                       "generation": {**kw, "process_cpu_s": gen_cpu},
                       "zero_prediction_mse": float(test_u.pow(2).mean()),
                       "persistence_mse": float((test_u - uu[ntr:, :1]).pow(2).mean())}
    return data, info


def evaluate(m: WDNO, test: TrajectoryBatch, n_samples: int, nfe: int, seed: int) -> dict:
    """Physical-space errors of ``n_samples`` DDIM samples per test condition (frames 1..T)."""
    m.eval()
    c0 = time.process_time()
    s = m.sample(test, n_samples, nfe=nfe, generator=torch.Generator().manual_seed(seed))  # (S, B, T, X)
    m.train()
    fut, true = s[:, :, 1:], test.values[:, 1:]
    err2 = (fut - true).pow(2)  # (S, B, T-1, X)
    mean_pred = fut.mean(0)
    per_t = err2.mean((0, 1, 3))
    per_x = err2.mean((0, 1, 2))
    X = per_x.numel()
    edge = max(X // 8, 1)  # the outer eighth at each side of the domain
    # where the error sits in the wavelet domain: one-level bior2.4 (zero mode) DWT over (time, x) of the
    # single-sample error and of the truth, band energies (aa, ad, da, dd; first letter time)
    e_bands = dwtn((fut - true).flatten(0, 1).double(), "bior2.4", "zero", dim=2).pow(2).sum((0, 2, 3))
    s_bands = dwtn(true.double(), "bior2.4", "zero", dim=2).pow(2).sum((0, 2, 3)) * n_samples
    return {"mse_single_sample": float(err2.mean()),
            "error_energy_fraction_per_band": (e_bands / e_bands.sum()).tolist(),
            "relative_error_per_band": (e_bands / s_bands).sqrt().tolist(),
            "mse_ensemble_mean": float((mean_pred - true).pow(2).mean()),
            "rel_l2_single_sample": float(relative_l2(fut.flatten(0, 1), true.repeat(n_samples, 1, 1))),
            "rel_l2_ensemble_mean": float(relative_l2(mean_pred, true)),
            "mse_per_time": per_t.tolist(), "mse_per_x": per_x.tolist(),
            "mse_first_quarter_of_time": float(per_t[: max(len(per_t) // 4, 1)].mean()),
            "mse_last_quarter_of_time": float(per_t[-max(len(per_t) // 4, 1):].mean()),
            "mse_boundary_eighths_in_x": float(torch.cat([per_x[:edge], per_x[-edge:]]).mean()),
            "mse_interior_in_x": float(per_x[edge:-edge].mean()),
            "sample_process_cpu_s": time.process_time() - c0}


def run_variant(name: str, sc: dict, data: dict, args, grid: str = "coarse") -> dict:
    overrides, opts = VARIANTS[name]
    train_b, test_b = data["full" if opts.get("full_grid") else grid]
    model_yaml, train_yaml = model_section("wdno_burgers")
    if "base_channels" in overrides and sc.get("width_ratio", 1) != 1:
        overrides = {**overrides, "base_channels": max(round(overrides["base_channels"] * sc["width_ratio"]), 1)}
    if opts.get("matched_levels"):
        overrides = {**overrides, **matched_levels({**model_yaml, **BASELINE, **sc["model"]})}
    lr = float(train_yaml["lr"]) if args.scale == "cpu" else 1e-3
    steps = args.steps or sc["steps"]
    warmup = min(int(train_yaml.get("warmup_steps", 20)), max(steps // 5, 1))
    nfe = opts.get("nfe", sc["nfe"])
    eval_at = sorted({int(e) for e in (args.eval_at or sc["eval_at"]) if 0 < int(e) < steps} | {steps})
    torch.manual_seed(args.seed)  # identical network initialisation for variants of the same shape
    m = WDNO(from_dict(Config, {**model_yaml, **BASELINE, **sc["model"], **overrides}, prefix="model"))
    m.fit_scaler(train_b)
    curve, clock = {}, {"train_cpu": 0.0, "since": time.process_time()}

    def score_at(step: int) -> None:  # the learning curve; evaluation time is not training time
        if step not in eval_at:
            return
        clock["train_cpu"] += time.process_time() - clock["since"]
        curve[step] = evaluate(m, test_b, sc["n_samples"], nfe, args.seed + 1)
        m.train()
        print(f"  {name} step {step}: test MSE single {curve[step]['mse_single_sample']:.3e} "
              f"ensemble-mean {curve[step]['mse_ensemble_mean']:.3e} ({clock['train_cpu']:.0f} CPU-s)", flush=True)
        clock["since"] = time.process_time()

    info = train(lambda idx, g: m.loss(train_b.index(idx), generator=g).total, list(m.parameters()), steps, lr,
                 train_b.values.shape[0], sc["batch"], args.seed, warmup, on_step=score_at)
    return {"overrides": {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in overrides.items()},
            "options": opts, "steps": steps, "nfe": nfe, "grid": list(train_b.values.shape[1:]),
            "parameters": sum(p.numel() for p in m.parameters()),
            "train_process_cpu_s": clock["train_cpu"], "loss_last": info["loss_last"],
            **curve[steps], "curve": {str(s): {k_: v for k_, v in e.items() if not k_.startswith("mse_per")}
                                      for s, e in curve.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--only", default=None, help=f"comma-separated variants of {sorted(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps per variant (default: the scale's)")
    ap.add_argument("--eval-at", default=None, help="comma-separated steps at which to also score the test set")
    ap.add_argument("--tag", default="", help="suffix of the result name (e.g. a longer-budget run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nu", type=float, default=DEFAULT_NU,
                    help="viscosity of the generated Burgers data (default 0.01; smaller = sharper fronts)")
    ap.add_argument("--n-modes", type=int, default=None,
                    help="sine modes of the data's spectral solver (default: the scale's; 'fine' uses twice)")
    ap.add_argument("--grid", default=None,
                    help=f"comma-separated grids of {list(GRIDS)}: run the variants (default "
                         f"{','.join(RESOLUTION_VARIANTS)}) on each, into wdno_burgers_resolution[...].json")
    args = ap.parse_args()
    args.eval_at = [int(e) for e in args.eval_at.split(",")] if args.eval_at else None
    torch.set_num_threads(1)
    if not args.nu > 0:
        raise SystemExit(f"--nu must be positive, got {args.nu}")
    if args.n_modes is not None and args.n_modes < 2:
        raise SystemExit(f"--n-modes must be >= 2, got {args.n_modes}")
    sc = {**SCALES[args.scale], "nu": args.nu}
    if args.n_modes is not None:
        sc["n_modes"] = args.n_modes
    if args.grid is not None:
        return resolution(args, sc)
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    c_start = time.process_time()
    ntr = sc["n_train"]
    data, grid_info = make_data(sc, args.seed, ["coarse", "full"])
    name = "wdno_burgers_ablation" + ("" if args.scale == "cpu" else f"_{args.scale}") + _suffix(args)
    path = RESULTS / f"{name}.json"
    previous = json.loads(path.read_text())["results"] if path.exists() and args.only else {}
    results = dict(previous)
    for v in names:
        print(f"variant {v}", flush=True)
        results[v] = run_variant(v, sc, data, args)
    for v, r in results.items():  # ratios against the physical-space model of the same file, where present
        ref = results.get("ddpm_physical_full_grid" if r.get("options", {}).get("full_grid") else "ddpm_physical")
        r["ratio_mse_single_to_ddpm_physical"] = r["mse_single_sample"] / ref["mse_single_sample"] if ref else None
        r["ratio_mse_ensemble_mean_to_ddpm_physical"] = \
            r["mse_ensemble_mean"] / ref["mse_ensemble_mean"] if ref else None
    data_info = {"n_train": ntr, "n_test": sc["n_test"], "nu": args.nu, **_modes(args), "generator": "burgers-control",
                 "fine_grid": grid_info["full"]["grid"], "grid": grid_info["coarse"]["grid"],
                 "zero_prediction_mse": grid_info["coarse"]["zero_prediction_mse"],
                 "persistence_mse": grid_info["coarse"]["persistence_mse"]}
    config = {"scale": args.scale, "steps": args.steps or sc["steps"], "batch": sc["batch"],
              "n_samples": sc["n_samples"], "nfe_default": sc["nfe"], "sampler": "ddim", "seed": args.seed,
              "model": {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in {**model_section("wdno_burgers")[0], **BASELINE, **sc["model"]}.items()},
              "data": data_info, "last_run_process_cpu_s": time.process_time() - c_start,
              "last_run_variants": names}
    write_result(name, {"config": config, "results": results})


def _suffix(args) -> str:
    """The result-name suffix: ``_<tag>``, preceded by ``_nu<nu>`` for a non-default viscosity
    unless the tag already names it."""
    parts = [f"nu{args.nu:g}"] if args.nu != DEFAULT_NU and f"nu{args.nu:g}" not in args.tag else []
    return "".join(f"_{p}" for p in parts + ([args.tag] if args.tag else []))


def _modes(args) -> dict:
    """``{"n_modes": ...}`` in the data config when ``--n-modes`` is given (default runs keep their keys)."""
    return {} if args.n_modes is None else {"n_modes": args.n_modes}


#: the per-grid summary of ``--grid`` (keys of :func:`run_variant`'s result)
SUMMARY_KEYS = ("mse_single_sample", "mse_ensemble_mean", "rel_l2_single_sample", "rel_l2_ensemble_mean",
                "train_process_cpu_s", "sample_process_cpu_s", "parameters")


def resolution(args, sc: dict) -> None:
    """``--grid``: the variants on each grid, results keyed by grid; ratios against the grid's
    ``ddpm_physical``. Saves after every variant (a long run's finished rows survive)."""
    grids = args.grid.split(",")
    bad = [g for g in grids if g not in GRIDS]
    if bad:
        raise SystemExit(f"unknown grids {bad}; known: {list(GRIDS)}")
    names = args.only.split(",") if args.only else list(RESOLUTION_VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    pinned = [v for v in names if VARIANTS[v][1].get("full_grid")]
    if pinned:
        raise SystemExit(f"variants {pinned} pin the full grid; with --grid use their base variants")
    c_start = time.process_time()
    data, grid_info = make_data(sc, args.seed, grids)
    name = "wdno_burgers_resolution" + ("" if args.scale == "cpu" else f"_{args.scale}") + _suffix(args)
    path = RESULTS / f"{name}.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    results: dict = doc.get("results", {})
    data_doc: dict = doc.get("config", {}).get("data", {})
    summary: dict = doc.get("summary", {})
    model_yaml = {**model_section("wdno_burgers")[0], **BASELINE, **sc["model"]}

    def save(done: list[str], complete: bool) -> None:
        for g, rows in results.items():  # ratios against the physical-space model of the same grid
            ref = rows.get("ddpm_physical")
            for r in rows.values():
                for key in ("mse_single_sample", "mse_ensemble_mean", "rel_l2_single_sample", "rel_l2_ensemble_mean",
                            "train_process_cpu_s"):
                    r[f"ratio_{key}_to_ddpm_physical"] = r[key] / ref[key] if ref else None
            summary[g] = {v: {k: r[k] for k in SUMMARY_KEYS} | {"ratio_mse_single_to_ddpm_physical":
                                                               r["ratio_mse_single_sample_to_ddpm_physical"],
                                                               "ratio_mse_ensemble_mean_to_ddpm_physical":
                                                               r["ratio_mse_ensemble_mean_to_ddpm_physical"]}
                          for v, r in rows.items()}
        config = {"scale": args.scale, "steps": args.steps or sc["steps"], "batch": sc["batch"],
                  "n_samples": sc["n_samples"], "nfe_default": sc["nfe"], "sampler": "ddim", "seed": args.seed,
                  "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model_yaml.items()},
                  "matched_levels": {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                                     matched_levels(model_yaml).items()},
                  "data": data_doc, "last_run_process_cpu_s": time.process_time() - c_start,
                  "last_run": {"grids": grids, "variants": names, "done": done, "complete": complete}}
        write_result(name, {"config": config, "summary": summary, "results": results})

    data_doc.update({"n_train": sc["n_train"], "n_test": sc["n_test"], "nu": args.nu, **_modes(args),
                     "generator": "burgers-control",
                     **{f"grid_{g}": grid_info[g] for g in grids}})
    done: list[str] = []
    for g in grids:
        for v in names:
            print(f"grid {g} {grid_info[g]['grid']}: variant {v}", flush=True)
            results.setdefault(g, {})[v] = {"grid_name": g, **run_variant(v, sc, data, args, g)}
            done.append(f"{g}/{v}")
            save(done, False)
    save(done, True)


if __name__ == "__main__":
    main()
