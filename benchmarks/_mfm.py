"""Shared plumbing of the meta-flow-matching benchmarks: configs, the library's training loop
(:func:`sciflow.models.meta_flow_matching.train`) selecting on validation W2, the comparison of
MFM / FM / CGFM, side-by-side plots.

Model selection uses the validation split only; the test split is evaluated once, with the
selected state. Metrics per held-out population, then averaged over populations; seeds are
reported as mean +- std. Two references bracket every number: *identity* (the source
population, no transport) and *oracle* (an independent second sample of the true target
population, same size: the finite-sample floor of the metric). Each method is also reported as
the fraction of the identity -> oracle gap it closes, ``(identity - method) / (identity - oracle)``
(1 = as close as a fresh sample of the truth; 0 = no better than not moving; > 1 is possible
where the target is a deterministic function of the source, as in the particle system).
Budgets are process CPU seconds (``time.process_time``, one torch thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from sciflow.data.batches import PopulationBatch
from sciflow.models.meta_flow_matching import (Config, MetaFlowMatching, TrainConfig, init_model, predict,
                                               subsample)
from sciflow.models.meta_flow_matching import train as fit
from sciflow.models.meta_flow_matching.config import METHOD_NAMES
from sciflow.models.meta_flow_matching.plots import plot_side_by_side
from sciflow.uq.distances import mean_population_metrics as mean_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "sciflow" / "configs"
METHODS = {name: conditioning for conditioning, name in METHOD_NAMES.items()}  # MFM, FM, CGFM
METRICS = ("W1", "W2", "MMD", "energy")


def load_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text())


def cli(description: str) -> argparse.ArgumentParser:
    """The options every MFM benchmark takes (a script adds its own before parsing)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies training steps; "
                    "scale > 1 also widens the field by sqrt(scale)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny populations and splits (suite smoke test)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default=None, help="result/figure name (default: the benchmark's own), "
                    "so that a run at another scale does not overwrite the default result")
    return ap


def scaled_config(name: str, scale: float) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(data, train, model)`` sections of ``configs/<name>``, training steps (and evaluation
    interval) times ``scale``, the field widened by ``sqrt(scale)`` when ``scale > 1``."""
    cfg = load_yaml(name)
    data, tcfg, model = dict(cfg["data"]), dict(cfg["train"]), dict(cfg["model"])
    tcfg["steps"] = max(int(tcfg["steps"] * scale), 1)
    tcfg["eval_every"] = max(int(tcfg["eval_every"] * scale), 1)
    if scale > 1:
        model["field_width"] = int(model["field_width"] * scale**0.5)
    return data, tcfg, model


def model_config(section: dict[str, Any], conditioning: str, num_populations: int) -> Config:
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = set(section) - fields
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}")
    return Config(**section, conditioning=conditioning,
                  num_populations=num_populations if conditioning == "population_id" else 0)


def train(cfg: Config, train_set: PopulationBatch, val_set: PopulationBatch, tcfg: dict[str, Any],
          seed: int, log=print) -> tuple[MetaFlowMatching, dict[str, Any]]:
    """:func:`sciflow.models.meta_flow_matching.train` of a model initialised from ``seed``, the
    loop seeded with ``seed`` too, selecting on the mean validation W2 (``tcfg["selection"]``)."""
    tc = TrainConfig(**{k: v for k, v in tcfg.items() if k != "seeds"}, seed=seed)
    model = init_model(cfg, seed)
    res = fit(model, train_set, tc, log=log,
              validate=lambda m: mean_metrics(predict(m, val_set), val_set.target)["W2"])
    return model, {"history": res.history, "best_val_W2": res.best_val, "best_step": res.best_step,
                   "selection": res.selection, "train_wall_s": res.train_wall_s, "train_cpu_s": res.train_cpu_s}


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def gap_closed(method: dict[str, float], identity: dict[str, float],
               oracle: dict[str, float]) -> dict[str, float]:
    """``(identity - method) / (identity - oracle)`` per metric (1 = oracle, 0 = identity)."""
    return {k: (identity[k] - method[k]) / (identity[k] - oracle[k]) for k in METRICS}


@torch.no_grad()
def embedding_diagnostics(model: MetaFlowMatching, train_set: PopulationBatch,
                          test: PopulationBatch) -> dict[str, float]:
    """Is the population embedding informative? Mean pairwise cosine between the unit
    embeddings of different populations (-> 1 = collapse: every population looks the same)."""
    def mean_cos(z: torch.Tensor) -> float:
        n = z.shape[0]
        return float(((z @ z.T).sum() - n) / (n * (n - 1)))

    model.eval()
    probe = train_set.index(torch.linspace(0, len(train_set) - 1, min(48, len(train_set))).long())
    return {"train_mean_pairwise_cos": mean_cos(model.condition(probe)),
            "test_mean_pairwise_cos": mean_cos(model.condition(test))}


def run_comparison(name: str, splits: dict[str, PopulationBatch], oracle: torch.Tensor,
                   model_section: dict[str, Any], tcfg: dict[str, Any], num_populations: int,
                   seeds: list[int], plot_lim: float | None, plot_rows: list[int],
                   row_labels: list[str], extra: dict[str, tuple[PopulationBatch, torch.Tensor]] | None = None,
                   log=print) -> dict[str, Any]:
    """Train MFM / FM / CGFM per seed, select on val, report test against identity and oracle.

    ``splits['test']`` holds the evaluation populations at full size; ``oracle`` is an
    independent draw of each test target ``(batch, n, dim)``. The training loop subsamples the
    train populations. A shuffled-embedding ablation (MFM transported with another test
    population's embedding) checks that MFM uses what its embedding encodes. ``extra`` maps a
    name to further ``(populations, oracle targets)`` evaluated for MFM and FM (not CGFM: they
    carry no population ids), e.g. unseen rotations of training letters.
    """
    tr, va, te = splits["train"], splits["val"], splits["test"]
    c0 = time.process_time()
    train_probe = tr.index(torch.linspace(0, len(tr) - 1, min(6, len(tr))).long())
    probe_n = min(te.source.shape[1], tr.source.shape[1])
    train_probe = subsample(train_probe, torch.arange(len(train_probe)), probe_n, torch.Generator().manual_seed(0))
    identity, orc = mean_metrics(te.source, te.target), mean_metrics(oracle, te.target)
    results: dict[str, Any] = {"identity_baseline": {"test": identity}, "oracle": {"test": orc},
                               "n_test_populations": len(te), "n_eval_points": te.source.shape[1]}
    log(f"identity W2 {identity['W2']:.4f}, oracle W2 {orc['W2']:.4f} ({time.process_time() - c0:.0f} cpu-s)")
    extra = extra or {}
    extra_ref = {k: (mean_metrics(b.source, b.target), mean_metrics(o, b.target)) for k, (b, o) in extra.items()}
    for k, (i_, o_) in extra_ref.items():
        results[k] = {"identity": i_, "oracle": o_, "n_populations": len(extra[k][0])}
    plot_preds: dict[str, torch.Tensor] = {}
    perm = torch.roll(torch.arange(len(te)), 1)  # every test population gets another one's embedding
    for method, conditioning in METHODS.items():
        cfg = model_config(model_section, conditioning, num_populations)
        per_seed_test, per_seed_gap, per_seed_train, logs = [], [], [], []
        for seed in seeds:
            model, log_ = train(cfg, tr, va, tcfg, seed, log=log)
            c1 = time.process_time()
            pred_te = predict(model, te)
            log_["test_predict_cpu_s"] = time.process_time() - c1
            m = mean_metrics(pred_te, te.target)
            per_seed_test.append(m)
            per_seed_gap.append(gap_closed(m, identity, orc))
            per_seed_train.append(mean_metrics(predict(model, train_probe), train_probe.target))
            if method != "CGFM":
                for k, (b, _) in extra.items():
                    mk = mean_metrics(predict(model, b), b.target)
                    log_[k] = {"test": mk, "test_gap_closed": gap_closed(mk, *extra_ref[k])}
            if method == "MFM":
                log_["embedding"] = embedding_diagnostics(model, tr, te)
                with torch.no_grad():
                    c = model.condition(te)
                    shuffled = torch.cat([model.transport(te.index(slice(i, i + 16)), condition=c[perm][i:i + 16])[0]
                                          for i in range(0, len(te), 16)])
                log_["shuffled_embedding_test"] = mean_metrics(shuffled, te.target)
            logs.append(log_)
            if seed == seeds[0]:
                plot_preds[method] = pred_te
        results[method] = {"test": summarise(per_seed_test), "test_gap_closed": summarise(per_seed_gap),
                           "train_probe": summarise(per_seed_train), "per_seed_test": per_seed_test,
                           "runs": logs, "config": dataclasses.asdict(cfg)}
        for k in extra if method != "CGFM" else ():
            results[k][method] = {"test": summarise([r[k]["test"] for r in logs]),
                                  "test_gap_closed": summarise([r[k]["test_gap_closed"] for r in logs])}
        if method == "MFM":
            results[method]["shuffled_embedding_test"] = summarise([r["shuffled_embedding_test"] for r in logs])
        log(f"{method}: test W2 {results[method]['test']['W2']['mean']:.4f} "
            f"+- {results[method]['test']['W2']['std']:.4f} (gap closed "
            f"{results[method]['test_gap_closed']['W2']['mean']:.2f}); train-probe W2 "
            f"{results[method]['train_probe']['W2']['mean']:.4f}")
    from _common import RESULTS, shown_path  # the suite's --out folder when run by benchmarks/run.py

    fig = (RESULTS / "figures" / f"{name}.png").resolve()
    rows = torch.as_tensor(plot_rows)
    plot_side_by_side(fig, te.source[rows], {k: v[rows] for k, v in plot_preds.items()}, te.target[rows],
                      rows=len(plot_rows), lim=plot_lim, row_labels=row_labels)
    results["plot"] = shown_path(fig)
    results["total_cpu_s"] = time.process_time() - c0
    return results


def markdown_tables(doc: dict[str, Any]) -> str:
    """The results tables of the docs page, generated from a ``mfm_letters`` / ``mfm_aggregation``
    JSON document: metrics (mean +- std over seeds) and the fraction of the identity -> oracle gap
    closed (no "±" for a one-seed run). ``python benchmarks/_mfm.py benchmarks/results/mfm_letters.json``
    prints them."""
    res = doc["results"]
    one_seed = len(doc.get("config", {}).get("seeds", ())) == 1

    def cell(v: Any, digits: int = 3) -> str:
        if isinstance(v, dict):
            return f"{v['mean']:.{digits}f}" + ("" if one_seed else f" ± {v['std']:.{digits}f}")
        return f"{v:.{digits}f}"

    rows = [("identity (source, no transport)", res["identity_baseline"]["test"], None)]
    if "centre_of_mass_contraction" in res:
        c = res["centre_of_mass_contraction"]
        rows.append(("centre-of-mass contraction (physics reference)", c["test"], c["test_gap_closed"]))
    for method in METHODS:
        rows.append((method, res[method]["test"], res[method]["test_gap_closed"]))
    if "shuffled_embedding_test" in res.get("MFM", {}):
        rows.append(("MFM, another population's embedding", res["MFM"]["shuffled_embedding_test"], None))
    rows.append(("oracle (second sample of the true target)", res["oracle"]["test"], None))
    head = ("| method | W1 | W2 | MMD² (×10³) | energy | W2 gap closed | energy gap closed |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for name, m, gap in rows:
        mmd = ({"mean": 1e3 * m["MMD"]["mean"], "std": 1e3 * m["MMD"]["std"]}
               if isinstance(m["MMD"], dict) else 1e3 * m["MMD"])
        g2 = "—" if gap is None else cell(gap["W2"], 2)
        ge = "—" if gap is None else cell(gap["energy"], 2)
        lines.append(f"| {name} | {cell(m['W1'])} | {cell(m['W2'])} | {cell(mmd, 2)} | "
                     f"{cell(m['energy'])} | {g2} | {ge} |")
    for k, v in res.items():
        if isinstance(v, dict) and "identity" in v and "oracle" in v:  # an extra evaluation split
            lines += ["", f"*{k.replace('_', ' ')}* ({v['n_populations']} populations):", "",
                      "| method | W2 | energy | W2 gap closed | energy gap closed |", "|---|---|---|---|---|",
                      f"| identity | {cell(v['identity']['W2'])} | {cell(v['identity']['energy'])} | — | — |"]
            for method in METHODS:
                if method in v:
                    m, gap = v[method]["test"], v[method]["test_gap_closed"]
                    lines.append(f"| {method} | {cell(m['W2'])} | {cell(m['energy'])} | "
                                 f"{cell(gap['W2'], 2)} | {cell(gap['energy'], 2)} |")
            lines.append(f"| oracle | {cell(v['oracle']['W2'])} | {cell(v['oracle']['energy'])} | — | — |")
    return "\n".join(lines)


def speed_tables(doc: dict[str, Any]) -> str:
    """Sampling and embedding-cost tables from a ``mfm_speed`` JSON document."""
    lines = ["| solver | NFE | median time (s) | time / dopri5(1e-4) | max abs. error vs dopri5(1e-8) |",
             "|---|---|---|---|---|"]
    for name, v in doc["sampling_1000_points"].items():
        lines.append(f"| {name} | {v['nfe']} | {v['median_s']:.3g} | {v['time_ratio_vs_dopri5_1e-4']:.2f} | "
                     f"{v['max_abs_err_vs_ref']:.1e} |")
    lines += ["", "| points n | median time (s) | time / n=256 | largest tensor (entries) | largest / n² | "
              "peak extra memory (MiB) | dense float64 n² matrix (MiB) |", "|---|---|---|---|---|---|---|"]
    for n, v in doc["embedding_vs_population_size"].items():
        peak = "—" if v.get("peak_extra_mib") is None else f"{v['peak_extra_mib']:.1f}"
        lines.append(f"| {int(n):,} | {v['median_s']:.3g} | {v['time_ratio_vs_smallest']:.3g} | "
                     f"{v['largest_tensor_numel']:,} | {v['largest_over_n2']:.3g} | {peak} | "
                     f"{8 * int(n) ** 2 / 2**20:,.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    for p in sys.argv[1:]:
        doc = json.loads(Path(p).read_text())
        print(f"<!-- generated from {Path(p).name} by `python benchmarks/_mfm.py {p}` -->")
        print(speed_tables(doc) if doc.get("benchmark") == "mfm_speed" else markdown_tables(doc))
