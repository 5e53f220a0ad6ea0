"""Random weight factorisation (RWF) of a dense layer.

Wang, Wang, Seidman & Perdikaris (2022), "Random weight factorization improves the training of
continuous neural representations", arXiv:2210.01274, eq. (3.1)-(3.3): every dense kernel is
written as

    W = diag(exp(s)) V,    s ~ N(mu, sigma^2) per output neuron,    V = W_glorot / exp(s),

so at initialisation ``W`` equals a Glorot-normal kernel exactly, while gradient descent acts on
``(s, V)``; the per-neuron scale ``exp(s)`` gets its own effective learning rate. The paper's
default is ``mu = 1.0``, ``sigma = 0.1`` (the values jaxpi uses for every PINN benchmark).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FactorizedLinear(nn.Module):
    """``y = x (diag(exp(s)) V)^T + b`` acting on the last axis: ``(*batch, in) -> (*batch, out)``.

    ``weight`` (the effective kernel ``(out, in)``) is a property, so the layer is a drop-in
    replacement for :class:`torch.nn.Linear` wherever only the kernel is read.
    """

    def __init__(self, in_features: int, out_features: int, *, mean: float = 1.0,
                 std: float = 0.1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"FactorizedLinear needs positive sizes, got ({in_features}, {out_features})")
        if std < 0:
            raise ValueError(f"FactorizedLinear std must be >= 0, got {std}")
        self.in_features, self.out_features = in_features, out_features
        glorot = math.sqrt(2.0 / (in_features + out_features))
        w = torch.randn(out_features, in_features, generator=generator) * glorot
        s = mean + std * torch.randn(out_features, generator=generator)
        self.s = nn.Parameter(s)
        self.v = nn.Parameter(w / torch.exp(s)[:, None])
        self.bias = nn.Parameter(torch.zeros(out_features))

    @property
    def weight(self) -> Tensor:
        return torch.exp(self.s)[:, None] * self.v

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def dense(in_features: int, out_features: int, *, factorized: bool = False,
          generator: torch.Generator | None = None) -> nn.Module:
    """A Glorot-normal dense layer with zero bias, optionally random-weight-factorised."""
    if factorized:
        return FactorizedLinear(in_features, out_features, generator=generator)
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        std = math.sqrt(2.0 / (in_features + out_features))
        layer.weight.copy_(torch.randn(out_features, in_features, generator=generator) * std)
        layer.bias.zero_()
    return layer
