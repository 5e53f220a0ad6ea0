"""Meta flow matching vs FM vs CGFM on an interacting-particle system: predict where an unseen
initial population of aggregating/repelling particles is after a fixed time.

    python benchmarks/mfm_aggregation.py            # defaults of sciflow/configs/mfm_aggregation.yaml
    python benchmarks/mfm_aggregation.py --scale 4  # 4x training steps, 2x field width

Writes benchmarks/results/mfm_aggregation.json and .png. The particles' velocities depend on the
whole population (mean-field interaction), so the map source -> target differs between
populations: a field that ignores the population (FM) can only learn the average map.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from _mfm import load_yaml, run_comparison  # noqa: E402

from sciflow.data.populations import aggregation_populations  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_yaml("mfm_aggregation.yaml")
    data, tcfg, model = cfg["data"], dict(cfg["train"]), dict(cfg["model"])
    tcfg["steps"] = int(tcfg["steps"] * args.scale)
    tcfg["eval_every"] = max(int(tcfg["eval_every"] * args.scale), 1)
    if args.scale > 1:
        model["field_width"] = int(model["field_width"] * args.scale**0.5)
    seeds = args.seeds if args.seeds is not None else list(tcfg["seeds"])
    sizes = {"train": data["n_train"], "val": data["n_val"], "test": data["n_test"]}
    offsets = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}
    splits = {s: aggregation_populations(s, n_populations=sizes[s], n_points=data["n_points"],
                                         horizon=data["horizon"], softening=data["softening"],
                                         steps=data["steps"], seed=0, id_offset=offsets[s])
              for s in sizes}
    res = run_comparison("mfm_aggregation", splits, model, tcfg, sum(sizes.values()), seeds,
                         plot_lim=4.0)
    write_result("mfm_aggregation", {"config": {"data": data, "train": tcfg, "model": model,
                                                "seeds": seeds, "scale": args.scale},
                                     "results": res})


if __name__ == "__main__":
    main()
