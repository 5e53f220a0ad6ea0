"""Encoder and decoder networks of the sequential VAEs.

* :class:`GRUEncoder`: a bidirectional GRU over the (held-in) observations ``x (batch, time, n_in)``
  giving per-step features ``h (batch, time, 2H)`` and the parameters of the diagonal Gaussian
  posterior ``q(s_0 | x)`` of the initial latent state from the two final hidden states
  (LFADS, Pandarinath et al. 2018; LangevinFlow's "recurrent encoder", Song et al. 2025 §3).
* :class:`TransformerReadout`: LangevinFlow's decoder, one Transformer encoder layer
  (Vaswani et al. 2017) over the per-step tokens ``[z_t, v_t, h_t]`` with sinusoidal positions,
  giving per-step features ``(batch, time, d_model)``; the model's linear readout maps them to
  the likelihood parameters.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn


class GRUEncoder(nn.Module):
    """``forward(x) -> (h (B,T,2H), mean (B,S), logvar (B,S))`` with ``S = state_dim``."""

    def __init__(self, n_in: int, hidden: int, state_dim: int) -> None:
        super().__init__()
        self.n_in = n_in
        self.gru = nn.GRU(n_in, hidden, batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(2 * hidden, 2 * state_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.n_in:
            raise ValueError(f"encoder expects (batch, time, {self.n_in}), got {tuple(x.shape)}")
        h, last = self.gru(x)  # last: (2, B, H) forward/backward final states
        mean, logvar = self.to_posterior(torch.cat([last[0], last[1]], -1)).chunk(2, -1)
        return h, mean, logvar.clamp(-10.0, 5.0)


def sinusoidal_positions(n_time: int, d_model: int, device=None, dtype=None) -> Tensor:
    """Vaswani et al. (2017) §3.5 positional encoding ``(n_time, d_model)``."""
    pos = torch.arange(n_time, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
    angle = pos / (10000.0 ** (i / d_model))
    pe = torch.zeros(n_time, d_model, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.to(dtype or torch.float32)


class TransformerReadout(nn.Module):
    """One Transformer layer over tokens ``(B, T, n_token)`` giving features ``(B, T, d_model)``."""

    def __init__(self, n_token: int, d_model: int, n_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(n_token, d_model)
        self.layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True,
                                                norm_first=True)
        self.d_model = d_model

    def forward(self, tokens: Tensor) -> Tensor:
        T = tokens.shape[1]
        x = self.embed(tokens) + sinusoidal_positions(T, self.d_model, tokens.device, tokens.dtype)
        return self.layer(x)
