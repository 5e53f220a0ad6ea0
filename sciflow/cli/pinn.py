"""``sciflow train`` / ``sciflow evaluate`` for causal-PINN configs (flat mappings of
:class:`sciflow.models.causal_pinn.Config` fields, e.g. ``sciflow/configs/pinn_burgers.yaml``).

A run folder ``D`` holds ``config.yaml`` (every ``Config`` field), ``checkpoints/ckpt-<step>.pt``
(the loop state of :func:`sciflow.models.causal_pinn.train`, or of
:func:`~sciflow.models.causal_pinn.march` for time-marching configs, ``time_windows > 1``: the
finished windows and the current one), written atomically by
:class:`~sciflow.training.checkpoint.CheckpointManager` every ``check_every`` steps, at L-BFGS block
boundaries and at the end of each window; the newest :data:`~sciflow.cli.runs.KEEP_LAST` kept; a
corrupt newest file is skipped with a warning on resume), ``metrics.json`` (relative L2 against the
whole problem's reference solution, steps, CPU and wall seconds of the run across resumes) and the
figures ``solution.png``, ``losses.png``, ``causal_weights.png``. ``--resume`` continues bit for bit
from the newest good checkpoint (same device and thread count; training runs on CUDA when available,
scoring on the CPU).
``time_budget_s=S`` caps the run's process CPU seconds (across resumes; the one field ``--resume``
may change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from sciflow.cli.registries import _write_json
from sciflow.cli.runs import latest_state, open_run
from sciflow.config import ConfigError, apply_overrides, from_dict, parse_overrides, read_yaml, to_dict
from sciflow.config.experiment import config_path, is_pinn_config


def load_pinn_config(path: str | Path, overrides: Sequence[str] = ()):
    """A causal-PINN YAML (a path or a packaged name) with ``key=value`` overrides -> ``Config``;
    unknown keys and bad values are :class:`ConfigError` naming the key."""
    from sciflow.models.causal_pinn import Config

    raw = apply_overrides(read_yaml(config_path(path)), parse_overrides(list(overrides)))
    return from_dict(Config, raw)


def is_pinn_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir/config.yaml`` is a causal-PINN config."""
    path = Path(run_dir) / "config.yaml"
    return path.is_file() and is_pinn_config(read_yaml(path))


def _dtype(cfg) -> torch.dtype:
    return torch.float64 if cfg.dtype == "float64" else torch.float32


def score(cfg, predict) -> tuple[dict[str, float], Any]:
    """Relative L2 / max abs error of ``predict`` on the whole problem (all time windows) against
    its reference: the grid solution (:func:`~sciflow.models.causal_pinn.evaluate.reference`) or,
    for Lorenz-63, the Dopri5 trajectory at 201 times. Also returns the grid reference (``None``
    for Lorenz-63), for the solution plot."""
    from sciflow.models.causal_pinn.evaluate import evaluate, lorenz_reference, reference, relative_l2
    from sciflow.models.causal_pinn.problems import make_problem

    problem = make_problem(cfg.problem, cfg.t_final)
    if problem.name == "lorenz63":
        t = torch.linspace(*problem.t_span, 201, dtype=torch.float64)
        with torch.no_grad():
            pred = predict(t[:, None].to(_dtype(cfg))).double()
        ref = lorenz_reference(problem, t)
        return {"rel_l2": relative_l2(pred, ref), "max_abs": float((pred - ref).abs().max())}, None
    ref = reference(problem)
    return evaluate(predict, ref, dtype=_dtype(cfg)), ref


def progress(state: Mapping[str, Any]) -> dict[str, Any]:
    """The run's progress and cost from its loop state (one window, or a time-marching run)."""
    out: dict[str, Any] = {"phase": state["phase"], "steps": int(state["step"]),
                           "train_cpu_s": float(state["cpu_s"]), "train_wall_s": float(state["wall_s"])}
    if state.get("kind") == "march":
        hists = state["histories"]
        return {**out, "windows_done": len(state["windows"]),
                "final_loss": hists[-1]["total"][-1] if hists and hists[-1]["total"] else None}
    block = state["lbfgs_block"]
    return {**out, "adam_steps": int(state["adam_steps"]),
            "lbfgs_iterations": int(state["lbfgs_done"]) + (int(block["done"]) if block else 0),
            "final_loss": state["history"]["total"][-1] if state["history"]["total"] else None}


def _plots(cfg, predict, state: Mapping[str, Any], run_dir: Path, ref=None) -> None:
    """``losses.png`` and ``causal_weights.png`` (causal runs; the last window of a time-marching
    run) and ``solution.png`` (grid references; the last channel, e.g. the vorticity)."""
    from sciflow.models.causal_pinn import History
    from sciflow.models.causal_pinn.evaluate import predict_grid
    from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution

    hist = History(**(state["histories"][-1] if state.get("kind") == "march" else state["history"]))
    plot_losses(hist, run_dir / "losses.png")
    if cfg.causal:
        plot_causal_weights(hist, run_dir / "causal_weights.png")
    if ref is not None:
        plot_solution(predict_grid(predict, ref, _dtype(cfg)), ref, run_dir / "solution.png",
                      channel=ref.values.shape[-1] - 1, title=cfg.problem)


def train_pinn(config: str | Path, overrides: Sequence[str], run_dir: str | Path | None,
               resume: bool = False) -> dict[str, Any]:
    """Train a causal-PINN config into ``run_dir`` (default ``runs/<config name>``); returns and
    writes the metrics. Without ``resume`` a folder that already holds checkpoints is refused (its
    newer checkpoints would shadow the new run's)."""
    from sciflow.models.causal_pinn import CausalPINN, march, train
    from sciflow.models.causal_pinn.train import resume_mismatch

    cfg = load_pinn_config(config, overrides)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config_path(config).stem
    ckpts, state = open_run(run_dir, to_dict(cfg), lambda s: resume_mismatch(cfg, s), resume)
    final: dict[str, Any] = {}

    def on_checkpoint(s: dict[str, Any]) -> None:
        ckpts.save(s)
        final.update(s)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    kw = dict(device=device, checkpoint_every=cfg.check_every, on_checkpoint=on_checkpoint, resume_state=state)
    if cfg.time_windows > 1:
        predictor = march(cfg, **kw)
        for m in predictor.models:
            m.to("cpu")
    else:
        predictor = CausalPINN(cfg)
        train(predictor, **kw)
        predictor.to("cpu")
    final = final or state  # a finished run resumed: nothing new was written
    errors, ref = score(cfg, predictor.predict)
    metrics = {"problem": cfg.problem, **progress(final), **errors}
    _plots(cfg, predictor.predict, final, run_dir, ref)
    _write_json(metrics, run_dir / "metrics.json")
    return metrics


def evaluate_pinn(run_dir: str | Path, uq: str | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reload the newest checkpoint of a causal-PINN run and score it like training did; writes
    ``eval_pinn.json``. A PINN is deterministic: ``--uq`` and ``eval.*`` overrides do not apply."""
    from sciflow.models.causal_pinn import CausalPINN, march
    from sciflow.models.causal_pinn.train import resume_mismatch

    if uq is not None or overrides:
        given = " ".join([*(["--uq " + uq] if uq else []), *overrides])
        raise ConfigError(f"{given!r}: a causal-PINN run is scored deterministically against its reference "
                          "solution; --uq and overrides do not apply (for uncertainty, train several seeds: "
                          "causal_pinn.evaluate.seed_ensemble)")
    run_dir = Path(run_dir)
    cfg = load_pinn_config(run_dir / "config.yaml")
    state, path = latest_state(run_dir, lambda s: resume_mismatch(cfg, s))
    if state.get("kind") == "march":
        if state["phase"] != "done":
            raise ConfigError(f"{str(path)!r}: the time-marching run stopped in window {len(state['windows']) + 1} "
                              f"of {cfg.time_windows}; finish it with `sciflow train ... --resume`")
        predictor = march(cfg, resume_state=state)  # every window finished: reloads, trains nothing
    else:
        predictor = CausalPINN(cfg).to(dtype=_dtype(cfg))
        predictor.load_state_dict(state["model"])
    metrics = {"problem": cfg.problem, **progress(state), **score(cfg, predictor.predict)[0], "checkpoint": str(path)}
    _write_json(metrics, run_dir / "eval_pinn.json")
    return metrics
