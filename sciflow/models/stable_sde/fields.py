"""Drift and diffusion networks of the stable neural SDEs and of their baselines.

Notation of Oh, Lim & Kim (ICLR 2024, §3): latent ``z(t) ∈ R^d``, control path ``X(t)``, drift
``γ``, diffusion ``σ``. The drift does not see ``z`` alone but the *controlled* state (§3.2)

.. math::
    \\tilde z(t) = ζ(t, z(t), X(t)) = W_{mix} [\\, W_{in} (φ(t), z(t)) ,\\; W_X X(t) \\,] + b,
    \\qquad φ(t) = (\\sin t, \\cos t),

i.e. a linear map of the concatenation of a linear embedding of ``(φ(t), z)`` and a linear
embedding of the control value ``X(t)`` — what the official code does at every drift evaluation
(``input_option`` 2/4/6: ``emb(cat[linear_in(y), initial_network(X(t))])``). The LSDE's drift is
autonomous, so its ``W_in`` sees ``z`` only (no ``φ(t)``). Then ``γ = MLP(ReLU(z̃))``.

The diffusion of the stable classes depends on time only (§3.1):
``σ(t) = sigmoid(θ) · ReLU(MLP(φ(t)))`` (official ``noise_option`` 16/17: a two-layer network of
``(sin t, cos t)``, scaled by ``sigmoid(θ)``); the naive neural SDE's diffusion is
``sigmoid(θ) · ReLU(MLP(φ(t), z))`` (official ``noise_option`` 18).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciflow.nn.mlp import MLP


def time_features(t: Tensor, like: Tensor) -> Tensor:
    """``φ(t) = (sin t, cos t)`` broadcast to ``like``'s batch shape: ``(*batch, 2)``.

    ``t`` is 0-d (shared time) or has ``like``'s leading shape (per-sample time)."""
    t = t.to(like.dtype)
    if t.ndim == 0:
        t = t.expand(like.shape[:-1])
    else:
        t = t.reshape(like.shape[:-1])
    return torch.stack([torch.sin(t), torch.cos(t)], dim=-1)


def _body(width: int, out: int, num_layers: int) -> nn.Module:
    """``ReLU -> [Linear(width, width) -> ReLU] * (num_layers - 1) -> Linear(width, out)``."""
    if num_layers == 1:
        return nn.Sequential(nn.ReLU(), nn.Linear(width, out))
    return nn.Sequential(nn.ReLU(), MLP(width, out, width=width, depth=num_layers - 1, activation_name="relu"))


class ControlledDrift(nn.Module):
    """``γ(t, z̃)`` (or ``γ(z̃)`` when ``time_dependent=False``): ``(*batch, d)`` -> ``(*batch, d)``.

    ``forward(t, z, x)`` takes the control value ``x = X(t)`` of shape ``(*batch, path_channels)``.
    """

    def __init__(self, hidden_dim: int, path_channels: int, width: int, num_layers: int,
                 time_dependent: bool = True) -> None:
        super().__init__()
        self.time_dependent = time_dependent
        self.inp = nn.Linear(hidden_dim + (2 if time_dependent else 0), width)
        self.ctrl = nn.Linear(path_channels, width)
        self.mix = nn.Linear(2 * width, width)
        self.body = _body(width, hidden_dim, num_layers)

    def controlled_state(self, t: Tensor, z: Tensor, x: Tensor) -> Tensor:
        """``z̃ = ζ(t, z, X(t))`` of shape ``(*batch, width)``."""
        h = torch.cat([time_features(t, z), z], -1) if self.time_dependent else z
        return self.mix(torch.cat([self.inp(h), self.ctrl(x)], -1))

    def forward(self, t: Tensor, z: Tensor, x: Tensor) -> Tensor:
        return self.body(self.controlled_state(t, z, x))


class TimeDiffusion(nn.Module):
    """``σ(t) = sigmoid(θ) · ReLU(MLP(sin t, cos t))`` of shape ``(*batch, d)`` (state-independent)."""

    def __init__(self, hidden_dim: int, width: int, theta: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, hidden_dim))
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``z`` only supplies the batch shape and dtype; the value does not depend on it."""
        return torch.sigmoid(self.theta) * torch.relu(self.net(time_features(t, z)))


class StateDiffusion(nn.Module):
    """``g(t, z) = sigmoid(θ) · ReLU(MLP(sin t, cos t, z))`` (the naive neural SDE's diffusion)."""

    def __init__(self, hidden_dim: int, width: int, theta: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 + hidden_dim, width), nn.ReLU(), nn.Linear(width, hidden_dim))
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return torch.sigmoid(self.theta) * torch.relu(self.net(torch.cat([time_features(t, z), z], -1)))


class CDEField(nn.Module):
    """Neural CDE vector field ``f_θ(z)``: ``(*batch, d)`` -> ``(*batch, d, path_channels)``, with a
    final ``tanh`` as in Kidger et al. (2020, §3 and their experiments)."""

    def __init__(self, hidden_dim: int, path_channels: int, width: int, num_layers: int) -> None:
        super().__init__()
        self.hidden_dim, self.path_channels = hidden_dim, path_channels
        self.net = MLP(hidden_dim, hidden_dim * path_channels, width=width, depth=num_layers, activation_name="relu")

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.net(z)).reshape(*z.shape[:-1], self.hidden_dim, self.path_channels)


class ODERNNCell(nn.Module):
    """ODE-RNN (Rubanova, Chen & Duvenaud 2019, Alg. 1): ``dh/dt = f(h)`` between observations and
    ``h <- GRUCell([x ⊙ m, m], h)`` at an observation time (where any channel is observed)."""

    def __init__(self, hidden_dim: int, input_channels: int, width: int, num_layers: int) -> None:
        super().__init__()
        self.flow = MLP(hidden_dim, hidden_dim, width=width, depth=num_layers, activation_name="tanh")
        self.gru = nn.GRUCell(2 * input_channels, hidden_dim)

    def jump(self, h: Tensor, x: Tensor, m: Tensor) -> Tensor:
        upd = self.gru(torch.cat([x * m, m], -1), h)
        return torch.where(m.any(-1, keepdim=True), upd, h)
