"""Potentials ``U(z)`` of the latent Langevin dynamics, each with its force ``F = -∇U``.

:class:`CoupledOscillatorPotential` is the paper's "network of locally coupled oscillators"
(Song et al. 2025, §3): the latent ``z ∈ R^D`` is arranged as ``C`` channels on a ring of
``L = D / C`` sites, and

.. math::
    U(z) = \\tfrac12 \\sum_{c,i} ω_c^2 z_{c,i}^2 + \\tfrac12 \\langle z, K \\star z \\rangle,

a quadratic form with one restoring stiffness ``ω_c² = softplus(ρ_c)`` per channel (independent
harmonic oscillators) plus a learned circular convolution ``K`` of odd width ``k`` coupling each
site to its ``(k−1)/2`` neighbours across channels. Its force is closed-form,

.. math::
    -∇U(z) = -ω^2 ⊙ z - \\tfrac12 (K \\star z + K^{\\top} \\star z),

where ``K^⊤⋆`` (the adjoint of a circular convolution) is the circular convolution with the kernel
transposed in channels and flipped in space. This costs two small convolutions instead of a
backward pass per bin. Deviation from the paper: the per-channel stiffness ``ω²`` is added so the
potential starts confining (oscillatory) at initialisation; with ``K = 0`` it is exactly a bank of
uncoupled oscillators.

:class:`MLPPotential` is the general option, ``U(z) = MLP(z) + ½ κ |z|²`` (κ > 0 keeps the
dynamics confined); its force is taken by autograd.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.nn.mlp import MLP


class LatentPotential(nn.Module):
    """``energy(z) (*batch,)`` and ``force(z) (*batch, D)`` for ``z (*batch, D)``.

    ``closed_form``: whether :meth:`force` is analytic (no autograd through ``energy``).
    """

    closed_form: ClassVar[bool] = False

    def energy(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def force(self, z: Tensor) -> Tensor:
        """``-∇U(z)`` by autograd (keeps the graph in grad mode so the potential trains)."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            zz = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.energy(zz).sum(), zz, create_graph=create_graph)
        return -g


class CoupledOscillatorPotential(LatentPotential):
    """Locally coupled oscillators (quadratic); see the module docstring for the maths.

    Args:
        latent_dim: ``D``; must be divisible by ``n_channels``.
        n_channels: ``C`` rings of oscillators.
        kernel_size: odd coupling width ``k``.
        stiffness: initial ``ω²`` of every channel.
    """

    closed_form: ClassVar[bool] = True

    def __init__(self, latent_dim: int, n_channels: int = 2, kernel_size: int = 3, stiffness: float = 1.0) -> None:
        super().__init__()
        if latent_dim % n_channels:
            raise ValueError(f"latent_dim={latent_dim} is not divisible by n_channels={n_channels}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.latent_dim, self.n_channels, self.kernel_size = latent_dim, n_channels, kernel_size
        self.length = latent_dim // n_channels
        if (kernel_size - 1) // 2 > self.length:
            raise ValueError(f"kernel_size={kernel_size} couples further than the ring of {self.length} sites")
        self.kernel = nn.Parameter(0.1 * torch.randn(n_channels, n_channels, kernel_size)
                                   / (n_channels * kernel_size) ** 0.5)
        # softplus^{-1}(stiffness)
        self.raw_stiffness = nn.Parameter(torch.full((n_channels,), float(stiffness)).expm1().log())

    @property
    def stiffness(self) -> Tensor:
        """``ω²`` per channel ``(C,)``."""
        return F.softplus(self.raw_stiffness)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        p = (self.kernel_size - 1) // 2
        return F.conv1d(F.pad(x, (p, p), mode="circular") if p else x, weight)

    def _shape(self, z: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"potential expects z (..., {self.latent_dim}), got {tuple(z.shape)}")
        batch = z.shape[:-1]
        return z.reshape(-1, self.n_channels, self.length), batch

    def coupling(self, z: Tensor) -> Tensor:
        """``K ⋆ z`` with the shape of ``z``."""
        x, batch = self._shape(z)
        return self._conv(x, self.kernel).reshape(*batch, self.latent_dim)

    def energy(self, z: Tensor) -> Tensor:
        x, batch = self._shape(z)
        kz = self._conv(x, self.kernel)
        e = 0.5 * (self.stiffness[:, None] * x * x).sum((-2, -1)) + 0.5 * (x * kz).sum((-2, -1))
        return e.reshape(batch)

    def force(self, z: Tensor) -> Tensor:
        x, batch = self._shape(z)
        adjoint = self.kernel.transpose(0, 1).flip(-1)
        kz = self._conv(x, self.kernel) + self._conv(x, adjoint)
        f = -(self.stiffness[:, None] * x) - 0.5 * kz
        return f.reshape(*batch, self.latent_dim)


class MLPPotential(LatentPotential):
    """``U(z) = MLP(z) + ½ κ |z|²`` with a learned ``κ = softplus(·) > 0``; autograd force."""

    def __init__(self, latent_dim: int, width: int = 64, depth: int = 2, confinement: float = 1.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = MLP(latent_dim, 1, width=width, depth=depth, activation_name="softplus")
        # a constant energy offset exerts no force: drop the output bias (it would never train)
        self.net.net[-1].register_parameter("bias", None)
        self.raw_confinement = nn.Parameter(torch.tensor(float(confinement)).expm1().log())

    def energy(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"potential expects z (..., {self.latent_dim}), got {tuple(z.shape)}")
        kappa = F.softplus(self.raw_confinement)
        return self.net(z).squeeze(-1) + 0.5 * kappa * (z * z).sum(-1)
