"""``sciflow train`` / ``sciflow evaluate`` for meta-flow-matching configs (``model`` / ``data`` /
``train`` sections: :class:`sciflow.models.meta_flow_matching.Config`, a split recipe of
:mod:`sciflow.data.population_splits` and :class:`~sciflow.models.meta_flow_matching.TrainConfig`;
e.g. ``sciflow/configs/mfm_letters.yaml``).

One run trains one seed (``train.seed``; the packaged configs list the benchmark's ``train.seeds``
and the first is taken) with the config's conditioning (``model.conditioning=none`` gives the FM
baseline, ``population_id`` CGFM), selecting on the mean validation W2. A run folder ``D`` holds
``config.yaml`` (every field), ``checkpoints/ckpt-<step>.pt`` (the loop state of
:func:`~sciflow.models.meta_flow_matching.train`, written atomically by
:class:`~sciflow.training.checkpoint.CheckpointManager` every ``check_every`` steps and at the end,
the newest :data:`~sciflow.cli.runs.KEEP_LAST` kept), ``metrics.json`` and ``predictions.png``
(source | prediction | true for test populations). ``--resume`` continues bit for bit from the
newest good checkpoint.
``train.time_budget_s=S`` caps the run's process CPU seconds (across resumes; the one field
``--resume`` may change): training stops after the step that passes it and the run is validated,
selected, saved and scored as usual (``metrics.json``: ``steps`` done, ``stopped_by_budget``); a
finished run is not extended by a larger budget.

Scores per held-out split (test, and the seen-letters-at-new-rotations diagnostic where the config
asks for it), averaged over its populations: W1, W2, MMD², energy distance of the prediction, of
the source itself (*identity*, no transport) and of an independent second sample of the true
target (*oracle*, the finite-sample floor), and the fraction of the identity -> oracle gap closed,
``(identity - method) / (identity - oracle)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from sciflow.cli.registries import _write_json
from sciflow.cli.runs import latest_state, open_run
from sciflow.config import ConfigError, apply_overrides, from_dict, parse_overrides, read_yaml, to_dict
from sciflow.config.experiment import config_path, is_mfm_config
from sciflow.data.population_splits import AggregationSplits, LettersSplits, splits_class

SECTIONS = ("model", "data", "train")


@dataclass(frozen=True)
class MFMRun:
    """A resolved meta-flow-matching config: the model, the data recipe, the optimisation, and how
    often a checkpoint is written."""

    model: Any  # sciflow.models.meta_flow_matching.Config
    data: LettersSplits | AggregationSplits
    train: Any  # sciflow.models.meta_flow_matching.TrainConfig
    check_every: int = 100

    def as_yaml(self) -> dict[str, Any]:
        return {"model": to_dict(self.model), "data": to_dict(self.data),
                "train": {**to_dict(self.train), "check_every": self.check_every}}


def load_mfm_config(path: str | Path, overrides: Sequence[str] = ()) -> MFMRun:
    """A meta-flow-matching YAML (a path or a packaged name) with dotted overrides -> :class:`MFMRun`;
    unknown keys and bad values are :class:`ConfigError` naming the key."""
    from sciflow.models.meta_flow_matching import Config, TrainConfig

    raw = apply_overrides(read_yaml(config_path(path)), parse_overrides(list(overrides)))
    if unknown := sorted(set(raw) - set(SECTIONS)):
        raise ConfigError(f"unknown section(s) {unknown} in a meta-flow-matching config; allowed: {list(SECTIONS)}")
    data = dict(raw.get("data") or {})
    try:
        recipe = from_dict(splits_class(data), data, prefix="data")
    except ValueError as err:
        raise ConfigError(f"data: {err}") from err
    train = dict(raw.get("train") or {})
    seeds = train.pop("seeds", None)  # the benchmark's seeds: one CLI run trains the first
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"train.seeds must be a non-empty list of integers, got {seeds!r}")
    if seeds and "seed" not in train:
        train["seed"] = seeds[0]
    check_every = train.pop("check_every", 100)
    if not isinstance(check_every, int) or check_every < 1:
        raise ConfigError(f"train.check_every must be an integer >= 1, got {check_every!r}")
    model = dict(raw.get("model") or {})
    if model.get("conditioning") == "population_id" and not model.get("num_populations"):
        model["num_populations"] = recipe.num_populations  # the one-hot spans every split's ids
    return MFMRun(model=from_dict(Config, model, prefix="model"), data=recipe,
                  train=from_dict(TrainConfig, train, prefix="train"), check_every=check_every)


def is_mfm_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir/config.yaml`` is a meta-flow-matching config."""
    path = Path(run_dir) / "config.yaml"
    return path.is_file() and is_mfm_config(read_yaml(path))


def score(model, recipe: LettersSplits | AggregationSplits, device: torch.device | str = "cpu"
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Scores of ``model`` on every held-out split but validation (see the module docstring) and
    the test predictions ``{"prediction": (P, n, dim)}`` for the figure."""
    from sciflow.models.meta_flow_matching import predict
    from sciflow.uq.distances import mean_population_metrics

    out: dict[str, Any] = {}
    preds: dict[str, torch.Tensor] = {}
    for name in recipe.names:
        if name in ("train", "val") or (name == "seen" and model.cfg.conditioning == "population_id"):
            continue  # CGFM has no one-hot for populations without an id
        b = recipe.split(name)
        pred = predict(model, b.to(device)).cpu()
        method = mean_population_metrics(pred, b.target)
        identity = mean_population_metrics(b.source, b.target)
        oracle = mean_population_metrics(recipe.split(name, draw=1).target, b.target)
        out[name] = {"populations": len(b), "points": b.source.shape[1], "method": method, "identity": identity,
                     "oracle": oracle, "gap_closed": {k: (identity[k] - method[k]) / (identity[k] - oracle[k])
                                                      for k in method}}
        if name == "test":
            preds = {"prediction": pred, "source": b.source, "target": b.target}
    return out, preds


def _figure(preds: dict[str, torch.Tensor], recipe, conditioning: str, path: Path) -> None:
    from sciflow.models.meta_flow_matching.config import METHOD_NAMES
    from sciflow.models.meta_flow_matching.plots import plot_side_by_side

    labels = recipe.row_labels("test")
    rows = sorted({labels.index(lb) for lb in labels})[:4]  # one population per letter (or the first four)
    if preds["source"].shape[-1] >= 2:
        shown = [preds[k][rows, :, :2] for k in ("source", "prediction", "target")]
        lim = 1.05 * float(torch.cat(shown).abs().max())  # one scale for every panel
        plot_side_by_side(path, shown[0], {METHOD_NAMES[conditioning]: shown[1]}, shown[2], rows=len(rows),
                          lim=lim, row_labels=[labels[r] for r in rows])


def _summary(run: MFMRun, result, scores: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers first, then every score and the validation history."""
    from sciflow.models.meta_flow_matching.config import METHOD_NAMES

    test = scores["test"]
    return {"method": METHOD_NAMES[run.model.conditioning], "conditioning": run.model.conditioning,
            "seed": run.train.seed, "steps": result.steps, "stopped_by_budget": result.stopped_by_budget,
            "selection": result.selection,
            "best_val_W2": result.best_val, "best_step": result.best_step, "test_W2": test["method"]["W2"],
            "test_W2_gap_closed": test["gap_closed"]["W2"], "train_cpu_s": result.train_cpu_s,
            "train_wall_s": result.train_wall_s, "scores": scores, "history": result.history}


def train_mfm(config: str | Path, overrides: Sequence[str], run_dir: str | Path | None,
              resume: bool = False) -> dict[str, Any]:
    """Train a meta-flow-matching config into ``run_dir`` (default ``runs/<config name>``); returns
    and writes the metrics. Without ``resume`` a folder that already holds checkpoints is refused."""
    from sciflow.models.meta_flow_matching import init_model, predict, train
    from sciflow.models.meta_flow_matching.train import resume_mismatch
    from sciflow.uq.distances import mean_population_metrics

    run = load_mfm_config(config, overrides)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config_path(config).stem
    ckpts, state = open_run(run_dir, run.as_yaml(), lambda s: resume_mismatch(run.model, run.train, s), resume)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    val = run.data.split("val")
    val_source = val.to(device)  # transported every validation; scored on the host against val.target
    model = init_model(run.model, run.train.seed)
    result = train(model, run.data.split("train"), run.train, device=device, log=print,
                   validate=lambda m: mean_population_metrics(predict(m, val_source).cpu(), val.target)["W2"],
                   checkpoint_every=run.check_every, on_checkpoint=ckpts.save, resume_state=state)
    scores, preds = score(model, run.data, device)
    _figure(preds, run.data, run.model.conditioning, run_dir / "predictions.png")
    metrics = _summary(run, result, scores)
    _write_json(metrics, run_dir / "metrics.json")
    return metrics


def evaluate_mfm(run_dir: str | Path, uq: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reload a finished meta-flow-matching run (its selected state) and score it like training did;
    writes ``eval_mfm.json``. The learned flow is deterministic: ``--uq`` and overrides do not apply."""
    from sciflow.models.meta_flow_matching import MetaFlowMatching, TrainResult
    from sciflow.models.meta_flow_matching.train import resume_mismatch

    if uq is not None or overrides:
        given = " ".join([*(["--uq " + uq] if uq else []), *overrides])
        raise ConfigError(f"{given!r}: a meta-flow-matching run transports each population deterministically and "
                          "is scored by distances between populations; --uq and overrides do not apply")
    run_dir = Path(run_dir)
    run = load_mfm_config(run_dir / "config.yaml")
    state, path = latest_state(run_dir, lambda s: resume_mismatch(run.model, run.train, s))
    if state["phase"] != "done":
        raise ConfigError(f"{str(path)!r}: the run stopped at step {state['step']} of {run.train.steps} (before "
                          "model selection); finish it with `sciflow train ... --resume`")
    model = MetaFlowMatching(run.model)
    model.load_state_dict(state["model"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scores, _ = score(model.to(device), run.data, device)
    metrics = {**_summary(run, TrainResult(**state["result"]), scores), "checkpoint": str(path)}
    _write_json(metrics, run_dir / "eval_mfm.json")
    return metrics
