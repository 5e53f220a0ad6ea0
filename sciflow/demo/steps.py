"""The demo's steps, its report and :func:`run_demo`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sciflow.config import ConfigError
from sciflow.demo._common import _write_json
from sciflow.demo.lorenz import run_lorenz_ensemble
from sciflow.demo.pinn import run_causal_pinn_burgers
from sciflow.demo.stable_sde import run_stable_sde_irregular
from sciflow.demo.wdno import run_wdno_burgers


def _importable(module: str) -> Callable[[], bool]:
    def check() -> bool:
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:
            return False
    return check


# ------------------------------------------------------------------------------ steps and report


@dataclass(frozen=True)
class Step:
    """A demo step: ``run(out_dir, quick=, seed=, ...) -> metrics``; ``folder`` relative to the run."""

    name: str
    title: str
    run: Callable[..., dict[str, Any]]
    folder: str
    headline: tuple[str, ...]
    available: Callable[[], bool] = lambda: True
    default: bool = True  # part of a plain `sciflow demo` (others run with --step NAME)


STEPS: dict[str, Step] = {
    "lorenz_ensemble": Step(
        "lorenz_ensemble", "Lorenz-63: neural ODE ensemble with split-conformal bands", run_lorenz_ensemble, ".",
        ("rmse", "persistence_rmse", "rmse_ratio_vs_persistence", "nominal_coverage", "coverage",
         "ensemble_only_coverage", "crps")),
    "causal_pinn_burgers": Step(
        "causal_pinn_burgers", "Burgers: a PDE solved by a causal PINN", run_causal_pinn_burgers,
        "causal_pinn_burgers", ("rel_l2", "rel_l2_untrained", "max_abs_error", "final_min_causal_weight", "train_s")),
    "wdno_burgers": Step(
        "wdno_burgers", "Forced Burgers: a WDNO surrogate with an uncertainty band", run_wdno_burgers,
        "wdno_burgers", ("rel_l2_ensemble_mean", "rel_l2_persistence", "crps", "coverage_90", "train_s"),
        _importable("sciflow.models.wavelet_diffusion")),
    "stable_sde_irregular": Step(
        "stable_sde_irregular", "An irregular, partly missing series forecast by a stable neural SDE",
        run_stable_sde_irregular, "stable_sde_irregular",
        ("crps", "persistence_mae", "mean_mae", "coverage_90", "train_s"), _importable("sciflow.models.stable_sde")),
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md`` in the run folder: per step, its headline metrics and its plots."""
    lines = ["# sciflow demo report", "",
             f"Steps run: {', '.join(summary)}. Each step's full metrics are in its `metrics.json`.", ""]
    for name, info in summary.items():
        step = STEPS[name]
        lines += [f"## {step.title}", "", f"`sciflow demo --step {name}` ({info['seconds']:.0f} s)", ""]
        if info.get("skipped"):
            lines += [f"Skipped: {info['skipped']}", ""]
            continue
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(info['metrics'][k])} |" for k in step.headline if k in info["metrics"]]
        lines.append("")
        for p in info["metrics"].get("plots", []):
            rel = Path(p).resolve().relative_to(out.resolve()) if Path(p).resolve().is_relative_to(out.resolve()) else p
            lines += [f"![{Path(p).stem}]({rel})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(out_dir: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0, progress: bool = True,
             threads: int | None = 1, workers: int | None = None,
             steps: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the demo steps (default: all available) into ``out_dir``; write ``report.md``.

    Returns ``{step: metrics}``; the ``lorenz_ensemble`` step keeps writing ``metrics.json`` and
    ``plots/`` at the top of the run folder, the other steps into their own sub-folders.
    """
    names = list(steps) if steps else [k for k, st in STEPS.items() if st.default and st.available()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ConfigError(f"unknown demo step(s) {unknown}; allowed values: {sorted(STEPS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary = {k: v for k, v in summary.items() if k in STEPS}
    results = {}
    for name in names:
        step = STEPS[name]
        t0 = time.perf_counter()
        if not step.available():
            summary[name] = {"seconds": 0.0, "skipped": "its model family is not installed"}
            continue
        kwargs = {"quick": quick, "seed": seed, "threads": threads}
        if name == "lorenz_ensemble":
            kwargs.update(progress=progress, workers=workers)
        metrics = step.run(out / step.folder, **kwargs)
        results[name] = metrics
        summary[name] = {"seconds": time.perf_counter() - t0, "metrics": metrics}
    _write_json(json.loads(json.dumps(summary, default=str)), summary_path)  # paths as strings
    report = write_report(out, {k: summary[k] for k in STEPS if k in summary})
    print(f"[demo] report: {report}")
    return results
