"""Tensor (learnable) friction and temperature in the Langevin splitting schemes.

With the noise fixed by a generator seed the rollout is a smooth function of ``(γ, T)``; the
autograd gradient must match central finite differences (float64) for every scheme, and tensor
coefficients must reproduce the float path exactly.
"""

from __future__ import annotations

import pytest
import torch

from sciflow.solvers.langevin import BAOAB, OBABO, LangevinFlowEuler, UnderdampedLangevin, simulate_langevin

DT = torch.float64
SCHEMES = [BAOAB(), OBABO(), LangevinFlowEuler()]


def _rollout(gamma, temperature, scheme, *, seed=0, n_steps=25):
    # anharmonic force so the objective is not a trivial quadratic in (z, v)
    system = UnderdampedLangevin(force=lambda z: -z - 0.3 * z**3, gamma=gamma, temperature=temperature)
    z0 = torch.linspace(-1.0, 1.0, 6, dtype=DT).reshape(2, 3)
    zs, vs = simulate_langevin(system, z0, 0.5 * torch.ones_like(z0), dt=0.1, n_steps=n_steps, scheme=scheme,
                               generator=torch.Generator().manual_seed(seed))
    return zs, vs


def _objective(gamma, temperature, scheme):
    zs, vs = _rollout(gamma, temperature, scheme)
    return (zs**2).mean() + 0.5 * (vs[-1] * torch.arange(1.0, 4.0, dtype=DT)).sum()


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: type(s).__name__)
def test_tensor_coefficients_reproduce_float_path(scheme):
    ref = _rollout(0.3, 0.2, scheme)
    got = _rollout(torch.tensor(0.3, dtype=DT), torch.tensor(0.2, dtype=DT), scheme)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    # per-unit friction (broadcast over the state) equals running each unit with its own float
    gammas = torch.tensor([0.1, 0.3, 0.6], dtype=DT)
    zs, _ = _rollout(gammas, 0.0, scheme)
    for i, gval in enumerate(gammas.tolist()):
        torch.testing.assert_close(zs[..., i], _rollout(gval, 0.0, scheme)[0][..., i], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: type(s).__name__)
def test_gradient_wrt_friction_and_temperature_matches_finite_differences(scheme):
    gamma = torch.tensor(0.35, dtype=DT, requires_grad=True)
    temp = torch.tensor(0.25, dtype=DT, requires_grad=True)
    g_gamma, g_temp = torch.autograd.grad(_objective(gamma, temp, scheme), (gamma, temp))
    h = 1e-6
    with torch.no_grad():
        fd_gamma = (_objective(0.35 + h, 0.25, scheme) - _objective(0.35 - h, 0.25, scheme)) / (2 * h)
        fd_temp = (_objective(0.35, 0.25 + h, scheme) - _objective(0.35, 0.25 - h, scheme)) / (2 * h)
    assert abs(float(fd_gamma)) > 1e-3 and abs(float(fd_temp)) > 1e-3  # the check is not vacuous
    torch.testing.assert_close(g_gamma, fd_gamma, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g_temp, fd_temp, rtol=1e-6, atol=1e-8)


def test_gradcheck_through_baoab_per_unit_friction():
    def f(g, t):
        return _rollout(g, t, BAOAB(), n_steps=8)[0][-1]

    g = torch.tensor([0.2, 0.5, 0.9], dtype=DT, requires_grad=True)
    t = torch.tensor(0.3, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(f, (g, t))


def test_zero_temperature_with_tensor_friction_has_finite_gradient():
    gamma = torch.tensor(0.4, dtype=DT, requires_grad=True)
    for scheme in SCHEMES:
        (g,) = torch.autograd.grad(_objective(gamma, 0.0, scheme), gamma)
        assert bool(torch.isfinite(g)), type(scheme).__name__


def test_tensor_coefficient_errors():
    with pytest.raises(ValueError, match="friction gamma"):
        UnderdampedLangevin(force=lambda z: -z, gamma=torch.tensor([-0.1, 0.2]))
    with pytest.raises(ValueError, match="temperature"):
        UnderdampedLangevin(force=lambda z: -z, gamma=0.1, temperature=torch.tensor(float("nan")))
    with pytest.raises(TypeError, match="floating-point"):
        UnderdampedLangevin(force=lambda z: -z, gamma=torch.tensor(1))
    system = UnderdampedLangevin(force=lambda z: -z, gamma=torch.tensor(1.5))
    with pytest.raises(ValueError, match="per-step friction"):
        simulate_langevin(system, torch.zeros(2), torch.zeros(2), dt=0.1, n_steps=3, scheme=LangevinFlowEuler())
