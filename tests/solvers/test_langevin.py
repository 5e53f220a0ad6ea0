"""Underdamped Langevin splitting: Boltzmann sampling, symplectic energy behaviour, the LangevinFlow update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.langevin import (BAOAB, OBABO, LangevinFlowEuler, LangevinState, UnderdampedLangevin,
                                      simulate_langevin)

DT = torch.float64
N_CHAINS = 4000


def _var_se(var, n):
    return var * math.sqrt(2 / n)


@pytest.mark.parametrize("use_potential", [True, False])
def test_baoab_harmonic_configurational_variance_exact_at_large_step(use_potential):
    # BAOAB samples N(0, T/k) in z exactly for a harmonic potential at any stable h (Leimkuhler–Matthews)
    k, temp, h = 4.0, 0.5, 0.3
    kw = dict(potential=lambda z: 0.5 * k * (z**2).sum(-1)) if use_potential else dict(force=lambda z: -k * z)
    system = UnderdampedLangevin(**kw, gamma=1.0, temperature=temp)
    gen = torch.Generator().manual_seed(0)
    z0 = torch.zeros(N_CHAINS, 1, dtype=DT)
    with torch.no_grad():
        zs, vs = simulate_langevin(system, z0, torch.zeros_like(z0), dt=h, n_steps=150, generator=gen,
                                   save_every=150)
    var = float(zs[-1].var())
    assert abs(var - temp / k) < 4 * _var_se(temp / k, N_CHAINS), var


def test_obabo_harmonic_small_step():
    k, temp, h = 4.0, 0.5, 0.05
    system = UnderdampedLangevin(force=lambda z: -k * z, gamma=2.0, temperature=temp)
    gen = torch.Generator().manual_seed(1)
    z0 = torch.zeros(N_CHAINS, 1, dtype=DT)
    zs, vs = simulate_langevin(system, z0, torch.zeros_like(z0), dt=h, n_steps=400, scheme=OBABO(),
                               generator=gen, save_every=400)
    assert abs(float(zs[-1].var()) - temp / k) < 4 * _var_se(temp / k, N_CHAINS)
    assert abs(float(vs[-1].var()) - temp) < 4 * _var_se(temp, N_CHAINS)


def test_baoab_double_well_matches_boltzmann_quadrature():
    temp = 0.5
    potential = lambda z: ((z**2 - 1) ** 2).sum(-1)  # noqa: E731
    x = np.linspace(-4, 4, 20001)
    w = np.exp(-((x**2 - 1) ** 2) / temp)
    m2 = float((x**2 * w).sum() / w.sum())
    m4 = float((x**4 * w).sum() / w.sum())
    system = UnderdampedLangevin(potential=potential, gamma=1.0, temperature=temp)
    gen = torch.Generator().manual_seed(2)
    z0 = torch.where(torch.arange(N_CHAINS) % 2 == 0, 1.0, -1.0).to(DT).unsqueeze(-1)
    with torch.no_grad():
        zs, _ = simulate_langevin(system, z0, torch.zeros_like(z0), dt=0.05, n_steps=600, generator=gen,
                                  save_every=600)
    z2 = zs[-1].squeeze(-1) ** 2
    se = math.sqrt((m4 - m2**2) / N_CHAINS)
    assert abs(float(z2.mean()) - m2) < 4 * se, (float(z2.mean()), m2)
    assert abs(float((zs[-1] > 0).to(DT).mean()) - 0.5) < 4 * 0.5 / math.sqrt(N_CHAINS)


@pytest.mark.parametrize("scheme", [BAOAB(), OBABO()])
def test_zero_friction_energy_bounded_second_order(scheme):
    # γ = 0: velocity Verlet. Energy error is bounded (no drift) and O(h²)
    def energy(z, v):
        return (0.25 * z**4 + 0.5 * z**2 + 0.5 * v**2).sum(-1)

    system = UnderdampedLangevin(force=lambda z: -(z**3 + z), gamma=0.0, temperature=1.0)
    z0 = torch.tensor([[1.5], [0.3]], dtype=DT)
    v0 = torch.tensor([[0.0], [1.0]], dtype=DT)
    e0 = energy(z0, v0)
    errs = []
    for h in (0.1, 0.05):
        zs, vs = simulate_langevin(system, z0, v0, dt=h, n_steps=int(round(60 / h)), scheme=scheme)
        dev = (energy(zs, vs) - e0).abs()
        errs.append(float(dev.max()))
        # no secular drift: the last stretch deviates no more than the first one
        third = dev.shape[0] // 3
        assert float(dev[-third:].max()) < 1.5 * float(dev[:third].max()) + 1e-12
    assert errs[0] < 0.05
    assert 3.0 < errs[0] / errs[1] < 5.0, errs


def test_langevin_flow_euler_velocity_stationary_variance():
    # free particle: v ← (1-γ) v + √(2γT) ξ has stationary variance 2T/(2-γ)
    gamma, temp = 0.3, 0.7
    system = UnderdampedLangevin(force=lambda z: torch.zeros_like(z), gamma=gamma, temperature=temp)
    gen = torch.Generator().manual_seed(3)
    z0 = torch.zeros(N_CHAINS, 1, dtype=DT)
    _, vs = simulate_langevin(system, z0, torch.zeros_like(z0), dt=0.1, n_steps=60, scheme=LangevinFlowEuler(),
                              generator=gen, save_every=60)
    target = 2 * temp / (2 - gamma)
    assert abs(float(vs[-1].var()) - target) < 4 * _var_se(target, N_CHAINS)
    # one deterministic step: z' = z + h v, v' = (1-γ)(v + h F(z'))
    sys0 = UnderdampedLangevin(force=lambda z: -z, gamma=gamma, temperature=0.0)
    state = LangevinState(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([-1.0]))
    s = LangevinFlowEuler().step(sys0, state, 0.1)
    assert torch.allclose(s.z, torch.tensor([1.2])) and torch.allclose(s.v, torch.tensor([(1 - gamma) * (2.0 - 0.12)]))


def test_potential_gradients_reach_parameters():
    a = torch.tensor(2.0, dtype=DT, requires_grad=True)
    system = UnderdampedLangevin(potential=lambda z: 0.5 * a * (z**2).sum(-1), gamma=0.5, temperature=0.0)
    z0 = torch.ones(3, 2, dtype=DT)
    zs, _ = simulate_langevin(system, z0, torch.zeros_like(z0), dt=0.1, n_steps=5)
    zs[-1].sum().backward()
    assert a.grad is not None and float(a.grad) < 0  # stiffer spring pulls z further towards 0


def test_errors():
    with pytest.raises(ValueError, match="exactly one"):
        UnderdampedLangevin(gamma=1.0)
    with pytest.raises(ValueError, match="gamma"):
        UnderdampedLangevin(force=lambda z: z, gamma=-1.0)
    system = UnderdampedLangevin(force=lambda z: z.sum(-1), gamma=1.0)
    with pytest.raises(ValueError, match="force returned shape"):
        simulate_langevin(system, torch.zeros(2, 3), torch.zeros(2, 3), dt=0.1, n_steps=1)
    ok = UnderdampedLangevin(force=lambda z: -z, gamma=1.0)
    with pytest.raises(ValueError, match="same shape"):
        simulate_langevin(ok, torch.zeros(2, 3), torch.zeros(2, 2), dt=0.1, n_steps=1)
    with pytest.raises(ValueError, match="per-step friction"):
        simulate_langevin(UnderdampedLangevin(force=lambda z: -z, gamma=2.0), torch.zeros(2), torch.zeros(2),
                          dt=0.1, n_steps=1, scheme=LangevinFlowEuler())
