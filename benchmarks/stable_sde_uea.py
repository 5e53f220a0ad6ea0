"""Stable neural SDEs on UEA/UCR classification with 0/30/50/70 % of the values removed.

The protocol of Oh, Lim & Kim (ICLR 2024, §5.1, Table 2) after Kidger et al. (NeurIPS 2020):
TRAIN + TEST combined, the missing fraction removed per channel (``sciflow.data.timeseries``),
70/15/15 stratified split, normalisation by observed training statistics; each model is trained
with Adam, evaluated on the validation split every epoch, the weights with the best validation
accuracy are restored (early stopping after ``patience`` epochs without improvement) and scored on
the test split. Mean ± std over seeds; runs whose loss or logits became NaN/Inf are counted as
failures (the trainer skips non-finite steps; ``skipped_steps`` is recorded too).

Also measured (same run, same machine): one training epoch of LNSDE on BasicMotions at 50 %
missing through sciflow's ``sdeint`` vs ``torchsde.sdeint`` (the official code's path).

    python benchmarks/stable_sde_uea.py                 # default scale (6 epochs; ≈1 CPU-hour, one thread)
    python benchmarks/stable_sde_uea.py --scale trained --datasets BasicMotions GunPoint
                                                        # ≤ 30 epochs, 5 seeds (≈ 1 CPU-hour); the table
                                                        # in the results was run per seed and merged:
    python benchmarks/stable_sde_uea.py --scale trained --datasets BasicMotions --seed-list 0 --no-speed --name bm_s0
    python benchmarks/stable_sde_uea.py --scale trained --merge bm_s*.json gp_s*.json
    python benchmarks/stable_sde_uea.py --scale paper   # all bundled problems, 5 seeds, 100 epochs
    python benchmarks/stable_sde_uea.py --datasets BasicMotions --models lnsde --rates 0.5 --seeds 1 --epochs 3
    python benchmarks/stable_sde_uea.py --speed-only    # only the sciflow-vs-torchsde epoch timing

Writes ``benchmarks/results/<name>.json`` and ``<name>.md`` (default name ``stable_sde_uea``;
``SCIFLOW_BENCH_OUT`` redirects them, e.g. for per-seed files that are merged afterwards).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, time_it, write_result  # noqa: E402

from sciflow.data.timeseries import classification_splits, load_uea  # noqa: E402
from sciflow.models.stable_sde import Config, StableSDE  # noqa: E402
from sciflow.training import BatchLoader, TrainConfig, fit  # noqa: E402
from sciflow.training.callbacks import Callback  # noqa: E402
from sciflow.training.trainer import NonFiniteLossError  # noqa: E402

LABELS = {"lsde": "LSDE", "lnsde": "LNSDE", "gsde": "GSDE", "neural_cde": "Neural CDE",
          "neural_sde": "Neural SDE (naive)", "neural_ode": "Neural ODE", "ode_rnn": "ODE-RNN"}

SCALES: dict[str, dict[str, Any]] = {
    # the 5-seed table: all bundled problems, 6 epochs, batch "auto"
    # (a power of two ≈ n_train / 4, in [16, 64], so every epoch takes ≥ 3 optimiser steps)
    "default": {"datasets": ["GunPoint", "ArrowHead", "ItalyPowerDemand", "JapaneseVowels", "BasicMotions"],
                "seeds": [0, 1, 2, 3, 4], "epochs": 6, "patience": 6, "hidden_dim": 16, "batch_size": "auto",
                "lr": 1e-2},
    # the trained table: ≤ 30 epochs with early stopping on validation accuracy (the paper's
    # protocol, shortened to the CPU budget); ArrowHead (251 steps per series, the most costly
    # epoch of the bundled problems) gets 20
    "trained": {"datasets": ["BasicMotions", "GunPoint", "JapaneseVowels", "ArrowHead", "ItalyPowerDemand"],
                "seeds": [0, 1, 2, 3, 4], "epochs": 30, "epochs_by_dataset": {"ArrowHead": 20},
                "patience": 10, "hidden_dim": 16, "batch_size": "auto", "lr": 1e-2},
    "paper": {"datasets": ["BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand"],
              "seeds": [0, 1, 2, 3, 4], "epochs": 100, "patience": 20, "hidden_dim": 32, "batch_size": 64,
              "lr": 1e-3},
}
MODELS = ["lsde", "lnsde", "gsde", "neural_cde", "neural_sde"]
RATES = [0.0, 0.3, 0.5, 0.7]


class BestValidation(Callback):
    """Keep the weights with the best validation accuracy (ties: lower loss) — or, with
    ``by_loss=True``, the lowest validation loss; stop after ``patience`` evaluations without
    improvement (Kidger et al. 2020, App. C)."""

    def __init__(self, patience: int, by_loss: bool = False) -> None:
        self.patience, self.bad, self.by_loss = patience, 0, by_loss
        self.best: tuple[float, float] = (-math.inf, math.inf)
        self.state: dict[str, torch.Tensor] | None = None
        self.model: torch.nn.Module | None = None
        self.epochs = 0
        self.best_epoch = 0

    def on_fit_start(self, state, model) -> None:
        self.model = model

    def on_eval_end(self, state, metrics: Mapping[str, float]) -> None:
        self.epochs += 1
        loss = metrics["val/loss"]
        acc = -loss if self.by_loss else metrics.get("val/terms/accuracy", -1.0)
        if math.isfinite(loss) and (acc > self.best[0] or (acc == self.best[0] and loss < self.best[1])):
            self.best, self.bad, self.best_epoch = (acc, loss), 0, self.epochs
            self.state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad += 1
            if self.bad >= self.patience:
                state.should_stop = True
                state.stop_reason = f"no validation improvement for {self.patience} epochs"


def batch_size(spec: int | str, n_train: int) -> int:
    """``spec`` samples (at most ``n_train``), or for ``"auto"`` the power of two nearest below
    ``n_train / 4`` clamped to [16, 64]: at least three optimiser steps per epoch on small problems."""
    if spec == "auto":
        return min(n_train, max(16, min(64, 2 ** int(math.log2(max(n_train // 4, 1))))))
    return min(int(spec), n_train)


class Calibrated:
    """The validation loader, preceded on every evaluation by :meth:`StableSDE.calibrate` on the
    training split (the readout's batch-norm statistics for the current weights, "precise BN")."""

    def __init__(self, loader, model, train, seed: int) -> None:
        self.loader, self.model, self.train, self.seed = loader, model, train, seed

    def __iter__(self):
        self.model.calibrate(self.train, generator=torch.Generator().manual_seed(self.seed))
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def max_epochs(p: Mapping[str, Any], dataset: str | None) -> int:
    """The epoch budget of ``dataset`` under the parameters ``p`` (``epochs_by_dataset`` overrides)."""
    return int(p.get("epochs_by_dataset", {}).get(dataset, p["epochs"]))


def run_one(splits, kind: str, seed: int, p: Mapping[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """Train one model on one split; return test accuracy and failure bookkeeping."""
    from sciflow.training import seed_everything

    seed_everything(seed)
    model = StableSDE(Config(kind=kind, input_channels=splits.n_channels, hidden_dim=p["hidden_dim"],
                             n_classes=splits.n_classes, readout_norm=p.get("readout_norm", "batch")))
    bs = batch_size(p["batch_size"], len(splits.train))
    per_epoch = max(1, len(splits.train) // bs)
    cfg = TrainConfig(max_steps=max_epochs(p, dataset) * per_epoch, lr=p["lr"], eval_every=per_epoch, log_every=0,
                      checkpoint_every=0, progress=False, device="cpu", seed=seed, max_nonfinite=5)
    best = BestValidation(p["patience"])
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"model": kind, "seed": seed, "max_epochs": max_epochs(p, dataset), "batch_size": bs}
    try:
        res = fit(model, BatchLoader(splits.train, bs, seed=seed),
                  Calibrated(BatchLoader(splits.val, 1024, shuffle=False), model, splits.train, seed),
                  cfg, callbacks=[best])
        out.update(steps=res.steps, skipped_steps=res.skipped_steps, stop_reason=res.stop_reason)
    except (NonFiniteLossError, RuntimeError, ValueError) as e:  # diverged
        out.update(failed=True, error=f"{type(e).__name__}: {str(e)[:200]}", skipped_steps=-1)
    out["train_s"] = time.perf_counter() - t0
    out["train_cpu_s"] = time.process_time() - c0  # process CPU time (one torch thread)
    out["epochs_run"] = best.epochs
    out["best_epoch"] = best.best_epoch  # the epoch whose weights are scored (1-based; 0: none)
    if best.state is None:
        out.update(failed=True, test_accuracy=float("nan"), val_accuracy=float("nan"))
        return out
    model.load_state_dict(best.state)
    model.eval()
    logits = model.predict(splits.test, generator=torch.Generator().manual_seed(seed))
    finite = bool(torch.isfinite(logits).all())
    out["test_accuracy"] = float((logits.argmax(-1) == splits.test.labels).float().mean()) if finite else float("nan")
    out["val_accuracy"] = best.best[0]
    out["failed"] = bool(out.get("failed", False) or not finite or out.get("skipped_steps", 0) != 0)
    return out


def speed_check(hidden_dim: int, seed: int = 0, repeats: int = 5) -> dict[str, Any]:
    """One LNSDE training epoch on BasicMotions at 50 % missing: sciflow vs torchsde backend.

    The two backends alternate epoch by epoch (after one warm-up epoch each), so a shared,
    fluctuating machine load affects both alike; medians over ``repeats``."""
    splits = classification_splits(load_uea("BasicMotions"), missing_rate=0.5, seed=seed)
    out: dict[str, Any] = {"dataset": "BasicMotions", "missing_rate": 0.5, "model": "lnsde", "batch_size": 16,
                           "n_train": len(splits.train), "hidden_dim": hidden_dim, "repeats": repeats}
    batches = [splits.train.index(slice(i, i + 16)) for i in range(0, len(splits.train), 16)]
    epochs = {}
    for backend in ("sciflow", "torchsde"):
        torch.manual_seed(seed)
        model = StableSDE(Config(kind="lnsde", input_channels=splits.n_channels, hidden_dim=hidden_dim,
                                 n_classes=splits.n_classes, solver_backend=backend))
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def epoch(model=model, opt=opt) -> None:
            for b in batches:
                opt.zero_grad()
                model.loss(b).total.backward()
                opt.step()
        epoch()  # warm-up
        epochs[backend] = epoch
    times: dict[str, list[float]] = {"sciflow": [], "torchsde": []}
    for _ in range(repeats):
        for backend, epoch in epochs.items():
            times[backend].append(time_it(epoch, repeats=1, warmup=0)["median_s"])
    for backend, ts in times.items():
        out[backend] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "all_s": ts}
    out["ratio_torchsde_over_sciflow"] = out["torchsde"]["median_s"] / out["sciflow"]["median_s"]
    out["ratio_of_minima"] = out["torchsde"]["min_s"] / out["sciflow"]["min_s"]
    return out


def _fmt(xs: list[float]) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return "—"
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def summarise(runs: list[dict[str, Any]], datasets, models, rates) -> tuple[dict, str]:
    datasets = [d for d in datasets if any(x["dataset"] == d for x in runs)]
    table: dict[str, Any] = {}
    lines = ["| dataset | model | seeds | " + " | ".join(f"{int(100 * r)} % missing" for r in rates)
             + " | drop 0→70 % | failures |", "|---|---|---|" + "---|" * (len(rates) + 2)]
    for d in datasets:
        for m in models:
            if not any(x["dataset"] == d and x["model"] == m for x in runs):
                continue
            cell = {}
            row = []
            fails = 0
            for r in rates:
                rs = [x for x in runs if x["dataset"] == d and x["model"] == m and x["missing_rate"] == r]
                accs = [x["test_accuracy"] for x in rs]
                fails += sum(bool(x["failed"]) for x in rs)
                fin = [a for a in accs if math.isfinite(a)]
                cell[str(r)] = {"mean": statistics.mean(fin) if fin else None,
                                "std": statistics.stdev(fin) if len(fin) > 1 else 0.0,
                                "n": len(rs), "failures": sum(bool(x["failed"]) for x in rs), "accuracies": accs}
                row.append(_fmt(accs))
            a0, a1 = cell[str(rates[0])]["mean"], cell[str(rates[-1])]["mean"]
            drop = None if a0 is None or a1 is None else a0 - a1
            cell["drop_first_to_last"] = drop
            cell["failures"] = fails
            table.setdefault(d, {})[m] = cell
            ns = sorted({c["n"] for k, c in cell.items() if isinstance(c, dict)})
            lines.append(f"| {d} | {LABELS.get(m, m)} | {'/'.join(map(str, ns))} | " + " | ".join(row)
                         + f" | {'—' if drop is None else f'{100 * drop:.1f}'} | {fails} |")
    return table, "\n".join(lines) + "\n\n" + degradation(table, datasets, models, runs)


def degradation(table, datasets, models, runs) -> str:
    """Graceful-degradation summary: per dataset, the accuracy drop from the first to the last
    missing rate of each model (points, smaller is more graceful) next to the neural CDE's, and
    the failure count per model over all runs."""
    out = ["Accuracy drop (points) from the lowest to the highest missing rate, per dataset "
           "(smaller = more graceful; ✓ = smaller drop than the neural CDE):", ""]
    for d in datasets:
        cde = table[d].get("neural_cde", {}).get("drop_first_to_last")
        parts = []
        for m in models:
            if m not in table[d]:
                continue
            drop = table[d][m]["drop_first_to_last"]
            if drop is None:
                parts.append(f"{LABELS.get(m, m)} —")
                continue
            # strictly smaller beyond float32 rounding of the accuracies (5.6 vs 5.6 is a tie)
            mark = " ✓" if m != "neural_cde" and cde is not None and drop < cde - 1e-6 else ""
            parts.append(f"{LABELS.get(m, m)} {100 * drop:.1f}{mark}")
        out.append(f"* {d}: " + ", ".join(parts))
    fails = {m: sum(bool(x["failed"]) for x in runs if x["model"] == m) for m in models}
    n = {m: sum(1 for x in runs if x["model"] == m) for m in models}
    out += ["", "Failures (non-finite loss step or logits) / runs: "
            + ", ".join(f"{LABELS.get(m, m)} {fails[m]}/{n[m]}" for m in models if n[m]) + "."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="default")
    ap.add_argument("--datasets", nargs="+")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--rates", nargs="+", type=float, default=RATES)
    ap.add_argument("--seeds", type=int, help="number of seeds (0..n-1)")
    ap.add_argument("--seed-list", type=int, nargs="+", help="run exactly these seeds (e.g. one per process)")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="combine the runs of result files (e.g. one per seed) into <name>.json/.md")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--readout-norm", choices=["batch", "none"], default="batch",
                    help="classification readout with (default) or without batch normalisation")
    ap.add_argument("--no-speed", action="store_true", help="skip the sciflow-vs-torchsde epoch timing")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the sciflow-vs-torchsde epoch timing (writes <name>_speed.json)")
    ap.add_argument("--name", default="stable_sde_uea", help="result file stem")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.speed_only:
        speed = speed_check(SCALES[args.scale]["hidden_dim"])
        write_result(f"{args.name}_speed", {"speed_epoch": speed})
        return 0
    p = dict(SCALES[args.scale])
    if args.datasets:
        p["datasets"] = args.datasets
    if args.seeds:
        p["seeds"] = list(range(args.seeds))
    if args.seed_list:
        p["seeds"] = list(args.seed_list)
    if args.epochs:
        p["epochs"] = args.epochs
        p.pop("epochs_by_dataset", None)
    p["readout_norm"] = args.readout_norm
    t_start = time.perf_counter()
    if args.merge:
        return _merge(args, p, t_start)
    runs: list[dict[str, Any]] = []
    data = {d: load_uea(d) for d in p["datasets"]}
    speed = None
    # seed-major order: after each seed the table is complete (with fewer seeds), and it is
    # rewritten after every dataset, so an interrupted run still leaves a consistent result
    for s in p["seeds"]:
        for d in p["datasets"]:
            for r in args.rates:
                splits = classification_splits(data[d], missing_rate=r, seed=s)  # shared by all models
                for m in args.models:
                    res = run_one(splits, m, s, p, d)
                    res.update(dataset=d, missing_rate=r, n_train=len(splits.train), n_test=len(splits.test))
                    runs.append(res)
                    print(f"{d:16s} r={r:.1f} seed={s} {m:11s} acc={res['test_accuracy']:.3f} "
                          f"epochs={res['epochs_run']} failed={res['failed']} {res['train_s']:.1f}s", flush=True)
            _write(args, p, runs, speed, t_start, complete=False)
    if not args.no_speed:
        speed = speed_check(p["hidden_dim"])
    _write(args, p, runs, speed, t_start, complete=True)
    return 0


def _merge(args, p, t_start) -> int:
    """One table from several result files of the same scale (first occurrence of a run wins)."""
    import json

    runs, seen, speed = [], set(), None
    for f in args.merge:
        doc = json.loads(Path(f).read_text())
        if "runs" not in doc:  # a --speed-only result
            speed = speed or doc.get("speed_epoch")
            continue
        if doc.get("scale") != args.scale:
            raise SystemExit(f"{f}: scale {doc.get('scale')!r} differs from --scale {args.scale}; refusing to merge")
        speed = speed or doc.get("speed_epoch")
        for r in doc["runs"]:
            ran = r.get("max_epochs", max_epochs(doc["params"], r["dataset"]))
            if ran != max_epochs(p, r["dataset"]):
                raise SystemExit(f"{f}: {r['dataset']} ran with {ran} epochs, --scale {args.scale} has "
                                 f"{max_epochs(p, r['dataset'])}; refusing to merge")
            key = (r["dataset"], r["missing_rate"], r["seed"], r["model"])
            if key not in seen:
                seen.add(key)
                runs.append(r)
    p["seeds"] = sorted({r["seed"] for r in runs})
    _write(args, p, runs, speed, t_start, complete=_complete(runs, args.rates))
    return 0


def _complete(runs: list[dict[str, Any]], rates) -> bool:
    """Every model of a dataset has every missing rate, each with the same seeds (a model may
    have fewer seeds than another, e.g. the naive SDE; a dataset may have fewer than another)."""
    cells: dict[tuple, set] = {}
    for r in runs:
        cells.setdefault((r["dataset"], r["model"], r["missing_rate"]), set()).add(r["seed"])
    for d, m in {(d, m) for d, m, _ in cells}:
        if len({frozenset(cells.get((d, m, rate), ())) for rate in rates}) != 1:
            return False
    return bool(runs)


def _scale_lines(runs: list[dict[str, Any]], p: Mapping[str, Any], datasets) -> list[str]:
    """Per dataset: seeds, epoch budget, batch, optimiser steps, epochs run, process CPU time."""
    out = []
    for d in datasets:
        rs = [x for x in runs if x["dataset"] == d]
        if not rs:
            continue
        ep = max(x.get("max_epochs", max_epochs(p, d)) for x in rs)
        bs = max(x.get("batch_size", batch_size(p["batch_size"], x["n_train"])) for x in rs)
        steps = ep * max(1, rs[0]["n_train"] // bs)
        seeds = sorted({x["seed"] for x in rs})
        run_ep = statistics.median(x["epochs_run"] for x in rs)
        best = [x["best_epoch"] for x in rs if "best_epoch" in x]
        cpu = sum(x.get("train_cpu_s", math.nan) for x in rs)
        out.append(f"* {d}: seeds {seeds}, ≤ {ep} epochs (batch {bs}, n_train {rs[0]['n_train']}: ≤ {steps} "
                   f"optimiser steps), median epochs run {run_ep:g}"
                   + (f", median epoch of the restored weights {statistics.median(best):g}" if best else "")
                   + (f", {cpu / 60:.1f} CPU-min for {len(rs)} runs" if math.isfinite(cpu) else "") + ".")
    return out


def _write(args, p, runs, speed, t_start, *, complete: bool) -> None:
    seeds_done = sorted({x["seed"] for x in runs})
    table, md = summarise(runs, p["datasets"], args.models, args.rates)
    payload = {
        "scale": args.scale, "complete": complete, "seeds_done": seeds_done,
        "params": {**p, "models": args.models, "rates": args.rates},
        "protocol": "TRAIN+TEST combined; values removed per channel; 70/15/15 stratified split; "
                    "normalised by observed training statistics; best validation accuracy restored",
        "table": table, "runs": runs, "speed_epoch": speed, "total_wall_s": time.perf_counter() - t_start,
        "train_cpu_s_total": sum(x.get("train_cpu_s", 0.0) for x in runs),
    }
    write_result(args.name, payload)
    header = (f"# Stable neural SDEs on UEA/UCR with missing values ({args.scale} scale)\n\n"
              + ("" if complete else f"**Partial result** (seeds finished or running: {seeds_done}).\n\n")
              + "Test accuracy (%) mean ± std over the seeds of each row (`seeds`: runs per cell); "
              f"early stopping: patience {p['patience']} epochs on validation accuracy (ties: lower loss), "
              f"the best weights restored; hidden {p['hidden_dim']}, Adam lr {p['lr']}, batch {p['batch_size']} "
              "(auto: a power of two ≈ n_train / 4 in [16, 64]); readout with batch normalisation, "
              "statistics recalibrated on the training split before every evaluation. "
              "`failures`: runs with a non-finite loss step or non-finite test logits. "
              f"Command: `python benchmarks/stable_sde_uea.py --scale {args.scale}`"
              + (" (here run as one process per dataset and seed with `--datasets D --seed-list S --name D_sS`, "
                 "then combined with `--merge`)" if args.merge else "")
              + ".\n\n" + "\n".join(_scale_lines(runs, p, p["datasets"])) + "\n\n")
    extra = ""
    if speed is not None:
        extra = (f"\n\nOne LNSDE training epoch, BasicMotions at 50 % missing (batch 16, CPU, one thread): "
                 f"sciflow {speed['sciflow']['median_s']:.2f} s, torchsde {speed['torchsde']['median_s']:.2f} s "
                 f"(ratio torchsde / sciflow = {speed['ratio_torchsde_over_sciflow']:.2f}).\n")
    (RESULTS / f"{args.name}.md").write_text(header + md + extra + "\n")
    print(md + extra)


if __name__ == "__main__":
    raise SystemExit(main())
