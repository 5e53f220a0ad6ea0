"""Input embeddings for coordinate networks: random Fourier features and exact periodic embeddings.

- :class:`FourierFeatures` — Tancik et al. (2020), "Fourier features let networks learn high
  frequency functions in low dimensional domains", eq. (5); for PINNs Wang, Wang & Perdikaris
  (2021), "On the eigenvector bias of Fourier feature networks":
  ``gamma(x) = [cos(B x), sin(B x)]`` with ``B_ij ~ N(0, scale^2)``, fixed or trainable.
- :class:`PeriodicEmbedding` — Dong & Ni (2021); Wang, Sankaran & Perdikaris (2022), "Respecting
  causality ...", section 4: a coordinate ``x`` with period ``P`` is replaced by
  ``(1, cos(k w x), sin(k w x))_{k=1..K}`` with ``w = 2 pi / P``, so any network on top is
  exactly ``P``-periodic in ``x`` (to machine precision, not approximately).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


class FourierFeatures(nn.Module):
    """``(*batch, in_features) -> (*batch, 2 * n_features)``: ``[cos(x B^T), sin(x B^T)]``.

    ``B`` is ``(n_features, in_features)`` with i.i.d. ``N(0, scale^2)`` entries, drawn from
    ``generator``; ``trainable=True`` makes it a parameter (otherwise a buffer).
    """

    def __init__(self, in_features: int, n_features: int, scale: float = 1.0, *,
                 trainable: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if in_features < 1 or n_features < 1:
            raise ValueError(f"FourierFeatures needs positive sizes, got ({in_features}, {n_features})")
        if not scale > 0:
            raise ValueError(f"FourierFeatures scale must be > 0, got {scale}")
        b = torch.randn(n_features, in_features, generator=generator) * scale
        if trainable:
            self.B = nn.Parameter(b)
        else:
            self.register_buffer("B", b)
        self.in_features, self.n_features = in_features, n_features

    @property
    def out_features(self) -> int:
        return 2 * self.n_features

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.B.T
        return torch.cat([torch.cos(z), torch.sin(z)], dim=-1)


class PeriodicEmbedding(nn.Module):
    """Exact periodic embedding of selected input coordinates.

    Input ``(*batch, in_features)``; the coordinates listed in ``axes`` (with ``periods``) are
    replaced by ``cos(k w x), sin(k w x)`` for ``k = 1..n_harmonics``, the other coordinates pass
    through unchanged, and one constant ``1`` feature is appended (as in the official code).
    Output order: ``[passthrough coords, 1, cos/sin of axis 0 (k=1..K), cos/sin of axis 1, ...]``.
    """

    def __init__(self, in_features: int, axes: Sequence[int], periods: Sequence[float],
                 n_harmonics: int = 1) -> None:
        super().__init__()
        axes, periods = list(axes), [float(p) for p in periods]
        if len(axes) != len(periods) or not axes:
            raise ValueError(f"PeriodicEmbedding: need one period per axis, got axes={axes}, periods={periods}")
        if any(not 0 <= a < in_features for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"PeriodicEmbedding: axes {axes} must be distinct indices < {in_features}")
        if any(p <= 0 for p in periods):
            raise ValueError(f"PeriodicEmbedding: periods must be > 0, got {periods}")
        if n_harmonics < 1:
            raise ValueError(f"PeriodicEmbedding: n_harmonics must be >= 1, got {n_harmonics}")
        self.in_features, self.axes, self.periods, self.n_harmonics = in_features, axes, periods, n_harmonics
        self.passthrough = [i for i in range(in_features) if i not in axes]
        # frequencies k * 2 pi / P are built in the working dtype from Python floats (cached per
        # dtype/device): a float32 buffer cast to float64 would break exact periodicity
        self._rows = [(a, k * 2 * math.pi / p) for a, p in zip(axes, periods)
                      for k in range(1, n_harmonics + 1)]
        self._cache: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def frequencies(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The ``(len(axes) * K, in_features)`` frequency matrix ``F`` (``z = x F^T``)."""
        key = (dtype, device)
        f = self._cache.get(key)
        if f is None:
            f = torch.zeros(len(self._rows), self.in_features, dtype=torch.float64)
            for r, (a, w) in enumerate(self._rows):
                f[r, a] = w
            f = self._cache[key] = f.to(device=device, dtype=dtype)
        return f

    @property
    def out_features(self) -> int:
        return len(self.passthrough) + 1 + 2 * len(self.axes) * self.n_harmonics

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"PeriodicEmbedding expects {self.in_features} features, got {x.shape[-1]}")
        z = x @ self.frequencies(x.dtype, x.device).T
        ones = torch.ones_like(x[..., :1])
        return torch.cat([x[..., self.passthrough], ones, torch.cos(z), torch.sin(z)], dim=-1)
