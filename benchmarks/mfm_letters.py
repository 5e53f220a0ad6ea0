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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from _mfm import cli, run_comparison, scaled_config  # noqa: E402

from sciflow.data.batches import PopulationBatch  # noqa: E402
from sciflow.data.populations import letter_population, letter_split, letters, num_letter_populations  # noqa: E402


def new_rotations(chars: tuple[str, ...], rotations: range, n: int, data: dict) -> tuple[PopulationBatch, torch.Tensor]:
    """Unseen rotations (indices past the training ones) of given letters, and their oracle draws."""
    kw = dict(n_points=n, noise_scale=data["noise_scale"], source_noise_scale=data["source_noise_scale"], seed=0)
    pops = [letter_population(c, r, **kw) for c in chars for r in rotations]
    orc = [letter_population(c, r, draw=1, **kw)[1] for c in chars for r in rotations]
    as_t = lambda xs: torch.as_tensor(np.stack(xs), dtype=torch.float32)  # noqa: E731
    return (PopulationBatch(source=as_t([p[0] for p in pops]), target=as_t([p[1] for p in pops])), as_t(orc))


def main() -> None:
    ap = cli(__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c0 = time.process_time()

    data, tcfg, model = scaled_config("mfm_letters.yaml", args.scale)
    if args.smoke:
        data.update(n_points=64, n_eval_points=64, val_rotations=1, test_rotations=1, n_rotations=2,
                    seen_letters=1, seen_rotations=1)
        tcfg.update(points_per_population=32)
    seeds = args.seeds if args.seeds is not None else list(tcfg["seeds"])
    kw = dict(n_rotations=data["n_rotations"], noise_scale=data["noise_scale"],
              source_noise_scale=data["source_noise_scale"], val_letters=tuple(data["val_letters"]),
              test_letters=tuple(data["test_letters"]), seed=0)

    def held_out(split: str, rotations: int, n: int, draw: int = 0):
        b = letters(split, n_points=n, draw=draw, **kw)
        keep = [i for i in range(len(b)) if i % data["n_rotations"] < rotations]
        return b.index(torch.as_tensor(keep))

    te = held_out("test", data["test_rotations"], data["n_eval_points"])
    splits = {"train": letters("train", n_points=data["n_points"], **kw),
              "val": held_out("val", data["val_rotations"], data["val_points"] if not args.smoke else 64),
              "test": te}
    oracle = held_out("test", data["test_rotations"], data["n_eval_points"], draw=1).target
    rows = [i * data["test_rotations"] for i in range(len(data["test_letters"]))]
    # diagnostic split: letters seen in training at rotations never seen (generalisation across
    # rotations of known shapes vs across shapes)
    train_chars = letter_split(tuple(data["val_letters"]), tuple(data["test_letters"]))["train"]
    seen = new_rotations(train_chars[::max(1, len(train_chars) // data["seen_letters"])][:data["seen_letters"]],
                         range(data["n_rotations"], data["n_rotations"] + data["seen_rotations"]),
                         data["n_eval_points"], data)
    res = run_comparison(args.name or "mfm_letters", splits, oracle, model, tcfg,
                         num_letter_populations(data["n_rotations"]),
                         seeds, plot_lim=4.0, plot_rows=rows, row_labels=list(data["test_letters"]),
                         extra={"seen_letters_new_rotations": seen})
    res["script_cpu_s"] = time.process_time() - c0
    write_result(args.name or "mfm_letters", {"config": {"data": data, "train": tcfg, "model": model, "seeds": seeds,
                                            "scale": args.scale, "smoke": args.smoke},
                                 "results": res})


if __name__ == "__main__":
    main()
