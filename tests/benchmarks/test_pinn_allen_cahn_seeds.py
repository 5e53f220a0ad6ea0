"""Seeds of the Allen–Cahn benchmark are pooled across calls: records already in the output file
for the same recipe and budget are read back (also from a file written before pooling, with one
record and the scale's config at the top level), and the pooled entry is the median seed's record
with the spread over seeds; its figures take the plain names."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import pinn_allen_cahn as bench  # noqa: E402

CFG = bench.SCALES["cpu"]


def _record(seed: int, rel_l2: float, mode: str = "plain", figures: list[Path] | None = None) -> dict:
    """A run's record; ``figures``: a run trained in this call lists its seed-tagged figures."""
    return {**({"figures": [str(f) for f in figures]} if figures is not None else {}),
            "config": asdict(replace(bench.mode_config(CFG, mode), seed=seed)), "seed": seed, "rel_l2": rel_l2,
            "max_abs": 10 * rel_l2, "train_cpu_seconds": 1800.0 + seed, "steps_run": 100 + seed,
            "curve": {"step": [seed]}, "final_terms": {"ic": rel_l2}}


def test_a_file_written_before_pooling_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    old_record = {k: v for k, v in _record(0, 0.3).items() if k not in ("config", "seed")}
    path.write_text(json.dumps({"environment": {"git_sha": "abc"}, "config": asdict(CFG),  # the scale's, causal on
                                "budget_cpu_minutes": 30.0, "plain": old_record}))
    runs, shown = bench.earlier_runs(path, "plain", bench.mode_config(CFG, "plain"), 30.0)
    assert [(r["seed"], r["rel_l2"], r["git_sha"], r["config"]["causal"]) for r in runs] == [(0, 0.3, "abc", False)]
    assert shown == 0
    assert bench.earlier_runs(path, "plain", bench.mode_config(CFG, "plain"), 10.0) == ([], None)  # other budget
    assert bench.earlier_runs(path, "plain", replace(bench.mode_config(CFG, "plain"), lr=2e-3), 30.0) == ([], None)
    assert bench.earlier_runs(path, "causal", bench.mode_config(CFG, "causal"), 30.0) == ([], None)  # no such entry
    assert bench.earlier_runs(tmp_path / "missing.json", "plain", CFG, 30.0) == ([], None)


def test_the_median_seed_is_reported_with_the_spread(tmp_path: Path) -> None:
    figs = tmp_path / "figures"
    figs.mkdir()
    new = {}
    for seed in (1, 2):
        new[seed] = figs / f"pinn_allen_cahn_cpu_plain_seed{seed}_solution.png"
        new[seed].write_text(f"seed {seed}")
    entry = bench.pool_seeds([_record(1, 0.1, figures=[new[1]]), _record(0, 0.3), _record(2, 0.2, figures=[new[2]])],
                             shown=0)
    assert (entry["seed"], entry["median_seed"], entry["figures_seed"], entry["seeds"]) == (2, 2, 2, [0, 1, 2])
    assert (entry["rel_l2"], entry["rel_l2_min"], entry["rel_l2_max"]) == (0.2, 0.1, 0.3)
    assert entry["steps_run"] == 101 and entry["curve"] == {"step": [2]}
    assert [r["seed"] for r in entry["runs"]] == [0, 1, 2] and "final_terms" not in entry["runs"][0]
    assert [p.name for p in figs.iterdir()] == ["pinn_allen_cahn_cpu_plain_solution.png"]
    assert (figs / "pinn_allen_cahn_cpu_plain_solution.png").read_text() == "seed 2"
    # an earlier seed as the median: its figures (already under the plain names) stay
    seed5 = figs / "pinn_allen_cahn_cpu_plain_seed5_solution.png"
    seed5.write_text("seed 5")
    entry = bench.pool_seeds([_record(0, 0.2), _record(5, 0.4, figures=[seed5]), _record(2, 0.3)], shown=2)
    assert (entry["median_seed"], entry["figures_seed"]) == (2, 2)
    assert (figs / "pinn_allen_cahn_cpu_plain_solution.png").read_text() == "seed 2"  # left as it was
    assert not (figs / "pinn_allen_cahn_cpu_plain_seed5_solution.png").exists()
    one = bench.pool_seeds([_record(3, 0.4)])
    assert one["rel_l2"] == 0.4 and "runs" not in one and "rel_l2_max" not in one
