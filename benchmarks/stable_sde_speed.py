"""Stable neural SDE training speed: sciflow's SDE solver vs the same model through ``torchsde.sdeint``.

One training epoch (forward, backward, Adam step over every mini-batch of the training split) of
LSDE, LNSDE and GSDE on BasicMotions with 50 % of the values removed per channel (the paper's
protocol, ``sciflow.data.timeseries``; if the bundled data cannot be found, a synthetic batch of
the same shape, 80 × 100 × 6, is used and the JSON says so). The two backends run the *same*
model (same initial weights, same control path, same union time grid of one Euler–Maruyama step
per observation gap); the torchsde run is the official code's path (``torchsde.sdeint`` with
``dt`` = the smallest gap). Timings are medians over ``--repeats`` epochs after a warm-up epoch,
interleaved in one run; the ratio ``torchsde / sciflow`` is what to read (> 1: sciflow faster).
Process CPU times are recorded too: on a shared machine they are less disturbed by other load.

Run: ``python benchmarks/stable_sde_speed.py`` (``--scale 2`` doubles the hidden sizes,
``--device cuda``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synchronize, write_result  # noqa: E402

from sciflow.data.batches import IrregularBatch  # noqa: E402
from sciflow.models.stable_sde import Config, StableSDE  # noqa: E402


def basic_motions(missing_rate: float, seed: int) -> tuple[IrregularBatch, str]:
    try:
        from sciflow.data.timeseries import classification_splits, load_uea
        splits = classification_splits(load_uea("BasicMotions"), missing_rate=missing_rate, seed=seed)
        return splits.train, "BasicMotions (bundled, 70 % training split)"
    except Exception as e:  # noqa: BLE001 - fall back to a synthetic batch of identical shape
        print(f"BasicMotions not available ({e}); using a synthetic 80x100x6 batch", file=sys.stderr)
    g = torch.Generator().manual_seed(seed)
    N, T, C = 80, 100, 6
    t = torch.linspace(0, 1, T).expand(N, T).contiguous()
    m = torch.rand(N, T, C, generator=g) >= missing_rate
    v = torch.where(m, torch.randn(N, T, C, generator=g), torch.zeros(()))
    return IrregularBatch(v, t, m, labels=torch.randint(0, 4, (N,), generator=g)), "synthetic 80x100x6"


def epoch(model: StableSDE, opt: torch.optim.Optimizer, batches: list[IrregularBatch], seed: int) -> float:
    gen = torch.Generator(device=batches[0].values.device).manual_seed(seed)
    total = 0.0
    for b in batches:
        out = model(b, generator=gen)[0]
        loss = torch.nn.functional.cross_entropy(out, b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach())
    return total / len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--missing-rate", type=float, default=0.5)
    ap.add_argument("--kinds", default="lsde,lnsde,gsde")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="stable_sde_speed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train, source = basic_motions(args.missing_rate, seed=0)
    train = train.to(device)
    n_classes = int(train.labels.max()) + 1
    batches = [train.index(slice(i, i + args.batch_size)) for i in range(0, len(train), args.batch_size)]
    results = {}
    for kind in args.kinds.split(","):
        runs = {}
        for backend in ("sciflow", "torchsde"):
            cfg = Config(kind=kind, input_channels=train.values.shape[-1], hidden_dim=16 * args.scale,
                         hidden_hidden_dim=32 * args.scale, n_classes=n_classes, solver_backend=backend,
                         time_grid="union", dropout=0.0)
            torch.manual_seed(0)  # benchmark script: the same initial weights for both backends
            model = StableSDE(cfg).to(device)
            runs[backend] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), [], [])
        for backend, (model, opt, _, _) in runs.items():   # warm-up epoch each
            epoch(model, opt, batches, seed=0)
        for r in range(args.repeats):                       # interleaved: load drifts hit both alike
            for backend, (model, opt, times, cpu) in runs.items():
                synchronize(device)
                t0, c0 = time.perf_counter(), time.process_time()
                epoch(model, opt, batches, seed=r + 1)
                synchronize(device)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        med = {b: statistics.median(ts) for b, (_, _, ts, _) in runs.items()}
        cmed = {b: statistics.median(cs) for b, (_, _, _, cs) in runs.items()}
        results[kind] = {
            "sciflow_epoch_s": {"median": med["sciflow"], "all": runs["sciflow"][2]},
            "torchsde_epoch_s": {"median": med["torchsde"], "all": runs["torchsde"][2]},
            "ratio_torchsde_over_sciflow": med["torchsde"] / med["sciflow"],
            # process CPU time: less sensitive to other processes on a shared machine (CPU runs)
            "sciflow_epoch_cpu_s": {"median": cmed["sciflow"], "all": runs["sciflow"][3]},
            "torchsde_epoch_cpu_s": {"median": cmed["torchsde"], "all": runs["torchsde"][3]},
            "cpu_ratio_torchsde_over_sciflow": cmed["torchsde"] / cmed["sciflow"],
        }
        print(f"{kind}: wall sciflow {med['sciflow']:.3f}s torchsde {med['torchsde']:.3f}s "
              f"ratio {med['torchsde'] / med['sciflow']:.2f} | cpu sciflow {cmed['sciflow']:.3f}s "
              f"torchsde {cmed['torchsde']:.3f}s ratio {cmed['torchsde'] / cmed['sciflow']:.2f}", file=sys.stderr)
    write_result(args.name, {
        "what": "one training epoch (forward+backward+Adam) of the stable neural SDEs, "
                "sciflow sdeint vs torchsde.sdeint",
        "data": source, "missing_rate": args.missing_rate, "n_train": len(train), "batch_size": args.batch_size,
        "shape": list(train.values.shape), "n_batches": len(batches), "method": "euler (Euler-Maruyama)",
        "time_grid": "union of observation times (one step per gap)", "scale": args.scale,
        "hidden_dim": 16 * args.scale, "hidden_hidden_dim": 32 * args.scale, "threads": args.threads,
        "repeats": args.repeats, "results": results,
    }, device=device)


if __name__ == "__main__":
    main()
