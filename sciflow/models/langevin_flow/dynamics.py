"""Latent dynamics of the sequential VAEs.

:class:`LangevinLatent` rolls out the underdamped Langevin equation (Song et al. 2025, eq. 2)

.. math::
    dz = v\\,dt, \\qquad dv = (-∇U(z) + u_t - γ v)\\,dt + \\sqrt{2γT}\\,dW

from a posterior draw ``(z_0, v_0)`` with the shared splitting integrators of
:mod:`sciflow.solvers.langevin` (one step per bin). ``u_t`` is an optional external force from
the encoder (non-autonomous inputs); without it the whole rollout is one
:func:`~sciflow.solvers.langevin.simulate_langevin` call. The default scheme is the paper's code
(:class:`~sciflow.solvers.langevin.LangevinFlowEuler`: ``z ← z + Δv``, ``v' = v + Δ F(z)``,
``v ~ N((1-γ) v', 2γT)``), which is what reproduces the paper; BAOAB/OBABO are the consistent
discretisations of the SDE above.

:class:`LatentODEDynamics` is the latent-ODE baseline (Rubanova, Chen & Duvenaud 2019, with
the GRU encoder above instead of the ODE-RNN): ``dz/dt = f_θ(z)`` with an MLP ``f_θ``, solved with
the shared fixed-step RK4 (``substeps`` steps per bin of length ``dt``), direct backpropagation.

:class:`GRUGenerator` is the LFADS generator without controller (Pandarinath et al. 2018): an
autonomous GRU from ``g_0`` whose state is linearly mapped to factors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.models.langevin_flow.potential import LatentPotential
from sciflow.nn.mlp import MLP
from sciflow.solvers.ode import RK4, odeint
from sciflow.solvers.langevin import (BAOAB, OBABO, LangevinFlowEuler, LangevinScheme, LangevinState,
                                      UnderdampedLangevin, simulate_langevin)

SCHEMES: dict[str, type[LangevinScheme]] = {"official": LangevinFlowEuler, "baoab": BAOAB, "obabo": OBABO}


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _softplus_inverse(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class LangevinLatent(nn.Module):
    """``forward(z0, v0, n_time, force_input=None, generator=None) -> (z, v)``, each ``(B, T, D)``.

    ``closed_form``: use the potential's analytic force when it has one; otherwise the solver
    differentiates ``U`` by autograd at every step (the naive path, kept for checking/benchmarks).

    ``learn_friction`` / ``learn_temperature``: ``γ`` and ``T`` become ``nn.Parameter`` s behind a
    positive transform, initialised at the given values: ``T = softplus(τ)``; ``γ = softplus(g)``
    for the rate-based schemes (BAOAB, OBABO) and ``γ = sigmoid(g) ∈ (0, 1)`` for the per-step
    coefficient of :class:`~sciflow.solvers.langevin.LangevinFlowEuler`. Gradients reach them
    pathwise through the splitting step (the noise ``ξ`` is a reparameterised input). Deviation
    from the paper, whose ``γ`` and noise scale are fixed hyperparameters.
    """

    def __init__(self, potential: LatentPotential, scheme: LangevinScheme, *, dt: float, gamma: float,
                 temperature: float, closed_form: bool = True, learn_friction: bool = False,
                 learn_temperature: bool = False) -> None:
        super().__init__()
        self.potential = potential
        self.scheme = scheme
        self.dt = float(dt)
        self.closed_form = bool(closed_form) and potential.closed_form
        self._per_step = isinstance(scheme, LangevinFlowEuler)
        if learn_friction:
            if not (0 < gamma < 1 if self._per_step else gamma > 0):
                raise ValueError("a learnable friction starts from gamma in "
                                 f"{'(0, 1)' if self._per_step else '(0, inf)'}"
                                 f" (its transform cannot reach the boundary), got {gamma}")
            self.raw_gamma = nn.Parameter(torch.tensor(_logit(gamma) if self._per_step else _softplus_inverse(gamma)))
        else:
            self.raw_gamma = None
            self._gamma = float(gamma)
        if learn_temperature:
            if not temperature > 0:
                raise ValueError(f"a learnable temperature starts from T > 0, got {temperature}")
            self.raw_temperature = nn.Parameter(torch.tensor(_softplus_inverse(temperature)))
        else:
            self.raw_temperature = None
            self._temperature = float(temperature)

    @property
    def gamma(self) -> float | Tensor:
        """Friction ``γ``: a float, or a 0-d tensor when learnable."""
        if self.raw_gamma is None:
            return self._gamma
        return torch.sigmoid(self.raw_gamma) if self._per_step else F.softplus(self.raw_gamma)

    @property
    def temperature(self) -> float | Tensor:
        """Temperature ``T``: a float, or a 0-d tensor when learnable."""
        return self._temperature if self.raw_temperature is None else F.softplus(self.raw_temperature)

    def _system(self) -> UnderdampedLangevin:
        gamma, temperature = self.gamma, self.temperature
        if self.closed_form:
            return UnderdampedLangevin(force=self.potential.force, gamma=gamma, temperature=temperature)
        return UnderdampedLangevin(potential=self.potential.energy, gamma=gamma, temperature=temperature)

    def forward(self, z0: Tensor, v0: Tensor, n_time: int, force_input: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        base = self._system()
        if force_input is None:
            zs, vs = simulate_langevin(base, z0, v0, dt=self.dt, n_steps=n_time - 1, scheme=self.scheme,
                                       generator=generator)
            return zs.transpose(0, 1), vs.transpose(0, 1)
        if force_input.shape != (*z0.shape[:-1], n_time, z0.shape[-1]):
            raise ValueError(f"force_input must be (batch, {n_time}, {z0.shape[-1]}), got {tuple(force_input.shape)}")
        # one system for the whole rollout (coefficients checked once); the force reads u_t of the
        # current bin from ``current``
        current = [force_input[:, 0]]
        system = UnderdampedLangevin(force=lambda z: base.force(z) + current[0], gamma=base.gamma,
                                     temperature=base.temperature)
        self.scheme.check(system)
        state = LangevinState(z0, v0, system.force(z0))
        zs, vs = [z0], [v0]
        for t in range(1, n_time):
            current[0] = force_input[:, t]
            state = self.scheme.step(system, state, self.dt, generator)
            zs.append(state.z)
            vs.append(state.v)
        return torch.stack(zs, 1), torch.stack(vs, 1)


class GRUGenerator(nn.Module):
    """``forward(g0 (B, G), n_time) -> factors (B, T, F)``: autonomous GRU + linear factors."""

    def __init__(self, hidden: int, n_factors: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.cell = nn.GRUCell(1, hidden)
        # autonomous: the input is always 0, so its weights never act (frozen at 0, input bias kept)
        with torch.no_grad():
            self.cell.weight_ih.zero_()
        self.cell.weight_ih.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.to_factors = nn.Linear(hidden, n_factors)

    def forward(self, g0: Tensor, n_time: int) -> Tensor:
        g = g0
        zero = g0.new_zeros(g0.shape[0], 1)
        out = [g]
        for _ in range(1, n_time):
            g = self.cell(zero, g)
            out.append(g)
        return self.to_factors(self.dropout(torch.stack(out, 1)))


class LatentODEDynamics(nn.Module):
    """``forward(z0 (B, D), n_time) -> z (B, T, D)``: deterministic latent ODE on the bin grid."""

    def __init__(self, latent_dim: int, width: int = 64, *, dt: float = 0.1, substeps: int = 1) -> None:
        super().__init__()
        self.field = MLP(latent_dim, latent_dim, width=width, depth=2, activation_name="tanh")
        self.dt, self.substeps = float(dt), int(substeps)

    def forward(self, z0: Tensor, n_time: int) -> Tensor:
        t = self.dt * torch.arange(n_time, device=z0.device, dtype=z0.dtype)
        zs = odeint(lambda _t, z: self.field(z), z0, t, solver=RK4(), dt=self.dt / self.substeps)
        return zs.transpose(0, 1)
