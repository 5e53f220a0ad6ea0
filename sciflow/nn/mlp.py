"""Multilayer perceptron with Glorot (Xavier) initialisation."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    """Activation module by name; an unknown name raises listing the allowed ones."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(_ACTIVATIONS)}") from None


class MLP(nn.Module):
    """``in_features -> [width]*depth -> out_features`` with an activation between layers.

    Glorot-normal weights and zero biases (Glorot & Bengio 2010), the PINN literature's default.
    ``dropout`` > 0 inserts dropout after every hidden activation (MC dropout uses it).
    Acts on the last axis: input ``(*batch, in_features)`` -> ``(*batch, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 64,
        depth: int = 3,
        activation_name: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLP depth must be >= 1, got {depth}")
        if min(in_features, out_features, width) < 1:
            raise ValueError(f"MLP sizes must be >= 1, got in_features={in_features}, out_features={out_features}, "
                             f"width={width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), activation(activation_name)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = width
        layers.append(nn.Linear(d, out_features))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
