"""The modified MLP of Wang, Teng & Perdikaris (2021).

"Understanding and mitigating gradient flow pathologies in physics-informed neural networks",
SIAM J. Sci. Comput. 43(5), eq. (43)-(47): two encoders of the input gate every hidden layer,

    U = s(X W_U + b_U),   V = s(X W_V + b_V)
    H_1 = s(X W_1 + b_1)
    Z_k = s(H_k W_{k+1} + b_{k+1}),     k = 1..L-1  (hidden-to-hidden layers)
    H_{k+1} = (1 - Z_k) * U + Z_k * V
    f(X) = H_L W_out + b_out

Deviation, stated: the official causal-PINN code (and jaxpi) applies the gate to *every* hidden
layer including the first, ``H_{k+1} = Z_k * U + (1 - Z_k) * V`` with ``Z_k = s(H_k W_k + b_k)``
and ``H_0 = X``; that is the paper's form with U and V swapped and one more gate. We follow the
code (``depth`` gated layers), which is what the published accuracies were obtained with.
Glorot-normal kernels, zero biases; optional random weight factorisation of every dense layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciflow.nn.factorized import dense
from sciflow.nn.mlp import activation


class ModifiedMLP(nn.Module):
    """``(*batch, in_features) -> (*batch, out_features)`` with ``depth`` gated hidden layers."""

    def __init__(self, in_features: int, out_features: int, width: int = 128, depth: int = 4,
                 activation_name: str = "tanh", *, factorized: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"ModifiedMLP depth must be >= 1, got {depth}")
        self.encoder_u = dense(in_features, width, factorized=factorized, generator=generator)
        self.encoder_v = dense(in_features, width, factorized=factorized, generator=generator)
        self.hidden = nn.ModuleList(
            dense(in_features if k == 0 else width, width, factorized=factorized, generator=generator)
            for k in range(depth)
        )
        self.output = dense(width, out_features, factorized=factorized, generator=generator)
        self.act = activation(activation_name)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        u = self.act(self.encoder_u(x))
        v = self.act(self.encoder_v(x))
        h = x
        for layer in self.hidden:
            z = self.act(layer(h))
            h = z * u + (1 - z) * v
        return self.output(h)
