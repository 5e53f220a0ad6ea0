"""Replacement conditioning hooks: overwrite the known part of the state after every step.

For inpainting-style conditioning (Song et al. 2021, App. I.2; WDNO, Hu et al. 2025, §3.3, which
conditions on the known initial frames / low-resolution coefficients in the wavelet domain): after
each sampler step to time ``t``, the entries where ``mask`` is true are replaced by a sample of the
forward process at ``t`` started from the known values, so the unknown part is generated
consistently with them. At the final time they are (nearly) the known values themselves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sciflow.solvers.generative.schedules import NoiseSchedule


class DiffusionReplacement:
    """``x ← where(mask, α_t x_known + σ_t ξ, x)`` for a diffusion schedule.

    ``mask`` and ``known`` broadcast against ``x``'s shape ``(batch, *data)``; ``ξ`` is fresh
    Gaussian noise from ``generator`` (``fixed_noise`` reuses one draw for all steps instead).
    """

    def __init__(self, mask: Tensor, known: Tensor, schedule: NoiseSchedule, *,
                 generator: torch.Generator | None = None, fixed_noise: Tensor | None = None) -> None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
        torch.broadcast_shapes(mask.shape, known.shape)
        self.mask, self.known, self.schedule = mask, known, schedule
        self.generator, self.fixed_noise = generator, fixed_noise

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        a, s = self.schedule.coefficients(t, x)
        noise = self.fixed_noise if self.fixed_noise is not None else torch.randn(
            x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return torch.where(self.mask, a * self.known + s * noise, x)


class FlowReplacement:
    """``x ← where(mask, (1 - t) x_source + t x_known, x)``: the linear (rectified / OT) path of
    flow matching (Lipman et al. 2023, eq. 20 with σ_min = 0) through the known values."""

    def __init__(self, mask: Tensor, known: Tensor, source: Tensor) -> None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
        torch.broadcast_shapes(mask.shape, known.shape, source.shape)
        self.mask, self.known, self.source = mask, known, source

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        tt = t.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return torch.where(self.mask, (1 - tt) * self.source + tt * self.known, x)
