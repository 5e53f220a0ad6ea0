"""Shared plumbing of the meta-flow-matching benchmarks: configs, a plain training loop with
validation-based model selection, population metrics, side-by-side plots.

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
import copy
import math
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from sciflow.data.batches import PopulationBatch
from sciflow.models.meta_flow_matching import Config, MetaFlowMatching
from sciflow.uq.distances import energy_distance, mmd, wasserstein_exact

CONFIGS = Path(__file__).resolve().parents[1] / "sciflow" / "configs"
METHODS = {"MFM": "population", "FM": "none", "CGFM": "population_id"}
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


def population_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """W1, W2 (exact, Hungarian), RBF-MMD^2 (5 bandwidths x median distance), energy distance
    between two ``(n, dim)`` point clouds, from :mod:`sciflow.uq.distances`."""
    pred, true = pred.double(), true.double()
    return {"W1": float(wasserstein_exact(pred, true, p=1)),
            "W2": float(wasserstein_exact(pred, true, p=2)),
            "MMD": float(mmd(pred, true)),
            "energy": float(energy_distance(pred, true))}


def mean_metrics(preds: torch.Tensor, trues: torch.Tensor) -> dict[str, float]:
    per = [population_metrics(p, t) for p, t in zip(preds, trues)]
    return {k: statistics.fmean(m[k] for m in per) for k in per[0]}


@torch.no_grad()
def predict(model: MetaFlowMatching, batch: PopulationBatch, chunk: int = 16) -> torch.Tensor:
    model.eval()
    out = [model.transport(batch.index(slice(i, i + chunk)))[0] for i in range(0, len(batch), chunk)]
    return torch.cat(out)


def subsample(batch: PopulationBatch, pops: torch.Tensor, n: int, g: torch.Generator) -> PopulationBatch:
    """Populations ``pops`` with ``n`` random points each (the same points in source and target)."""
    N = batch.source.shape[1]
    if n >= N:
        return batch.index(pops)
    idx = torch.stack([torch.randperm(N, generator=g)[:n] for _ in range(len(pops))])
    gather = lambda x: torch.gather(x[pops], 1, idx[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    return PopulationBatch(source=gather(batch.source), target=gather(batch.target),
                           population_id=batch.population_id[pops])


def random_rotation(batch: PopulationBatch, g: torch.Generator) -> PopulationBatch:
    """Each 2-D population (source and target together) rotated by its own uniform angle about
    the origin: for rotation-invariant families such as Letters, an unlimited supply of training
    populations instead of a fixed set of rotations per letter."""
    if batch.source.shape[-1] != 2:
        raise ValueError(f"augment_rotation needs 2-D populations, got dim {batch.source.shape[-1]}")
    theta = 2 * math.pi * torch.rand(batch.source.shape[0], generator=g)
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).to(batch.source.dtype)  # (B, 2, 2)
    turn = lambda x: x @ rot.transpose(1, 2)  # noqa: E731
    return PopulationBatch(source=turn(batch.source), target=turn(batch.target), population_id=batch.population_id)


def train(cfg: Config, train_set: PopulationBatch, val_set: PopulationBatch, tcfg: dict[str, Any],
          seed: int, log=print) -> tuple[MetaFlowMatching, dict[str, Any]]:
    """Adam on the joint loss (encoder + field), validation W2 every ``eval_every`` steps.

    ``tcfg["selection"]``: ``"last"`` (default, as the official code, which uses no early
    stopping) keeps the final state and uses the validation history for monitoring only;
    ``"best_val"`` keeps the state with the best validation W2. The test split is never seen.
    """
    selection = tcfg.get("selection", "last")
    if selection not in ("last", "best_val"):
        raise ValueError(f"selection must be 'last' or 'best_val', got {selection!r}")
    torch.manual_seed(seed)  # parameter initialisation of this run (benchmark script, not library)
    model = MetaFlowMatching(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    # cosine decay to lr_final_fraction x lr over the run (constant when the key is absent)
    final = float(tcfg.get("lr_final_fraction", 1.0))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: final + (1 - final) * 0.5 * (
        1 + math.cos(math.pi * min(s / max(int(tcfg["steps"]), 1), 1.0))))
    g = torch.Generator().manual_seed(seed)
    best, best_state, history = float("inf"), None, []
    t0, c0 = time.perf_counter(), time.process_time()
    losses = []
    for step in range(1, int(tcfg["steps"]) + 1):
        model.train()
        pops = torch.randperm(len(train_set), generator=g)[: int(tcfg["populations_per_step"])]
        batch = subsample(train_set, pops, int(tcfg["points_per_population"]), g)
        if tcfg.get("augment_rotation", False):
            batch = random_rotation(batch, g)
        out = model.loss(batch, generator=g)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        sched.step()
        losses.append(out.total.item())
        if step % int(tcfg["eval_every"]) == 0 or step == int(tcfg["steps"]):
            val_w2 = mean_metrics(predict(model, val_set), val_set.target)["W2"]
            history.append({"step": step, "train_loss": statistics.fmean(losses[-50:]), "val_W2": val_w2})
            log(f"  [{cfg.conditioning} seed {seed}] step {step} loss {history[-1]['train_loss']:.4f} "
                f"val W2 {val_w2:.4f} ({time.process_time() - c0:.0f} cpu-s)")
            if val_w2 < best:
                best, best_state = val_w2, copy.deepcopy(model.state_dict())
    if selection == "best_val":
        model.load_state_dict(best_state)
    return model, {"history": history, "best_val_W2": best, "selection": selection, "train_wall_s": time.perf_counter() - t0,
                   "train_cpu_s": time.process_time() - c0}


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def plot_side_by_side(path: Path, source: torch.Tensor, preds: dict[str, torch.Tensor],
                      true: torch.Tensor, rows: int = 3, lim: float | None = 4.0,
                      max_points: int = 1000, row_labels: list[str] | None = None) -> None:
    """Rows = populations; columns = source | each method's prediction | true target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(rows, source.shape[0])
    cols = ["source", *preds, "true"]
    fig, axs = plt.subplots(rows, len(cols), figsize=(1.8 * len(cols), 1.8 * rows), squeeze=False)
    for i in range(rows):
        clouds = [source[i], *(p[i] for p in preds.values()), true[i]]
        for j, (name, pts) in enumerate(zip(cols, clouds)):
            ax = axs[i, j]
            pts = pts[:max_points].cpu()
            ax.scatter(pts[:, 0], pts[:, 1], s=1.0, c="#3283FB", rasterized=True)
            if lim is not None:
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
