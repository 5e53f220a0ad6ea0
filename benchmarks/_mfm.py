"""Shared plumbing of the meta-flow-matching benchmarks: configs, a plain training loop with
validation-based model selection, population metrics, side-by-side plots.

Model selection uses the validation split only; the test split is evaluated once, with the
selected state. Metrics per held-out population, then averaged over populations; seeds are
reported as mean +- std.
"""

from __future__ import annotations

import copy
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


def train(cfg: Config, train_set: PopulationBatch, val_set: PopulationBatch, tcfg: dict[str, Any],
          seed: int, log=print) -> tuple[MetaFlowMatching, dict[str, Any]]:
    """Adam on the joint loss (encoder + field); keep the state with the best validation W2."""
    torch.manual_seed(seed)  # parameter initialisation of this run (benchmark script, not library)
    model = MetaFlowMatching(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    g = torch.Generator().manual_seed(seed)
    best, best_state, history = float("inf"), None, []
    t0 = time.perf_counter()
    losses = []
    for step in range(1, int(tcfg["steps"]) + 1):
        model.train()
        pops = torch.randperm(len(train_set), generator=g)[: int(tcfg["populations_per_step"])]
        batch = subsample(train_set, pops, int(tcfg["points_per_population"]), g)
        out = model.loss(batch, generator=g)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        losses.append(out.total.item())
        if step % int(tcfg["eval_every"]) == 0 or step == int(tcfg["steps"]):
            val_w2 = mean_metrics(predict(model, val_set), val_set.target)["W2"]
            history.append({"step": step, "train_loss": statistics.fmean(losses[-50:]), "val_W2": val_w2})
            log(f"  [{cfg.conditioning} seed {seed}] step {step} loss {history[-1]['train_loss']:.4f} "
                f"val W2 {val_w2:.4f} ({time.perf_counter() - t0:.0f}s)")
            if val_w2 < best:
                best, best_state = val_w2, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, {"history": history, "best_val_W2": best, "train_s": time.perf_counter() - t0}


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def plot_side_by_side(path: Path, source: torch.Tensor, preds: dict[str, torch.Tensor],
                      true: torch.Tensor, rows: int = 3, lim: float | None = 4.0,
                      max_points: int = 400) -> None:
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_comparison(name: str, splits: dict[str, PopulationBatch], model_section: dict[str, Any],
                   tcfg: dict[str, Any], num_populations: int, seeds: list[int],
                   plot_lim: float | None) -> dict[str, Any]:
    """Train MFM / FM / CGFM per seed, select on val, report test (and a train subset)."""
    tr, va, te = splits["train"], splits["val"], splits["test"]
    train_probe = tr.index(torch.linspace(0, len(tr) - 1, min(10, len(tr))).long())
    results: dict[str, Any] = {"identity_baseline": {
        "test": mean_metrics(te.source, te.target)}}
    plot_preds: dict[str, torch.Tensor] = {}
    for method, conditioning in METHODS.items():
        cfg = model_config(model_section, conditioning, num_populations)
        per_seed_test, per_seed_train, logs = [], [], []
        for seed in seeds:
            model, log = train(cfg, tr, va, tcfg, seed)
            t0 = time.perf_counter()
            pred_te = predict(model, te)
            log["test_predict_s"] = time.perf_counter() - t0
            per_seed_test.append(mean_metrics(pred_te, te.target))
            per_seed_train.append(mean_metrics(predict(model, train_probe), train_probe.target))
            logs.append(log)
            if seed == seeds[0]:
                plot_preds[method] = pred_te
        results[method] = {"test": summarise(per_seed_test), "train_probe": summarise(per_seed_train),
                           "per_seed_test": per_seed_test, "runs": logs,
                           "config": dataclasses.asdict(cfg)}
        print(f"{method}: test W2 {results[method]['test']['W2']['mean']:.4f} "
              f"+- {results[method]['test']['W2']['std']:.4f}; train-probe W2 "
              f"{results[method]['train_probe']['W2']['mean']:.4f}")
    from _common import RESULTS  # the suite's --out folder when run by benchmarks/run.py

    fig = (RESULTS / f"{name}.png").resolve()
    plot_side_by_side(fig, te.source, plot_preds, te.target, lim=plot_lim)
    repo = Path(__file__).resolve().parents[1]
    results["plot"] = str(fig.relative_to(repo)) if fig.is_relative_to(repo) else str(fig)
    return results
