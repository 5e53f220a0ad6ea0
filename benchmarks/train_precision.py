"""Mixed precision and ``torch.compile`` in training: what ``train.precision=bf16`` and
``train.compile=true`` buy per family, measured through ``fit`` itself.

    python benchmarks/train_precision.py                 # --scale cpu: this CPU (bf16 pays with bf16 units)
    python benchmarks/train_precision.py --scale smoke    # seconds; plumbing only
    python benchmarks/train_precision.py --scale gpu      # the GPU check: bf16 and compile on the card

Each case is a packaged experiment (``sciflow train <name>``: its model, data pipeline and
optimiser), trained by ``sciflow.training.fit`` for a few dozen steps in each variant: ``fp32``
(the anchor), ``bf16`` (autocast of ``model.loss`` to bfloat16), ``compile`` (``torch.compile`` of
the loss) and ``compile+bf16``. Every variant starts from the same weights and sees the same
batches and noise draws (one seed), so besides the time per step it reports how far bf16 moves the
numbers: the loss and gradient at the initial weights (relative difference, gradient cosine) and
the mean loss of the last logged interval relative to fp32's. Times are the medians of the logged
intervals after the first (``fit`` logs ``steps_per_s`` per interval; the first holds the warm-up
and, compiled, the compilation, reported as ``first_interval_extra_s``; Inductor's on-disk caches
from earlier runs on the same machine shorten it, 50-120 s on a cold CPU cache). Ratios are against
the fp32 eager run of the same case in the same process. Compiled, the diffusion models (WDNO) draw
their noise with Inductor's own generator, so their losses differ from the eager ones by the
sampling noise of the loss, not by precision. On a CPU, bf16 pays only with bf16 units
(AVX512-BF16, AMX) and convolution-heavy models.

Eager variants of every case run first; the compiled ones follow while the runner's deadline
(``SCIFLOW_BENCH_DEADLINE``) leaves time, the rest is recorded under ``skipped``. A variant that
fails (an op without a bf16 kernel, a graph break that cannot compile) records its error instead of
a time. Writes ``benchmarks/results/train_precision[_<scale>].json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_left, write_result  # noqa: E402

from sciflow.cli.pipeline import (build_model, model_for_data, prepare_splits, resolve_model_for_data,  # noqa: E402
                                  windows)
from sciflow.config import load_experiment  # noqa: E402
from sciflow.training import BatchLoader, fit  # noqa: E402
from sciflow.training._batch_stream import to_device  # noqa: E402

BENCHMARK = {
    "name": "train_precision", "script": "train_precision.py", "family": "training", "owner": "previous session",
    "kind": "speed",
    "dataset": "packaged experiments: WDNO and FNO on 2-D Navier-Stokes, WDNO on forced Burgers, "
               "Langevin flow on Lorenz spiking, LNSDE on irregular Lorenz-63",
    "description": "time per training step of fit with train.precision=bf16 and train.compile=true vs fp32 eager, "
                   "and how far bf16 moves the loss",
    "scales": {"smoke": ["--scale", "smoke"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "results": {"smoke": ["train_precision_smoke"], "cpu": ["train_precision"], "gpu": ["train_precision_gpu"]},
    "timeout_s": {"cpu": 1800},
    "metrics": [
        {"label": "WDNO Navier-Stokes, compiled: time per step", "path": "cases/wdno_navier_stokes/compile/step_s",
         "unit": "s", "baselines": {"fp32": "cases/wdno_navier_stokes/fp32/step_s"}},
        {"label": "WDNO Navier-Stokes, bf16: time per step", "path": "cases/wdno_navier_stokes/bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/wdno_navier_stokes/fp32/step_s"}},
        {"label": "WDNO Navier-Stokes, compiled bf16: time per step",
         "path": "cases/wdno_navier_stokes/compile+bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/wdno_navier_stokes/fp32/step_s"}},
        {"label": "WDNO Burgers, bf16: time per step", "path": "cases/wdno_burgers/bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/wdno_burgers/fp32/step_s"}},
        {"label": "FNO Navier-Stokes, bf16: time per step", "path": "cases/fno_navier_stokes/bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/fno_navier_stokes/fp32/step_s"}},
        {"label": "FNO Navier-Stokes, compiled: time per step", "path": "cases/fno_navier_stokes/compile/step_s",
         "unit": "s", "baselines": {"fp32": "cases/fno_navier_stokes/fp32/step_s"}},
        {"label": "Langevin flow, bf16: time per step", "path": "cases/langevin_flow_lorenz/bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/langevin_flow_lorenz/fp32/step_s"}},
        {"label": "LNSDE, bf16: time per step", "path": "cases/lorenz_irregular_lnsde/bf16/step_s",
         "unit": "s", "baselines": {"fp32": "cases/lorenz_irregular_lnsde/fp32/step_s"}},
        {"label": "Langevin flow, compiled: time per step", "path": "cases/langevin_flow_lorenz/compile/step_s",
         "unit": "s", "baselines": {"fp32": "cases/langevin_flow_lorenz/fp32/step_s"}},
        {"label": "LNSDE, compiled: time per step", "path": "cases/lorenz_irregular_lnsde/compile/step_s",
         "unit": "s", "baselines": {"fp32": "cases/lorenz_irregular_lnsde/fp32/step_s"}},
        {"label": "WDNO Navier-Stokes: bf16 loss at the initial weights, rel. difference",
         "path": "cases/wdno_navier_stokes/bf16_numerics/loss_rel_diff"},
        {"label": "FNO Navier-Stokes: bf16 loss at the initial weights, rel. difference",
         "path": "cases/fno_navier_stokes/bf16_numerics/loss_rel_diff"},
        {"label": "LNSDE: bf16 loss at the initial weights, rel. difference",
         "path": "cases/lorenz_irregular_lnsde/bf16_numerics/loss_rel_diff"},
    ],
}

# experiment -> its overrides per scale; gpu: the card's sizes (64^2 Navier-Stokes, wider U-Nets, larger
# batches). COMPILED: the cases each scale also compiles (on the GPU only where compiling fits the check).
CASES: dict[str, dict[str, list[str]]] = {
    "wdno_navier_stokes": {
        "smoke": ["data.params.n=6", "data.params.nt=11", "data.batch_size=4"],
        "cpu": ["data.params.n=20"],
        "gpu": ["data.params.n=24", "data.params.stride=1", "data.batch_size=16", "model.base_channels=64"]},
    "fno_navier_stokes": {
        "smoke": ["data.params.n=6", "data.params.nt=11", "data.batch_size=4"],
        "cpu": ["data.params.n=20"],
        "gpu": ["data.params.n=24", "data.params.stride=1", "data.batch_size=16", "model.width=64",
                "model.modes=[16]"]},
    "wdno_burgers": {
        "smoke": ["data.params.n=12", "data.batch_size=4"],
        "cpu": ["data.params.n=60", "data.batch_size=16"],
        "gpu": ["data.params.n=160", "data.batch_size=64", "model.base_channels=128", "model.channel_mults=[1,2]",
                "model.num_res_blocks=2"]},
    "langevin_flow_lorenz": {
        "smoke": ["data.params.n=8"], "cpu": [], "gpu": ["data.batch_size=128"]},
    "lorenz_irregular_lnsde": {
        "smoke": ["data.params.n=20", "data.batch_size=8"], "cpu": [], "gpu": ["data.batch_size=128"]},
}
COMPILED = {"smoke": (), "cpu": tuple(CASES), "gpu": ("wdno_navier_stokes",)}
SCALES = {"smoke": {"log_every": 2, "intervals": 3}, "cpu": {"log_every": 10, "intervals": 4},
          "gpu": {"log_every": 20, "intervals": 4}}
VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "compile": ("fp32", True),
            "compile+bf16": ("bf16", True)}


def prepare(name: str, overrides: list[str]):
    exp = load_experiment(name, overrides)
    splits = prepare_splits(exp)
    exp = resolve_model_for_data(exp, splits)
    return exp, splits, windows(splits.train, exp.data.window, exp.data.stride)


def bf16_numerics(exp, splits, train, device: torch.device) -> dict:
    """Loss and gradient of ``model.loss`` on the first batch at the initial weights, fp32 vs bf16
    autocast on ``device`` (the same noise draws: the global RNG is reseeded before each)."""
    model = model_for_data(exp, splits, 0).to(device)
    batch = to_device(next(iter(BatchLoader(train, exp.data.batch_size, seed=0))), device)
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    for key, autocast in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(batch).total
        loss.float().backward()
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().double() for p in params])
        out[key] = (float(loss.detach()), grad)
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    return {"device": device.type, "loss_fp32": l32, "loss_bf16": l16,
            "loss_rel_diff": abs(l16 - l32) / max(abs(l32), 1e-30),
            "grad_rel_diff": float((g16 - g32).norm() / g32.norm().clamp_min(1e-30)),
            "grad_cosine": float(torch.nn.functional.cosine_similarity(g16, g32, dim=0))}


def run_variant(exp, splits, train, device: torch.device, precision: str, compile: bool, log_every: int,
                intervals: int) -> dict:
    """``fit`` for ``log_every * intervals`` steps; time per step from the logged intervals after the first."""
    model = model_for_data(exp, splits, 0).to(device)
    cfg = replace(exp.train, max_steps=log_every * intervals, log_every=log_every, eval_every=0, checkpoint_every=0,
                  precision=precision, compile=compile, device=str(device), progress=False, max_time_s=None,
                  time_schedule="stop", ema_decay=None, keep_best=False, tensorboard=False, seed=0)
    loader = BatchLoader(train, exp.data.batch_size, seed=0)
    if compile:
        torch._dynamo.reset()  # each compiled variant pays its own compilation
    t0 = time.perf_counter()
    res = fit(model, loader, None, cfg)
    wall = time.perf_counter() - t0
    rates = [h["steps_per_s"] for h in res.history]
    step_s = statistics.median(1 / r for r in rates[1:])
    return {"step_s": step_s, "steps_per_s": 1 / step_s, "interval_step_s": [1 / r for r in rates],
            "first_interval_extra_s": log_every / rates[0] - log_every * step_s, "wall_s": wall,
            "steps": res.steps, "skipped_steps": res.skipped_steps,
            "loss_curve": [h["train/loss"] for h in res.history], "last_loss": res.history[-1]["train/loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sc = SCALES[args.scale]
    name = args.name or ("train_precision" if args.scale == "cpu" else f"train_precision_{args.scale}")

    plans, prepared, cases, skipped = [], {}, {}, {}
    for case in args.cases:
        t0 = time.perf_counter()
        prepared[case] = prepare(case, CASES[case][args.scale])
        exp, splits, train = prepared[case]
        cases[case] = {"overrides": CASES[case][args.scale], "model": exp.model.name,
                       "batch_size": exp.data.batch_size, "data_s": time.perf_counter() - t0,
                       "parameters": sum(p.numel() for p in build_model(exp, 0).parameters())}
        try:
            cases[case]["bf16_numerics"] = bf16_numerics(exp, splits, train, device)
        except Exception as e:  # noqa: BLE001 -- an op without a bf16 kernel is a result
            cases[case]["bf16_numerics"] = {"error": f"{type(e).__name__}: {e}"[:400]}
        plans += [(case, "fp32"), (case, "bf16")]
    plans += [(case, v) for case in args.cases if case in COMPILED[args.scale] for v in ("compile", "compile+bf16")]
    for case, variant in plans:
        # about the fp32 run's time (bf16), plus the compilation (compiled): leave it when the deadline is near
        base = cases[case].get("fp32", {}).get("wall_s", 10.0)
        need = 1.5 * base + (2 * base + 60.0 if "compile" in variant else 0.0)
        if time_left() < need:
            skipped[f"{case}/{variant}"] = (f"{time_left():.0f} s left before the runner's deadline, "
                                            f"~{need:.0f} s needed")
            continue
        exp, splits, train = prepared[case]
        precision, compile = VARIANTS[variant]
        print(f"[train_precision] {case} {variant}", flush=True)
        try:
            r = run_variant(exp, splits, train, device, precision, compile, sc["log_every"], sc["intervals"])
        except Exception as e:  # noqa: BLE001 -- recorded, the other variants still run
            cases[case][variant] = {"error": f"{type(e).__name__}: {e}"[:400]}
            continue
        if variant != "fp32" and "step_s" in cases[case].get("fp32", {}):
            base = cases[case]["fp32"]
            r["speedup_vs_fp32"] = base["step_s"] / r["step_s"]
            r["last_loss_rel_diff_vs_fp32"] = abs(r["last_loss"] - base["last_loss"]) / max(abs(base["last_loss"]),
                                                                                             1e-30)
        cases[case][variant] = r
        print(f"  {r['step_s'] * 1e3:.1f} ms/step" + (f", {r['speedup_vs_fp32']:.2f}x fp32"
                                                     if "speedup_vs_fp32" in r else ""), flush=True)
    write_result(name, {"scale": args.scale, "config": {**sc, "compiled": list(COMPILED[args.scale]),
                                                        "threads": args.threads},
                        "cases": cases, "skipped": skipped}, device)


if __name__ == "__main__":
    main()
