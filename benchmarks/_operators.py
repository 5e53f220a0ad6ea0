"""Shared plumbing of the neural-operator / WDNO benchmarks: training through ``sciflow.training.fit``,
batched prediction, figures. Not a benchmark itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from _common import RESULTS
from sciflow.data.batches import TrajectoryBatch
from sciflow.training import BatchLoader, TrainConfig, fit

FIGURES = RESULTS / "figures"


def train(model, data: TrajectoryBatch, *, steps: int, batch_size: int, lr: float, seed: int, device: str,
          weight_decay: float = 0.0, halve_every: int | None = None, grad_clip: float | None = None,
          max_time_s: float | None = None) -> dict[str, Any]:
    """Adam (optionally with the FNO papers' weight decay 1e-4) for ``steps`` steps through
    :func:`sciflow.training.fit`; ``halve_every``: the papers' StepLR(gamma=0.5) as the continuous
    exponential decay ``0.5 ** (step / halve_every)``; ``max_time_s``: train for the steps that fit in
    that many wall-clock seconds, with the same number of halvings (``time_schedule="fit"``: the GPU
    check's short runs). Returns wall time, steps run and the final loss."""
    cfg = TrainConfig(max_steps=steps, max_time_s=max_time_s, time_schedule="stop" if max_time_s is None else "fit",
                      lr=lr, weight_decay=weight_decay, seed=seed, device=device,
                      schedule="exponential" if halve_every else "constant", decay_rate=0.5,
                      decay_steps=max(1, halve_every or 1), grad_clip=grad_clip, eval_every=0,
                      log_every=max(1, steps // 10),
                      checkpoint_every=0, progress=False)
    loader = BatchLoader(data, batch_size, seed=seed)
    t0 = time.perf_counter()
    result = fit(model, loader, None, cfg)
    wall = time.perf_counter() - t0
    curve = [(h["step"], h["train/loss"]) for h in result.history if "train/loss" in h]
    final = curve[-1][1] if curve else None
    return {"steps": result.steps, "max_steps": steps, "stop_reason": result.stop_reason,
            "batch_size": min(batch_size, len(data)), "lr": lr, "weight_decay": weight_decay,
            "train_wall_s": wall, "steps_per_s": result.steps / wall, "final_train_loss": final,
            "loss_curve": curve}


@torch.no_grad()
def predict(fn: Callable[[TrajectoryBatch], torch.Tensor], data: TrajectoryBatch, chunk: int = 16) -> torch.Tensor:
    """``fn`` over ``data`` in chunks of ``chunk`` samples, concatenated along the batch axis
    (``fn`` may return a leading ``n_samples`` axis: it is kept first)."""
    outs = [fn(data.index(slice(s, s + chunk))) for s in range(0, len(data), chunk)]
    return torch.cat(outs, dim=1 if outs[0].ndim == data.values.ndim + 1 else 0)


def figure_path(name: str) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    return FIGURES / name


def plot_fields(rows: dict[str, torch.Tensor], path: Path, *, title: str = "", cmap: str = "RdBu_r",
                times: list[int] | None = None, transpose: bool = True) -> Path:
    """Rows of 2-D fields (``name -> (time, x, y)`` or ``(time, x)`` as one image per row).
    ``transpose``: draw ``x`` horizontally (PDE fields); ``False`` for ``(lat, lon)`` maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    first = rows[names[0]]
    if first.ndim == 2:  # (time, x) space-time images, one panel per row
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
        vmax = max(float(r.abs().max()) for r in rows.values())
        for ax, n in zip(axes[0], names):
            im = ax.imshow(rows[n].cpu().numpy(), aspect="auto", origin="lower", cmap=cmap, vmin=-vmax, vmax=vmax)
            ax.set_title(n, fontsize=9)
            ax.set_xlabel("x")
            ax.set_ylabel("t")
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    else:
        times = times or [0, first.shape[0] // 2, first.shape[0] - 1]
        fig, axes = plt.subplots(len(names), len(times), figsize=(2.6 * len(times), 2.4 * len(names)), squeeze=False)
        ref = rows[names[0]]
        lo, hi = float(ref.min()), float(ref.max())
        for i, n in enumerate(names):
            for j, t in enumerate(times):
                ax = axes[i, j]
                is_spread = "spread" in n or "error" in n
                img = rows[n][t].cpu().numpy()
                ax.imshow(img.T if transpose else img, origin="lower", cmap="viridis" if is_spread else cmap,
                          vmin=None if is_spread else lo, vmax=None if is_spread else hi)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(n, fontsize=8)
                if i == 0:
                    ax.set_title(f"step {t}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def matched_levels(cfg_kw: dict) -> dict:
    """U-Net options of the *matched* WDNO: the physical-space U-Net with its first level replaced by
    the DWT. A one-level DWT halves every axis, as the U-Net's first down-sampling does, so the
    coefficient grid gets the physical U-Net's levels 1..L-1 (widths ``base * mults[1:]``, attention
    at the same lowest resolution); with the same U-Net, the ``2^{d+1}`` sub-bands of every field share
    the ``base`` channels of level 0 on ``2^{-(d+1)}`` as many feature-map entries (issue 9; forced
    Burgers, cpu grid, 150 steps: MSE x0.52-0.54 on two seeds for x1.4 the CPU cost). ``cfg_kw``:
    ``base_channels`` / ``channel_mults`` of a :class:`sciflow.models.wavelet_diffusion.Config` (its
    defaults where absent); returns the overrides, ``{}`` where ``channel_mults`` has one level or
    ``mults[1]`` does not divide the later ones (no such U-Net)."""
    from sciflow.models.wavelet_diffusion import Config

    mults = tuple(cfg_kw.get("channel_mults", Config.channel_mults))
    base = int(cfg_kw.get("base_channels", Config.base_channels))
    if len(mults) < 2 or any(m % mults[1] for m in mults[1:]):
        return {}
    return {"base_channels": base * mults[1], "channel_mults": tuple(m // mults[1] for m in mults[1:])}
