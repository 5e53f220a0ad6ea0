"""The solvers' working precision under ``torch.autocast``.

Autocast runs a vector field's matrix products and convolutions in bfloat16 (or float16). A state
that comes out of such a layer (a latent model's encoder) would then be integrated in that
precision: times, Brownian increments and every update ``y + h Σ b_i k_i`` rounded to 8 (bf16)
or 11 (fp16) significant bits, so that increments below ~2⁻⁸ of the state are lost and an
adaptive solver's error estimate (a difference of nearly equal stages) is rounding noise.
Mixed-precision training keeps such accumulations in float32 (Micikevicius et al., "Mixed
Precision Training", ICLR 2018, Sec. 3.1–3.3): under autocast the solvers integrate a half-precision
initial state in float32 and cast each half-precision vector-field evaluation to the state's dtype.
Outside autocast a half-precision state is the caller's explicit choice and is kept.

The solver's own arithmetic (stage combinations, dense-output matrix products, error norms) runs
with autocast switched off, so that a matrix product of the solver is not cast to bf16 as a layer
would be; the vector field is evaluated under the caller's autocast (:class:`AutocastField`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

HALF = (torch.float16, torch.bfloat16)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 had no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def working_state(y0: Tensor) -> Tensor:
    """``y0`` in float32 when it is half precision under autocast on its device, else ``y0``."""
    if isinstance(y0, Tensor) and y0.dtype in HALF and _autocast_on(y0.device.type):
        return y0.float()
    return y0


def in_state_dtype(out: Tensor, y: Tensor) -> Tensor:
    """A vector field's half-precision (autocast) output ``out`` in the state's dtype ``y.dtype``."""
    if isinstance(out, Tensor) and out.dtype in HALF and out.dtype != y.dtype and y.is_floating_point():
        return out.to(y.dtype)
    return out


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast casts to on ``device_type`` now, or ``None`` when autocast is off there."""
    if not _autocast_on(device_type):
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


class AutocastField(nn.Module):
    """``f(t, y)`` under ``torch.autocast(device_type, dtype)``, its half-precision output cast to
    the state's dtype. A module (``f`` a submodule when it is one), so that the adjoints still find
    ``f``'s parameters."""

    def __init__(self, f, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.f, self.device_type, self.dtype = f, device_type, dtype

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return in_state_dtype(self.f(t, y), y)
