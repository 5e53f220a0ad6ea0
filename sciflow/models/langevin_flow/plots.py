"""Figures for latent models of spiking populations (matplotlib, imported lazily).

* :func:`plot_latents_3d`: latent trajectories ``(trial, time, ≥3)`` in 3-D (first three axes, or
  any three chosen), e.g. :meth:`LangevinFlow.latents` beside the true Lorenz state.
* :func:`plot_rates`: inferred vs true rates of a few neurons over time for one trial.
* :func:`plot_raster`: spike raster of one trial with the predicted rates overlaid per neuron.

Each returns the ``matplotlib.figure.Figure``; nothing is shown or saved.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _np(x: Tensor):
    return x.detach().cpu().double().numpy()


def plot_latents_3d(latents: Tensor, *, dims: Sequence[int] = (0, 1, 2), max_trials: int = 10, title: str = ""):
    """3-D line per trial of ``latents (trial, time, latent)`` along ``dims``."""
    import matplotlib.pyplot as plt

    if latents.ndim != 3 or latents.shape[-1] < 3 or len(dims) != 3 or max(dims) >= latents.shape[-1]:
        raise ValueError(f"latents must be (trial, time, latent>=3) and dims three valid axes, got "
                         f"{tuple(latents.shape)} and {tuple(dims)}")
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    for z in _np(latents[:max_trials]):
        ax.plot(z[:, dims[0]], z[:, dims[1]], z[:, dims[2]], lw=0.8)
    ax.set_xlabel(f"z{dims[0]}"), ax.set_ylabel(f"z{dims[1]}"), ax.set_zlabel(f"z{dims[2]}")
    ax.set_title(title)
    return fig


def plot_rates(pred: Tensor, true: Tensor, *, trial: int = 0, neurons: Sequence[int] = (0, 1, 2, 3),
               bin_width: float = 1.0):
    """Inferred (solid) vs true (dashed) rates ``(trial, time, neuron)`` for a few neurons."""
    import matplotlib.pyplot as plt

    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"pred and true must both be (trial, time, neuron), got {tuple(pred.shape)}, "
                         f"{tuple(true.shape)}")
    fig, axes = plt.subplots(len(neurons), 1, figsize=(6, 1.4 * len(neurons)), sharex=True, squeeze=False)
    t = [i * bin_width for i in range(pred.shape[1])]
    for ax, n in zip(axes[:, 0], neurons):
        ax.plot(t, _np(pred[trial, :, n]), label="inferred")
        ax.plot(t, _np(true[trial, :, n]), "--", label="true")
        ax.set_ylabel(f"n{n}")
    axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time")
    return fig


def plot_raster(counts: Tensor, rates: Tensor, *, trial: int = 0):
    """Raster of ``counts (trial, time, neuron)`` (one dot per bin with spikes) with the predicted
    ``rates`` of each neuron drawn on its row (scaled to the row height)."""
    import matplotlib.pyplot as plt

    if counts.shape != rates.shape or counts.ndim != 3:
        raise ValueError(f"counts and rates must both be (trial, time, neuron), got {tuple(counts.shape)}, "
                         f"{tuple(rates.shape)}")
    c, r = _np(counts[trial]), _np(rates[trial])
    T, N = c.shape
    fig, ax = plt.subplots(figsize=(6, 0.15 * N + 1.5))
    scale = 0.8 / max(float(r.max()), 1e-12)
    for n in range(N):
        ax.plot(range(T), n + scale * r[:, n], color="C1", lw=0.8)
    tt, nn = torch.nonzero(counts[trial] > 0, as_tuple=True)
    ax.scatter(_np(tt), _np(nn) + 0.4, s=4, color="k", marker="|")
    ax.set_xlabel("bin"), ax.set_ylabel("neuron")
    return fig
