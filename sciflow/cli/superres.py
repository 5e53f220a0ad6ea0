"""``sciflow evaluate`` for a super-resolution WDNO run (``model.name: wdno_superres``; trained by the
ordinary ``sciflow train`` on the fine trajectories, ``data.variables`` stacked on a channel axis).

The test trajectories are subsampled by ``factor = 2**levels`` in time and space (the resolutions
the model was trained to bridge) and upsampled back by the model, ``eval.n_samples`` independent
chains. Scored per channel (``data.variables``) against the fine truth, as
``benchmarks/wdno_burgers.py`` does: MSE and relative L2 of the sample mean over the whole fine
grid (its coarse points are kept exactly; ``mse_one_sample``: of a single chain, what the benchmark
reports), the same for nearest-neighbour and multilinear
interpolation of the coarse copy (the baselines a model has to beat), and, on the new points only
(the coarse ones have no uncertainty), the CRPS of the samples, the coverage and mean width of their
central ``1 - eval.alpha`` interval. Writes ``eval_samples.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sciflow.cli.pipeline import Splits, load_trained
from sciflow.config import ConfigError, ExperimentConfig


def is_superres(exp: ExperimentConfig) -> bool:
    return exp.model.name == "wdno_superres"


def _new_points(shape: tuple[int, ...], factor: int) -> torch.Tensor:
    """Bool mask over a fine ``(time, *space)`` grid: True where the point is not on the coarse grid."""
    on = torch.ones((), dtype=torch.bool)
    for n in shape:
        on = on.unsqueeze(-1) & (torch.arange(n) % factor == 0)
    return ~on


def evaluate_superres(exp: ExperimentConfig, run_dir: Path, kind: str, splits: Splits) -> dict[str, Any]:
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.models.neural_operator import relative_l2
    from sciflow.models.wavelet_diffusion.superres import interpolate, nearest
    from sciflow.uq import scores

    if kind != "samples":
        raise ConfigError(f"--uq {kind}: super-resolution is scored from the model's own samples (each refines "
                          "the coarse copy independently); use --uq samples")
    model = load_trained(exp, run_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    factor = 2 ** model.cfg.levels
    fine, times = splits.test.values, splits.test.times
    has_channels = fine.ndim == 3 + model.cfg.dim
    space = tuple(range(3 if has_channels else 2, fine.ndim))
    bad = [n for n in (fine.shape[1], *(fine.shape[a] for a in space)) if (n - 1) % factor]
    if bad:
        raise ConfigError(f"the test trajectories {tuple(fine.shape[1:])} cannot be subsampled by {factor} "
                          f"(2**levels): every time and space length must be factor * n + 1")
    idx = [slice(None), slice(None, None, factor)] + [slice(None, None, factor) if a in space else slice(None)
                                                      for a in range(2, fine.ndim)]
    coarse = fine[tuple(idx)]
    g = torch.Generator(device).manual_seed(exp.train.seed)
    samples = model.upsample(TrajectoryBatch(coarse, times[..., ::factor]).to(device), factor, exp.eval.n_samples,
                             generator=g).cpu()  # (n, B, T, [C,] *S)
    as_fields = (lambda x: x.movedim(2, 1)) if has_channels else (lambda x: x[:, None])  # (B, C, T, *S)
    coarse_f, grid = as_fields(coarse), (fine.shape[1], *(fine.shape[a] for a in space))
    baselines = {"nearest": nearest(coarse_f, grid), "multilinear": interpolate(coarse_f, grid)}
    names = list(exp.data.variables or [exp.data.variable or "state"])
    new = _new_points(grid, factor)
    a = exp.eval.alpha
    out: dict[str, Any] = {"uq": kind, "n_test": len(fine), "factor": factor, "n_samples": exp.eval.n_samples,
                           "coarse_grid": list(coarse_f.shape[2:]), "fine_grid": list(grid),
                           "nominal_coverage": 1 - a, "channels": {}}
    truth_f, samp_f = as_fields(fine), torch.stack([as_fields(s) for s in samples])  # (n, B, C, T, *S)
    for c, name in enumerate(names):
        y, s = truth_f[:, c], samp_f[:, :, c]
        mean = s.mean(0)
        ch: dict[str, Any] = {"mse": float((mean - y).pow(2).mean()), "rel_l2": float(relative_l2(mean, y)),
                              "mse_one_sample": float((s - y).pow(2).mean())}
        for key, base in baselines.items():
            ch[key] = {"mse": float((base[:, c] - y).pow(2).mean()), "rel_l2": float(relative_l2(base[:, c], y))}
        ch["ratio_mse_to_multilinear"] = ch["mse"] / ch["multilinear"]["mse"]
        sn, yn = s[:, :, new], y[:, new]  # the new points only
        lo, hi = torch.quantile(sn, a / 2, dim=0), torch.quantile(sn, 1 - a / 2, dim=0)
        ch.update({"new_points": int(new.sum()), "crps_new": float(scores.crps_ensemble(sn, yn).mean()),
                   "coverage_new": float(scores.interval_coverage(lo, hi, yn)),
                   "mean_interval_width_new": float((hi - lo).mean())})
        out["channels"][name] = ch
    first = out["channels"][names[0]]
    out.update({"mse": first["mse"], "ratio_mse_to_multilinear": first["ratio_mse_to_multilinear"],
                "coverage": first["coverage_new"]})
    return out
