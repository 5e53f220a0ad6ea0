r"""Multi-resolution WDNO: a diffusion model that refines a trajectory by ×2 per application
(Hu et al., "Wavelet Diffusion Neural Operator", ICLR 2025, Sec. 3.4 "multi-resolution training").

With ``v`` a fine trajectory of ``2n - 1`` points per axis (time and space; a dyadic refinement
keeping the coarse points, ``v[::2] = v_c``) and ``v_c`` its coarse copy of ``n`` points, the model
generates one-level coefficients conditioned on the coarse trajectory, stacked as channels:

.. math::

    z_0 = \mathrm{pad}\big(S\,[\,W (v - I v_c),\; W I v_c\,]\big), \qquad
    \text{known} = \text{the second group and the padding},

with ``I`` the multilinear endpoint-aligned interpolation onto the fine grid (:func:`interpolate`),
trained with the same ε-prediction loss and replacement as :class:`~sciflow.models.wavelet_diffusion.WDNO`
on subsampled copies of the training data (pairs ``(x[::2**l], x[::2**(l+1)])``, ``l < levels``),
so one convolutional U-Net serves every resolution. The output is ``W^{-1}`` of the sum of both
groups with the coarse points written back exactly. Applied ``k`` times it gives ×``2**k``
output (:meth:`WDNOSuperResolution.upsample`). ``space="physical"``: the same model on the raw fields.

Deviations: ``residual=False`` is the paper's layout — ``W v`` generated next to the
nearest-neighbour upsampled coarse coefficients :math:`\uparrow_2 W v_c`
(:func:`~sciflow.models.wavelet_diffusion.transform.nearest_upsample`); it has to learn the
interpolation itself (and in ``zero`` mode the boundary coefficients shift ``↑_2 W v_c`` against
``W v``): on 4 Burgers training pairs after 150 steps it scored MSE 8.4e-3 against bilinear
1.7e-4, the residual model 4.2e-5. The residual target makes an untrained refiner already as good
as the interpolant up to a detail of the data's own size. The official code conditions on one
fixed padded grid (64 x 64) and repeats the last time step for odd lengths; here grids are any
``2n - 1`` and the coefficient grids are padded to the U-Net's multiple.

Batches: ``TrajectoryBatch.values`` ``(B, T, *S)`` (one channel) or ``(B, T, C, *S)`` with every
field to refine on the channel axis (e.g. state and forcing). For :meth:`loss` these are fine
trajectories (odd lengths); for :meth:`sample` / :meth:`upsample` the coarse ones.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.wavelet_diffusion._common import (Denoiser, clipped, from_fields, make_schedule,
                                                      make_unet, replacement_loss, replacement_sample, scale_groups,
                                                      to_fields)
from sciflow.models.wavelet_diffusion.config import SuperResolutionConfig
from sciflow.models.wavelet_diffusion.transform import (ChannelScaler, coefficient_shape, crop, from_coefficients,
                                                        nearest_upsample, pad_to_multiple, to_coefficients)
from sciflow.solvers.generative import DiffusionSampler

__all__ = ["WDNOSuperResolution", "interpolate", "nearest", "refined_shape", "subsample"]


def subsample(fields: Tensor, level: int, axes: int) -> Tensor:
    """``fields[..., ::2**level, ...]`` along each of the last ``axes`` axes."""
    step = 2**level
    idx = (slice(None),) * (fields.ndim - axes) + (slice(None, None, step),) * axes
    return fields[idx]


def interpolate(coarse: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Multilinear (endpoint-aligned) interpolation of ``coarse (B, C, *grid)`` onto ``shape`` (``2 n - 1``
    per axis: the coarse points are kept, the new ones are averages of their neighbours)."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    return F.interpolate(coarse, size=shape, mode=mode, align_corners=True)


def nearest(coarse: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Endpoint-aligned nearest-neighbour copy of ``coarse (B, C, *grid)`` onto ``shape``: fine point
    ``i`` takes coarse point ``round(i (n_c - 1) / (n_f - 1))`` per axis (the baseline of no model)."""
    out = coarse
    for axis, n in enumerate(shape):
        n_c = coarse.shape[2 + axis]
        idx = torch.round(torch.arange(n, device=coarse.device) * (n_c - 1) / max(n - 1, 1)).long()
        out = out.index_select(2 + axis, idx)
    return out


def refined_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Grid ``2 n - 1`` per axis of one ×2 refinement of ``n`` points."""
    return tuple(2 * n - 1 for n in shape)


class WDNOSuperResolution(SciflowModel):
    """Super-resolution WDNO (see module docstring). ``sample(batch, n)`` refines ``batch.values`` once:
    ``(B, T, [C,] *S)`` -> ``(n, B, 2T - 1, [C,] *(2S - 1))``; ``upsample(values, factor)`` repeats it."""

    stochastic: ClassVar[bool] = True
    batch_type: ClassVar[type] = TrajectoryBatch
    config_class: ClassVar[type] = SuperResolutionConfig

    def __init__(self, cfg: SuperResolutionConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SuperResolutionConfig()
        self.axes = cfg.dim + 1
        self.wavelet = cfg.wavelet if cfg.space == "wavelet" else None
        self.n_fine = cfg.channels * (2**self.axes if self.wavelet else 1)
        self.n_total = 2 * self.n_fine
        self.multiple = 2 ** (len(cfg.channel_mults) - 1)
        self.schedule = make_schedule(cfg.schedule)
        self.scaler = ChannelScaler(self.n_total)
        self.denoiser = Denoiser(make_unet(cfg, self.n_total), self.schedule, cfg.prediction)
        self._fitted = False

    # ------------------------------------------------------------------ representation
    def _condition(self, coarse: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The condition group from ``coarse (B, C, *grid_c)`` on the coefficient grid of ``shape``:
        ``W I(v_c)`` (``residual``) or the nearest-upsampled ``↑_2 W v_c`` (the paper)."""
        if self.cfg.residual:
            return to_coefficients(interpolate(coarse, shape), self.axes, self.wavelet, self.cfg.mode)
        grid = coefficient_shape(shape, self.wavelet, self.cfg.mode)
        return nearest_upsample(to_coefficients(coarse, self.axes, self.wavelet, self.cfg.mode), grid)

    def _stack(self, fine: Tensor, coarse: Tensor) -> Tensor:
        shape = tuple(fine.shape[2:])
        target = fine - interpolate(coarse, shape) if self.cfg.residual else fine
        return torch.cat([to_coefficients(target, self.axes, self.wavelet, self.cfg.mode),
                          self._condition(coarse, shape)], 1)

    def known_mask(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        """Bool ``(1, n_total, *padded_grid)``: the coarse-condition group and the padding are given."""
        grid = coefficient_shape(shape, self.wavelet, self.cfg.mode)
        padded = tuple(n + (-n) % self.multiple for n in grid)
        inside = torch.zeros(padded, dtype=torch.bool, device=device)
        inside[tuple(slice(0, n) for n in grid)] = True
        known = (~inside).expand(self.n_total, *padded).clone()
        known[self.n_fine:] = True
        return known.unsqueeze(0)

    def _pairs(self, fields: Tensor) -> list[tuple[Tensor, Tensor]]:
        pairs = []
        for level in range(self.cfg.levels):
            fine = subsample(fields, level, self.axes)
            coarse = subsample(fine, 1, self.axes)
            if min(coarse.shape[2:]) < 2:
                raise ValueError(f"WDNOSuperResolution(levels={self.cfg.levels}): grid {tuple(fields.shape[2:])} is "
                                 f"too small for level {level} (coarse grid {tuple(coarse.shape[2:])})")
            pairs.append((fine, coarse))
        return pairs

    def _fine_fields(self, batch: TrajectoryBatch, check_finite: bool = True) -> tuple[Tensor, bool]:
        self.check_batch(batch)
        fields, has_axis = to_fields(batch.values, self.cfg.channels, self.cfg.dim, "TrajectoryBatch.values",
                                     check_finite)
        bad = [n for n in fields.shape[2:] if n % 2 == 0]
        if bad:
            raise ValueError(f"WDNOSuperResolution trains on grids of odd length 2n - 1 per axis (fine[::2] is the "
                             f"coarse grid), got {tuple(fields.shape[2:])}")
        return fields.to(self.scaler.loc), has_axis

    @torch.no_grad()
    def fit_scaler(self, batch: TrajectoryBatch) -> None:
        """Per-channel (or per-field, ``scaling="field"``) statistics pooled over the training levels (buffers)."""
        fields, _ = self._fine_fields(batch)
        self.scaler.fit([self._stack(f, c) for f, c in self._pairs(fields)],
                        scale_groups(self.cfg, self.n_total, 2**self.axes if self.wavelet else 1))
        self._fitted = True

    def _check_fitted(self) -> None:
        if not self._fitted:
            self._fitted = bool(self.scaler.fitted)
            if not self._fitted:
                raise RuntimeError("WDNOSuperResolution: call fit_scaler(train_batch) first (or load a checkpoint)")

    # ------------------------------------------------------------------ protocol
    def loss(self, batch: TrajectoryBatch, *, generator: torch.Generator | None = None) -> LossOutput:
        """Mean over the ``levels`` subsampled copies of the replacement ε-loss."""
        self._check_fitted()
        fields, _ = self._fine_fields(batch, check_finite=False)
        terms, total = {}, 0.0
        for level, (fine, coarse) in enumerate(self._pairs(fields)):
            z0 = pad_to_multiple(self.scaler(self._stack(fine, coarse)), self.multiple, self.axes)
            known = self.known_mask(tuple(fine.shape[2:]), z0.device)
            mse = replacement_loss(self.denoiser, self.schedule, z0, known, self.cfg.replacement, self.cfg.t_min,
                                   generator)
            terms[f"eps_mse_level{level}"] = mse.detach()
            total = total + mse
        return LossOutput(total / self.cfg.levels, terms)

    @torch.no_grad()
    def refine(self, coarse: Tensor, n_samples: int = 1, *, sampler: str | DiffusionSampler = "ddim", nfe: int = 50,
               generator: torch.Generator | None = None) -> Tensor:
        """One ×2 refinement of fields ``coarse (B, C, *grid)`` -> ``(n_samples * B, C, *(2 grid - 1))``
        (sample-major: index ``s * B + b``)."""
        self._check_fitted()
        shape = refined_shape(tuple(coarse.shape[2:]))
        grid = coefficient_shape(shape, self.wavelet, self.cfg.mode)
        cond = self.scaler(torch.cat([torch.zeros(coarse.shape[0], self.n_fine, *grid, dtype=coarse.dtype,
                                                  device=coarse.device), self._condition(coarse, shape)], 1))
        z_known = pad_to_multiple(cond, self.multiple, self.axes).repeat(n_samples, *([1] * (self.axes + 1)))
        known = self.known_mask(shape, coarse.device)
        eps_model = self.denoiser
        if self.cfg.clip_denoised is not None:
            eps_model = clipped(eps_model, self.schedule, self.cfg.clip_denoised * self.scaler.bound)
        z = replacement_sample(eps_model, self.schedule, known, z_known, replacement=self.cfg.replacement,
                               sampler=sampler, nfe=nfe, t_min=self.cfg.t_min, generator=generator)
        z = self.scaler.inverse(crop(z, grid))
        zf = z[:, : self.n_fine] + z[:, self.n_fine:] if self.cfg.residual else z[:, : self.n_fine]
        fine = from_coefficients(zf, self.cfg.channels, self.axes, self.wavelet, self.cfg.mode, shape)
        if self.cfg.residual:  # the refinement keeps the coarse points (fine[::2] = coarse) exactly
            idx = (slice(None),) * 2 + (slice(None, None, 2),) * self.axes
            fine[idx] = coarse.repeat(n_samples, *([1] * (coarse.ndim - 1)))
        return fine

    @torch.no_grad()
    def upsample(self, batch: TrajectoryBatch, factor: int = 2, n_samples: int = 1, *,
                 sampler: str | DiffusionSampler = "ddim", nfe: int = 50,
                 generator: torch.Generator | None = None) -> Tensor:
        """×``factor`` (a power of 2) by repeated refinement: ``(n_samples, B, (T-1) factor + 1, [C,] ...)``.
        Each of the ``n_samples`` chains draws its own refinements."""
        if not isinstance(factor, int) or factor < 2 or factor & (factor - 1):
            raise ValueError(f"factor must be a power of 2 >= 2, got {factor!r}")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        self.check_batch(batch)
        x, has_axis = to_fields(batch.values, self.cfg.channels, self.cfg.dim, "TrajectoryBatch.values (coarse)")
        x = x.to(self.scaler.loc)
        b = x.shape[0]
        for k in range(factor.bit_length() - 1):
            x = self.refine(x, n_samples if k == 0 else 1, sampler=sampler, nfe=nfe, generator=generator)
        return from_fields(x, has_axis).unflatten(0, (n_samples, b))

    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *, generator: torch.Generator | None = None,
               sampler: str | DiffusionSampler = "ddim", nfe: int = 50) -> Tensor:
        """One ×2 refinement of ``batch.values``: ``(n_samples, B, 2T - 1, [C,] *(2S - 1))``."""
        return self.upsample(batch, 2, n_samples, sampler=sampler, nfe=nfe, generator=generator)
