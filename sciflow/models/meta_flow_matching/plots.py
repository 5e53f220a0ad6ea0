"""Figures of population predictions: source | predictions | true target, one row per population.
Matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import torch


def plot_side_by_side(path: str | Path, source: torch.Tensor, preds: dict[str, torch.Tensor],
                      true: torch.Tensor, rows: int = 3, lim: float | None = 4.0,
                      max_points: int = 1000, row_labels: list[str] | None = None) -> Path:
    """Rows = populations ``(batch, n, dim)``, the first two coordinates; columns = source | each
    method's prediction | true target; axes ``[-lim, lim]`` (``None``: automatic)."""
    if source.shape[-1] < 2:
        raise ValueError(f"plot_side_by_side draws 2-D populations, got dim {source.shape[-1]}")
    path = Path(path)
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
            pts = pts[:max_points].detach().cpu().numpy()
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
    return path
