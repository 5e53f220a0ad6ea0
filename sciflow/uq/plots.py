"""Diagnostic figures (matplotlib, Agg backend, PNG): reliability diagram, PIT / rank histogram,
spread–skill plot, predictive band over a trajectory or a field slice.

Every function takes tensors, writes ``path`` and returns it; figures are closed after saving so
long evaluation runs do not accumulate memory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from sciflow.uq.prediction import Prediction
from sciflow.uq.scores import reliability


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _np(x: Tensor):
    return x.detach().to("cpu", torch.float64).numpy()


def reliability_diagram(pit_values: Tensor | dict[str, Tensor], path: str | Path, levels: int = 19) -> Path:
    """Observed frequency of PIT <= p against the nominal level p (the diagonal is calibrated;
    below it = over-confident lower tail / under-dispersed). A dict plots one curve per method."""
    plt = _plt()
    curves = pit_values if isinstance(pit_values, dict) else {"forecast": pit_values}
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for name, pv in curves.items():
        lv, obs = reliability(pv.reshape(-1).to(torch.float64), levels)
        ax.plot(_np(lv), _np(obs), "o-", ms=3, label=name)
    ax.set(xlabel="nominal quantile level", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="Reliability diagram")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pit_histogram(pit_values: Tensor, path: str | Path, bins: int = 20) -> Path:
    """Histogram of PIT values, normalised to density (flat at 1 when calibrated; U-shaped when
    over-confident, hump-shaped when under-confident)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.hist(_np(pit_values.reshape(-1)), bins=bins, range=(0, 1), density=True, color="C0", alpha=0.8)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set(xlabel="PIT", ylabel="density", title="PIT histogram")
    return _save(fig, path)


def rank_histogram_plot(counts: Tensor, path: str | Path) -> Path:
    """Bar plot of rank-histogram counts ``(m + 1,)`` normalised to frequencies."""
    plt = _plt()
    c = _np(counts)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(range(len(c)), c / c.sum(), color="C1")
    ax.axhline(1 / len(c), color="k", ls="--", lw=1)
    ax.set(xlabel="rank of truth among members", ylabel="frequency", title="Rank histogram")
    return _save(fig, path)


def spread_skill_plot(spread: Tensor, error: Tensor, path: str | Path, bins: int = 10) -> Path:
    """Binned spread–skill: points grouped by predicted std, RMSE of each bin against its mean
    spread (the diagonal is calibrated). ``spread``/``error`` share a shape (error = mean - truth)."""
    plt = _plt()
    s, e = spread.reshape(-1).to(torch.float64), error.reshape(-1).to(torch.float64)
    order = torch.argsort(s)
    groups = [g for g in torch.tensor_split(order, bins) if g.numel() > 0]
    xs = torch.stack([s[g].pow(2).mean().sqrt() for g in groups])
    ys = torch.stack([e[g].pow(2).mean().sqrt() for g in groups])
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    hi = float(max(xs.max(), ys.max())) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1)
    ax.plot(_np(xs), _np(ys), "o-", color="C2")
    ax.set(xlabel="RMS predicted spread", ylabel="RMSE", title="Spread–skill", xlim=(0, hi), ylim=(0, hi))
    return _save(fig, path)


def predictive_band(prediction: Prediction, truth: Tensor | None, path: str | Path, *,
                    coordinate: Tensor | None = None, title: str = "Predictive band",
                    xlabel: str = "index") -> Path:
    """Mean and ``[lower, upper]`` band of a 1-D slice (a trajectory over time, or a field over
    space); pass e.g. ``prediction`` indexed to one sample. All tensors 1-D of one length."""
    if prediction.mean.ndim != 1:
        raise ValueError(f"predictive_band plots a 1-D slice, got mean of shape {tuple(prediction.mean.shape)}")
    plt = _plt()
    n = prediction.mean.shape[0]
    x = _np(coordinate) if coordinate is not None else list(range(n))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if prediction.has_interval:
        ax.fill_between(x, _np(prediction.lower), _np(prediction.upper), alpha=0.3, color="C0",
                        label=f"{100 * (1 - (prediction.alpha or 0.1)):.0f}% interval")
    ax.plot(x, _np(prediction.mean), color="C0", label="mean")
    if truth is not None:
        ax.plot(x, _np(truth.reshape(-1)), "k.", ms=3, label="truth")
    ax.set(xlabel=xlabel, title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)
