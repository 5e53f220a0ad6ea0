"""Figures: solution / reference / absolute error over (x, t); causal weights over training;
loss terms. Matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sciflow.models.causal_pinn.evaluate import GridReference
from sciflow.models.causal_pinn.train import History


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_solution(pred: torch.Tensor, ref: GridReference, path: str | Path, channel: int = 0,
                  title: str = "") -> Path:
    """Three panels over ``(x, t)``: prediction, reference, ``|prediction - reference|``
    (1-D problems; for 2-D the last time slice over ``(x, y)``)."""
    plt = _plt()
    p = pred[..., channel].double().cpu().numpy()
    r = ref.values[..., channel].double().cpu().numpy()
    if p.ndim == 3:  # (t, x, y): last time slice
        p, r = p[-1], r[-1]
        ext, xl, yl = None, "y", "x"
    else:
        t, x = ref.t.numpy(), ref.space[0].numpy()
        p, r = p.T, r.T  # (x, t)
        ext, xl, yl = [t[0], t[-1], x[0], x[-1]], "t", "x"
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for a, data, name in zip(ax, (p, r, np.abs(p - r)), ("prediction", "reference", "|error|")):
        im = a.imshow(data, origin="lower", aspect="auto", extent=ext, cmap="jet" if name != "|error|" else "viridis")
        a.set_title(f"{title} {name}".strip())
        a.set_xlabel(xl)
        a.set_ylabel(yl)
        fig.colorbar(im, ax=a)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_causal_weights(hist: History, path: str | Path, max_curves: int = 8) -> Path:
    """Causal weights ``w_i`` against the chunk index at several points of training."""
    plt = _plt()
    snaps = [(s, w) for s, w in zip(hist.step, hist.weights) if w]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    if snaps:
        idx = np.unique(np.linspace(0, len(snaps) - 1, min(max_curves, len(snaps))).astype(int))
        for i in idx:
            s, w = snaps[i]
            ax.plot(np.arange(1, len(w) + 1), w, label=f"step {s}")
        ax.legend(fontsize=7)
    ax.set_xlabel("time chunk i")
    ax.set_ylabel("w_i")
    ax.set_ylim(-0.05, 1.05)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_losses(hist: History, path: str | Path) -> Path:
    """Loss terms (log scale) and ``min w`` against the step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for k, v in hist.terms.items():
        if k == "w_min":
            continue
        ax.semilogy(hist.step, np.maximum(np.asarray(v), 1e-16), label=k)
    ax.semilogy(hist.step, hist.total, "k--", label="total")
    if "w_min" in hist.terms:
        ax2 = ax.twinx()
        ax2.plot(hist.step, hist.terms["w_min"], "r:", label="min w")
        ax2.set_ylabel("min w", color="r")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
