"""``Config`` of :class:`~sciflow.models.neural_ode.NeuralODE`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices


@dataclass(frozen=True)
class Config:
    """A neural ODE ``dz/dt = f_θ(z[, t])`` on the normalised state ``z = (y - loc) / scale``.

    ``state_dim``: product of the state shape (3 for Lorenz-63). ``width``/``depth``/
    ``activation``: the MLP ``f_θ``; ``dropout`` > 0 enables MC-dropout samples.
    ``solver``: a key of ``sciflow.solvers.registry.SOLVERS``; fixed-step solvers take
    ``steps_per_interval`` steps between consecutive observation times, adaptive ones use
    ``rtol``/``atol``. ``adjoint``: how gradients flow through the solve (``direct``
    backpropagation, the ``backsolve`` continuous adjoint of Chen et al. 2018 — with
    ``backsolve-seminorm`` its backward steps sized by the state and adjoint errors only, Kidger,
    Chen & Lyons 2021 — or ``checkpoint``-ed recomputation).
    """

    state_dim: int = 3
    width: int = 64
    depth: int = 2
    activation: Literal["tanh", "gelu", "silu", "relu", "softplus"] = "tanh"
    time_dependent: bool = False
    dropout: float = 0.0
    solver: Literal["euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5"] = "rk4"
    steps_per_interval: int = 1
    rtol: float = 1e-5
    atol: float = 1e-6
    adjoint: Literal["direct", "backsolve", "backsolve-seminorm", "checkpoint"] = "direct"

    def __post_init__(self) -> None:
        if self.state_dim < 1 or self.width < 1 or self.depth < 1:
            raise ValueError("state_dim, width and depth must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.steps_per_interval < 1:
            raise ValueError(f"steps_per_interval must be >= 1, got {self.steps_per_interval}")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got rtol={self.rtol}, atol={self.atol}")
        check_choices(self)
