"""Meta flow matching vs FM vs CGFM on held-out Letters populations (Atanackovic et al. 2025,
Sec. 5.1 / Table 1, CPU-sized).

    python benchmarks/mfm_letters.py            # defaults of sciflow/configs/mfm_letters.yaml
    python benchmarks/mfm_letters.py --scale 4  # 4x training steps, 2x field width

Writes benchmarks/results/mfm_letters.json (test metrics mean +- std over seeds, a train-probe
for contrast, validation histories) and benchmarks/results/mfm_letters.png (source / MFM / FM /
CGFM / true for held-out populations). The test letter is never used for model selection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from _mfm import load_yaml, run_comparison  # noqa: E402

from sciflow.data.populations import letters, num_letter_populations  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies training steps; "
                    "scale > 1 also widens the field by sqrt(scale)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_yaml("mfm_letters.yaml")
    data, tcfg, model = cfg["data"], dict(cfg["train"]), dict(cfg["model"])
    tcfg["steps"] = int(tcfg["steps"] * args.scale)
    tcfg["eval_every"] = max(int(tcfg["eval_every"] * args.scale), 1)
    if args.scale > 1:
        model["field_width"] = int(model["field_width"] * args.scale**0.5)
    seeds = args.seeds if args.seeds is not None else list(tcfg["seeds"])
    kw = dict(n_points=data["n_points"], n_rotations=data["n_rotations"],
              noise_scale=data["noise_scale"], source_noise_scale=data["source_noise_scale"],
              val_letters=tuple(data["val_letters"]), test_letters=tuple(data["test_letters"]), seed=0)
    splits = {s: letters(s, **kw) for s in ("train", "val", "test")}
    res = run_comparison("mfm_letters", splits, model, tcfg, num_letter_populations(data["n_rotations"]),
                         seeds, plot_lim=4.0)
    write_result("mfm_letters", {"config": {"data": data, "train": tcfg, "model": model, "seeds": seeds,
                                            "scale": args.scale},
                                 "results": res})


if __name__ == "__main__":
    main()
