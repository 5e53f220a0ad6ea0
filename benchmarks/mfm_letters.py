"""Meta flow matching vs FM vs CGFM on held-out Letters populations (Atanackovic et al. 2025,
Sec. 5.1 / Table 1, CPU-sized), bracketed by identity (no transport) and an oracle (a second
independent sample of each true target letter).

    python benchmarks/mfm_letters.py            # defaults of sciflow/configs/mfm_letters.yaml
    python benchmarks/mfm_letters.py --scale 4 --seeds 0 1 --name mfm_letters_scale4
                                                # 4x training steps, 2x field width, two seeds
    python benchmarks/mfm_letters.py --smoke    # seconds: tiny populations, for the suite

Writes benchmarks/results/<name>.json (name: ``--name``, default mfm_letters; test metrics
mean +- std over seeds, fraction of the identity -> oracle gap closed, a train-probe for
contrast, validation histories, embedding diagnostics) and benchmarks/results/figures/<name>.png
(source / MFM / FM / CGFM / true for one population of each test letter). Validation letters
select the state; the test letters (disjoint) are evaluated once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from _mfm import cli, run_comparison, scaled_config  # noqa: E402

from sciflow.config import from_dict  # noqa: E402
from sciflow.data.population_splits import LettersSplits  # noqa: E402


def main() -> None:
    ap = cli(__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c0 = time.process_time()

    data, tcfg, model = scaled_config("mfm_letters.yaml", args.scale)
    if args.smoke:
        data.update(n_points=64, n_eval_points=64, val_points=64, val_rotations=1, test_rotations=1, n_rotations=2,
                    seen_letters=1, seen_rotations=1)
        tcfg.update(points_per_population=32)
    seeds = args.seeds if args.seeds is not None else list(tcfg["seeds"])
    recipe = from_dict(LettersSplits, data, prefix="data")
    splits = {name: recipe.split(name) for name in ("train", "val", "test")}
    oracle = recipe.split("test", draw=1).target
    rows = [i * data["test_rotations"] for i in range(len(data["test_letters"]))]
    # diagnostic split: letters seen in training at rotations never seen (generalisation across
    # rotations of known shapes vs across shapes)
    seen = (recipe.split("seen"), recipe.split("seen", draw=1).target)
    res = run_comparison(args.name or "mfm_letters", splits, oracle, model, tcfg, recipe.num_populations, seeds,
                         plot_lim=4.0, plot_rows=rows, row_labels=list(data["test_letters"]),
                         extra={"seen_letters_new_rotations": seen})
    res["script_cpu_s"] = time.process_time() - c0
    write_result(args.name or "mfm_letters", {"config": {"data": data, "train": tcfg, "model": model, "seeds": seeds,
                                            "scale": args.scale, "smoke": args.smoke},
                                 "results": res})


if __name__ == "__main__":
    main()
