"""The conditional vector field ``v_t(x | c)`` of meta flow matching.

Atanackovic et al., ICLR 2025, Sec. 4.1 / official code: an MLP over the concatenation
``[c, gamma(t), cos(x B^T), sin(x B^T), x]`` where ``c`` is the condition (population embedding,
one-hot id, or nothing), ``gamma`` the transformer sinusoidal embedding of t (Vaswani et al.
2017, Sec. 3.5, applied to t in [0, 1] without rescaling, as the official code) and ``B`` fixed
random Fourier features (Tancik et al. 2020).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sciflow.nn.fourier import FourierFeatures
from sciflow.nn.mlp import MLP


def sinusoidal_time_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``(*shape) -> (*shape, dim)``: ``[sin(t w_i), cos(t w_i)]``, ``w_i = max_period^{-i/(dim/2-1)}``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / max(half - 1, 1)
                      * torch.arange(half, device=t.device, dtype=t.dtype))
    arg = t[..., None] * freqs
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ConditionalVectorField(nn.Module):
    """``v(t, x, c)``: ``t`` scalar or broadcastable to ``x[..., 0]``; ``x (batch, n, dim)``;
    ``c (batch, cond)`` -> ``(batch, n, dim)``."""

    def __init__(self, dim: int, cond_features: int, *, width: int, depth: int, activation: str,
                 time_embedding_dim: int, fourier_features: int, fourier_scale: float,
                 fourier_seed: int = 0) -> None:
        super().__init__()
        self.dim, self.cond_features, self.time_embedding_dim = dim, cond_features, time_embedding_dim
        gen = torch.Generator().manual_seed(fourier_seed)
        self.fourier = FourierFeatures(dim, fourier_features, fourier_scale, generator=gen)
        in_features = cond_features + time_embedding_dim + self.fourier.out_features + dim
        self.mlp = MLP(in_features, dim, width=width, depth=depth, activation_name=activation)

    def forward(self, t: Tensor, x: Tensor, c: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"vector field: x must be (batch, n, {self.dim}), got {tuple(x.shape)}")
        if c.shape != (x.shape[0], self.cond_features):
            raise ValueError(f"vector field: condition must be ({x.shape[0]}, {self.cond_features}), "
                             f"got {tuple(c.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        parts = [c[:, None, :].expand(-1, x.shape[1], -1),
                 sinusoidal_time_embedding(t, self.time_embedding_dim),
                 self.fourier(x), x]
        return self.mlp(torch.cat(parts, dim=-1))
