"""Splitting integrators for underdamped Langevin dynamics.

.. math::
    dz = v\\,dt, \\qquad dv = (F(z) - γ v)\\,dt + \\sqrt{2 γ T}\\,dW, \\qquad F = -∇U

(unit mass; friction ``γ``, temperature ``T``). The invariant law is the Boltzmann distribution
``∝ exp(-(U(z) + |v|²/2) / T)``. The splitting pieces are

* ``A``: drift of position, ``z ← z + h v``;
* ``B``: kick, ``v ← v + h F(z)``;
* ``O``: exact Ornstein–Uhlenbeck solve of ``dv = -γ v dt + √(2γT) dW``,
  ``v ← c v + √(T (1 - c²)) ξ`` with ``c = exp(-γ h)``.

:class:`BAOAB` (Leimkuhler & Matthews 2013, "Rational construction of stochastic numerical methods
for molecular sampling", AMRX, eq. 2.9–2.13) samples the configurational marginal with O(h²)
error and exactly for harmonic potentials; :class:`OBABO` (Bussi & Parrinello 2007) is the
symmetric alternative. Both reduce to velocity Verlet at ``γ = 0`` (symplectic: bounded energy
error, no drift). :class:`LangevinFlowEuler` is the discretisation in the official code of
"Langevin Flows for Modeling Neural Latent Dynamics" (2025), kept for reproducing that paper.
All take one force evaluation per step (the force at the new position is carried over).

Friction and temperature may be Python floats or tensors (0-d, or broadcastable to the state,
e.g. one friction per latent unit). Tensors keep their autograd graph through every scheme, so a
model can learn ``γ`` and ``T`` as ``nn.Parameter`` behind a positive transform (softplus, or a
sigmoid for the per-step ``γ ∈ [0, 1]`` of :class:`LangevinFlowEuler`); with a fixed
``generator`` seed the noise ``ξ`` is a fixed input, so the rollout is a smooth function of
``(γ, T)`` (pathwise/reparameterised gradients). Tensor values are checked once when the system
is built (one host sync), never inside the step loop.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

Force = Callable[[Tensor], Tensor]
Potential = Callable[[Tensor], Tensor]
Scalar = float | Tensor


def _check_coefficient(name: str, value: Scalar, upper: float = math.inf) -> Scalar:
    """A float or a tensor in ``[0, upper]`` (finite); returns a float or the tensor unchanged."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        v = value.detach()
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()) or bool((v > upper).any()):
            raise ValueError(f"{name} must be finite and in [0, {upper}], got {v.flatten()[:4].tolist()}...")
        return value
    value = float(value)
    if not (math.isfinite(value) and 0 <= value <= upper):
        raise ValueError(f"{name} must be finite and in [0, {upper}], got {value}")
    return value


class UnderdampedLangevin:
    """The system: a force ``F(z)`` (or a potential ``U(z)``, ``F = -∇U``), friction and temperature.

    Args:
        force: ``F(z) -> (*batch, *state)``.
        potential: ``U(z) -> (*batch,)`` (one energy per batch element); its gradient is taken by
            autograd, keeping the graph when grad mode is on (so parameters of ``U`` train).
        gamma: friction ``γ >= 0`` (per unit time; for :class:`LangevinFlowEuler` a per-step
            coefficient in ``[0, 1]``); a float or a tensor broadcastable to the state.
        temperature: ``T >= 0``; a float or a tensor broadcastable to the state.
    """

    def __init__(self, force: Force | None = None, potential: Potential | None = None, *, gamma: Scalar,
                 temperature: Scalar = 1.0) -> None:
        if (force is None) == (potential is None):
            raise ValueError("UnderdampedLangevin needs exactly one of force= or potential=")
        self._force = force
        self._potential = potential
        self.gamma = _check_coefficient("friction gamma", gamma)
        self.temperature = _check_coefficient("temperature", temperature)

    def force(self, z: Tensor) -> Tensor:
        if self._force is not None:
            out = self._force(z)
        else:
            create_graph = torch.is_grad_enabled()
            with torch.enable_grad():
                zz = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
                u = self._potential(zz)
                (grad,) = torch.autograd.grad(u.sum(), zz, create_graph=create_graph)
            out = -grad
        if out.shape != z.shape:
            raise ValueError(f"force returned shape {tuple(out.shape)} for a position of shape {tuple(z.shape)}")
        return out

    def energy(self, z: Tensor, v: Tensor, state_ndim: int = 1) -> Tensor:
        """Hamiltonian ``U(z) + |v|²/2`` per batch element (needs ``potential``)."""
        if self._potential is None:
            raise ValueError("energy() needs the system to be built from a potential")
        dims = tuple(range(v.ndim - state_ndim, v.ndim))
        return self._potential(z) + 0.5 * (v * v).sum(dims)


class LangevinState(NamedTuple):
    z: Tensor
    v: Tensor
    force: Tensor  # F(z), carried so each step evaluates the force once


def _noise(v: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(v.shape, generator=generator, dtype=v.dtype, device=v.device)


def _ou(v: Tensor, gamma: Scalar, temperature: Scalar, h: float, generator: torch.Generator | None) -> Tensor:
    if not isinstance(gamma, Tensor) and not isinstance(temperature, Tensor):
        c = math.exp(-gamma * h)
        if temperature == 0 or c == 1.0:
            return v * c
        return c * v + math.sqrt(temperature * (1 - c * c)) * _noise(v, generator)
    # tensor coefficients: no value-dependent branches (no host sync, smooth in γ and T);
    # 1 - c² = -expm1(-2γh) keeps precision (and a finite gradient) for small γh
    c = torch.exp(-torch.as_tensor(gamma, dtype=v.dtype, device=v.device) * h)
    if not isinstance(temperature, Tensor) and temperature == 0:
        return c * v
    var = temperature * -torch.expm1(-2 * torch.as_tensor(gamma, dtype=v.dtype, device=v.device) * h)
    return c * v + torch.sqrt(var) * _noise(v, generator)


class LangevinScheme:
    """A one-step method: ``step(system, state, dt, generator) -> state``.

    :meth:`check` validates a system against the scheme's assumptions once, before stepping.
    """

    def check(self, system: UnderdampedLangevin) -> None:
        """Raise if ``system`` violates this scheme's assumptions (default: none)."""

    def step(self, system: UnderdampedLangevin, state: LangevinState, dt: float,
             generator: torch.Generator | None = None) -> LangevinState:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BAOAB(LangevinScheme):
    """B(h/2) A(h/2) O(h) A(h/2) B(h/2) (Leimkuhler & Matthews 2013)."""

    def step(self, system, state, dt, generator=None):
        z, v, f = state
        v = v + (0.5 * dt) * f
        z = z + (0.5 * dt) * v
        v = _ou(v, system.gamma, system.temperature, dt, generator)
        z = z + (0.5 * dt) * v
        f = system.force(z)
        v = v + (0.5 * dt) * f
        return LangevinState(z, v, f)


class OBABO(LangevinScheme):
    """O(h/2) B(h/2) A(h) B(h/2) O(h/2) (Bussi & Parrinello 2007)."""

    def step(self, system, state, dt, generator=None):
        z, v, f = state
        v = _ou(v, system.gamma, system.temperature, 0.5 * dt, generator)
        v = v + (0.5 * dt) * f
        z = z + dt * v
        f = system.force(z)
        v = v + (0.5 * dt) * f
        v = _ou(v, system.gamma, system.temperature, 0.5 * dt, generator)
        return LangevinState(z, v, f)


class LangevinFlowEuler(LangevinScheme):
    """The update of the official Langevin Flows code (semi-implicit Euler + AR(1) velocity noise).

    .. math::
        z' = z + h v, \\qquad v' = v + h F(z'), \\qquad v'' = (1 - γ) v' + \\sqrt{2 γ T}\\,ξ

    Here ``γ`` is a *per-step* coefficient in ``[0, 1]`` (not a rate) and the noise variance
    ``2γT`` does not scale with ``h``; with ``T = 1`` this is the code's
    ``v ~ N((1 - γ) v', 2γ)``. Deviation from the continuous SDE: the velocity's stationary
    variance for ``F = 0`` is ``2T / (2 - γ)`` rather than ``T``, and the law is not
    Boltzmann exactly; use :class:`BAOAB` to sample a Boltzmann distribution.
    """

    def check(self, system: UnderdampedLangevin) -> None:
        _check_coefficient("LangevinFlowEuler needs a per-step friction gamma; gamma", system.gamma, upper=1.0)

    def step(self, system, state, dt, generator=None):
        gamma, temp = system.gamma, system.temperature
        if not isinstance(gamma, Tensor) and gamma > 1:
            raise ValueError(f"LangevinFlowEuler needs a per-step friction gamma in [0, 1], got {gamma}")
        z, v, _ = state
        z = z + dt * v
        f = system.force(z)
        v = v + dt * f
        v = (1 - gamma) * v
        if not isinstance(temp, Tensor) and temp == 0:
            pass
        elif isinstance(gamma, Tensor) or isinstance(temp, Tensor):
            v = v + torch.sqrt(torch.as_tensor(2 * gamma * temp, dtype=v.dtype, device=v.device)) * _noise(v, generator)
        elif gamma > 0 and temp > 0:
            v = v + math.sqrt(2 * gamma * temp) * _noise(v, generator)
        return LangevinState(z, v, f)


def simulate_langevin(
    system: UnderdampedLangevin,
    z0: Tensor,
    v0: Tensor,
    *,
    dt: float,
    n_steps: int,
    scheme: LangevinScheme | None = None,
    generator: torch.Generator | None = None,
    save_every: int = 1,
) -> tuple[Tensor, Tensor]:
    """Integrate ``n_steps`` steps of size ``dt`` from ``(z0, v0)``, both ``(*batch, *state)``.

    Returns ``(zs, vs)``, each ``(1 + n_steps // save_every, *batch, *state)``, starting with the
    initial state. Default scheme :class:`BAOAB`.
    """
    scheme = BAOAB() if scheme is None else scheme
    if not isinstance(scheme, LangevinScheme):
        raise TypeError(f"scheme must be a LangevinScheme (BAOAB(), OBABO(), LangevinFlowEuler()), got {scheme!r}")
    if z0.shape != v0.shape:
        raise ValueError(f"z0 and v0 must have the same shape, got {tuple(z0.shape)} and {tuple(v0.shape)}")
    for name, x in (("z0", z0), ("v0", v0)):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    # finiteness: one host sync at entry, never per step, and none for a model's differentiable
    # output (a latent flow's encoder, every training step): its NaN reaches the loss, which the
    # trainer's non-finite guard catches
    if not (z0.requires_grad or v0.requires_grad) and not bool(torch.isfinite(z0).all() & torch.isfinite(v0).all()):
        bad = "z0" if not bool(torch.isfinite(z0).all()) else "v0"
        raise ValueError(f"{bad} contains NaN or inf")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1, got {n_steps}, {save_every}")
    scheme.check(system)
    state = LangevinState(z0, v0, system.force(z0))
    zs, vs = [z0], [v0]
    for i in range(1, n_steps + 1):
        state = scheme.step(system, state, float(dt), generator)
        if i % save_every == 0:
            zs.append(state.z)
            vs.append(state.v)
    return torch.stack(zs), torch.stack(vs)
