"""Meta flow matching vs FM vs CGFM on an interacting-particle system: predict where an unseen
initial population of aggregating/repelling particles is after a fixed time, bracketed by
identity (no transport) and an oracle (an independent draw of the same initial mixture, evolved).

    python benchmarks/mfm_aggregation.py            # defaults of sciflow/configs/mfm_aggregation.yaml
    python benchmarks/mfm_aggregation.py --scale 4  # 4x training steps, 2x field width
    python benchmarks/mfm_aggregation.py --smoke    # seconds: tiny populations, for the suite

Writes benchmarks/results/mfm_aggregation.json and benchmarks/results/figures/mfm_aggregation.png.
The particles' velocities depend on the whole population (mean-field interaction), so the map
source -> target differs between populations: a field that ignores the population (FM) can only
learn the average map. A physics reference, "centre-of-mass contraction" (the exact solution of
the attractive part alone, x(1) = m + e^{-1}(x0 - m), which needs the population's mean m), shows
how much of the evolution is the part an embedding has to supply.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from _mfm import cli, gap_closed, mean_metrics, run_comparison, scaled_config  # noqa: E402

from sciflow.config import from_dict  # noqa: E402
from sciflow.data.population_splits import AggregationSplits  # noqa: E402


def main() -> None:
    ap = cli(__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c0 = time.process_time()

    data, tcfg, model = scaled_config("mfm_aggregation.yaml", args.scale)
    if args.smoke:
        data.update(n_points=48, n_eval_points=64, val_points=48, n_train=16, n_val=2, n_test=2, steps=10)
        tcfg.update(points_per_population=32)
    seeds = args.seeds if args.seeds is not None else list(tcfg["seeds"])
    recipe = from_dict(AggregationSplits, data, prefix="data")
    splits = {name: recipe.split(name) for name in recipe.names}
    oracle = recipe.split("test", draw=1).target
    data_cpu_s = time.process_time() - c0
    te = splits["test"]
    rows = list(range(min(3, len(te))))
    res = run_comparison(args.name or "mfm_aggregation", splits, oracle, model, tcfg, recipe.num_populations, seeds,
                         plot_lim=4.0, plot_rows=rows, row_labels=[f"test {i}" for i in rows])
    # physics reference: the attraction-only solution, which needs the population mean
    m = te.source.mean(1, keepdim=True)
    com = mean_metrics(m + math.exp(-data["horizon"]) * (te.source - m), te.target)
    res["centre_of_mass_contraction"] = {"test": com, "test_gap_closed": gap_closed(
        com, res["identity_baseline"]["test"], res["oracle"]["test"])}
    res["data_cpu_s"] = data_cpu_s
    res["script_cpu_s"] = time.process_time() - c0
    write_result(args.name or "mfm_aggregation", {"config": {"data": data, "train": tcfg, "model": model,
                                                "seeds": seeds, "scale": args.scale, "smoke": args.smoke},
                                     "results": res})


if __name__ == "__main__":
    main()
