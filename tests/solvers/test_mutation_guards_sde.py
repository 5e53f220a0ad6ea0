"""Mutation-audit guards for the SDE core: properties the other SDE tests left unchecked.

``test_single_step_levy_area_law``: the pre-sampled ``I_(1,0) = ∫_s^t (W_u - W_s) du`` of one step
of :class:`BrownianIncrements`. Given ``ΔW``, ``I_(1,0) = h/2 ΔW + ξ`` with ``ξ ~ N(0, h³/12)``
independent of ``ΔW`` (the space-time Lévy area; e.g. Kloeden & Platen 1992, §10.4, or Foster,
Lyons & Oberhauser 2020), so ``Var I_(1,0) = h³/3`` and ``Cov(ΔW, I_(1,0)) = h²/2``. The existing
tests check these moments only on intervals coarsened from many fine steps, where a wrong
per-step variance of ``ξ`` (e.g. ``h³/48``) is drowned by the sum of the ``(W_u - W_s) h_k``
terms; the strong-order tests of SRI/SRA1 are not sensitive enough either.
"""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.solvers.langevin import BAOAB, OBABO, UnderdampedLangevin, simulate_langevin
from sciflow.solvers.ode.controller import PIController
from sciflow.solvers.sde import BrownianIncrements, Milstein, PerSampleBrownianTree, Scalar, sdeint

DT = torch.float64


def test_single_step_levy_area_law():
    m = 100_000
    grid = [0.0, 0.3, 1.0, 1.5]                       # unequal steps h = 0.3, 0.7, 0.5
    bm = BrownianIncrements(grid, (m,), generator=torch.Generator().manual_seed(7), dtype=DT, levy_area=True)
    dw, i10 = bm.increments(grid, levy_area=True)
    assert dw.shape == i10.shape == (3, m)
    for k, h in enumerate([0.3, 0.7, 0.5]):
        w, i = dw[k], i10[k]
        resid = i - 0.5 * h * w                        # the space-time Lévy area part
        # sample variances: relative standard error sqrt(2/m) ~ 0.45 %; 3 % is > 6 sigma
        assert abs(float(w.var()) / h - 1) < 0.03
        assert abs(float(i.var()) / (h**3 / 3) - 1) < 0.03
        assert abs(float(resid.var()) / (h**3 / 12) - 1) < 0.03
        # Cov(ΔW, I) = h²/2, i.e. the residual is uncorrelated with ΔW
        corr = float(torch.corrcoef(torch.stack([w, resid]))[0, 1])
        assert abs(corr) < 5 / math.sqrt(m)
        assert abs(float((w * i).mean()) / (h**2 / 2) - 1) < 0.03


def test_per_trajectory_error_norm_is_rms_over_the_state():
    """Per-trajectory adaptive stepping measures each sample's error in the RMS norm over its own
    state (Hairer et al., *Solving ODEs I*, eq. II.4.11; the module docstring of
    :mod:`sciflow.solvers.sde.adaptive`): duplicating the state's components under scalar noise
    (one Brownian motion drives all copies) leaves every error ratio, hence every step, unchanged.
    A sum-of-squares norm would scale the ratios by ``sqrt(d)`` and take more steps for larger ``d``."""
    B = 4
    sig = torch.tensor([0.3, 0.8, 0.5, 1.2], dtype=DT)
    f = lambda t, y: 0.5 * y                                     # noqa: E731
    g = lambda t, y: sig.reshape(B, 1) * y                        # noqa: E731
    ctrl = PIController(rtol=1e-2, atol=1e-2)
    results = {}
    for d in (1, 4):
        y0 = torch.ones(B, d, dtype=DT)
        tree = PerSampleBrownianTree(0.0, 1.0, (B, 1), seed=11, dtype=DT)
        ys, st = sdeint(f, g, y0, [0.0, 0.5, 1.0], solver=Milstein(), noise=Scalar(), brownian=tree,
                        controller=ctrl, return_stats=True)
        results[d] = (ys, st["n_accepted"], st["n_rejected"])
    ys1, acc1, rej1 = results[1]
    ys4, acc4, rej4 = results[4]
    assert int(acc1.min()) > 3                                   # really adaptive
    assert torch.equal(acc1, acc4) and torch.equal(rej1, rej4)
    torch.testing.assert_close(ys4, ys1.expand_as(ys4), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Mutation-audit guards for the Langevin splitting schemes (sciflow/solvers/langevin.py).
#
# ``test_free_particle_velocity_is_the_exact_ou_process``: for ``F = 0`` the B and A pieces do not
# touch ``v``, so BAOAB (one ``O(h)``) and OBABO (two ``O(h/2)``) must reproduce the exact
# Ornstein–Uhlenbeck transition of ``dv = -γ v dt + √(2γT) dW``: ``v_n | v_0 ~ N(v_0 e^{-γ t_n},
# T (1 - e^{-2γ t_n}))`` (Leimkuhler & Matthews 2013, eq. 2.11). The harmonic tests cannot see a
# wrong O-step length: BAOAB's configurational marginal is exact for *any* friction, so an ``O(h/2)``
# is just another ``γ``. ``test_hamiltonian_is_conserved_to_second_order_by_velocity_verlet``:
# ``UnderdampedLangevin.energy`` must be the Hamiltonian ``U + |v|²/2`` that velocity Verlet
# (``γ = 0``) conserves up to ``O(h²)`` without drift (no other test calls it; a missing initial
# force half-kick makes the error ``O(h)``). ``test_langevin_flow_euler_accepts_full_per_step_friction``:
# the per-step friction range of :class:`LangevinFlowEuler` is ``[0, 1]``, closed.



@pytest.mark.parametrize("scheme", [BAOAB(), OBABO()], ids=["BAOAB", "OBABO"])
def test_free_particle_velocity_is_the_exact_ou_process(scheme):
    gamma, h, n = 1.3, 0.2, 7                          # t = 1.4, a coarse step: exactness, not accuracy
    t = h * n
    v0 = torch.tensor([[1.0, -2.0]], dtype=DT)
    free = lambda z: torch.zeros_like(z)               # noqa: E731
    # T = 0: deterministic exponential decay
    cold = UnderdampedLangevin(force=free, gamma=gamma, temperature=0.0)
    _, vs = simulate_langevin(cold, torch.zeros_like(v0), v0, dt=h, n_steps=n, scheme=scheme)
    steps = torch.arange(n + 1, dtype=DT).reshape(-1, 1, 1)
    torch.testing.assert_close(vs, v0 * torch.exp(-gamma * h * steps), rtol=1e-12, atol=1e-14)
    # T > 0: the transition law's mean and variance
    temp, m = 0.8, 200_000
    hot = UnderdampedLangevin(force=free, gamma=gamma, temperature=temp)
    v0s = torch.full((m, 1), 1.5, dtype=DT)
    _, vs = simulate_langevin(hot, torch.zeros_like(v0s), v0s, dt=h, n_steps=n, scheme=scheme,
                              generator=torch.Generator().manual_seed(4), save_every=n)
    var = temp * (1 - math.exp(-2 * gamma * t))
    assert abs(float(vs[-1].mean()) - 1.5 * math.exp(-gamma * t)) < 5 * math.sqrt(var / m)
    assert abs(float(vs[-1].var()) / var - 1) < 5 * math.sqrt(2 / m)


@pytest.mark.parametrize("scheme", [BAOAB(), OBABO()], ids=["BAOAB", "OBABO"])
def test_hamiltonian_is_conserved_to_second_order_by_velocity_verlet(scheme):
    k = torch.tensor([1.0, 4.0], dtype=DT)
    system = UnderdampedLangevin(potential=lambda z: 0.5 * (k * z**2).sum(-1) + 0.1 * (z**4).sum(-1),
                                 gamma=0.0, temperature=1.0)
    z0 = torch.tensor([[1.0, 0.5], [0.0, -0.2]], dtype=DT)
    v0 = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=DT)
    h0 = system.energy(z0, v0)                          # one Hamiltonian per batch element
    expected = [0.5 * 1.0 + 0.5 * 4 * 0.25 + 0.1 * (1 + 0.0625) + 0.5, 0.5 * 4 * 0.04 + 0.1 * 0.0016 + 2.0]
    torch.testing.assert_close(h0, torch.tensor(expected, dtype=DT), rtol=1e-14, atol=1e-14)
    devs = []
    for h in (0.1, 0.05):
        with torch.no_grad():                           # the force is -∇U by autograd; no graph kept
            zs, vs = simulate_langevin(system, z0, v0, dt=h, n_steps=int(round(20 / h)), scheme=scheme)
            devs.append(float((system.energy(zs, vs) - h0).abs().max()))
    assert devs[0] < 0.05 * float(h0.min())             # conserved up to O(h²), no drift
    assert 3.0 < devs[0] / devs[1] < 5.0, devs


def test_langevin_flow_euler_accepts_full_per_step_friction():
    # γ = 1 is the closed end of the per-step range [0, 1]: the velocity is redrawn, v' = √(2T) ξ,
    # independent of v (variance 2T/(2 - γ) = 2T at once), for a float and a tensor γ alike
    from sciflow.solvers.langevin import LangevinFlowEuler

    temp, m = 0.6, 100_000
    v0 = torch.full((m, 1), 3.0, dtype=DT)
    for gamma in (1.0, torch.tensor(1.0, dtype=DT)):
        system = UnderdampedLangevin(force=lambda z: -z, gamma=gamma, temperature=temp)
        _, vs = simulate_langevin(system, torch.zeros_like(v0), v0, dt=0.1, n_steps=1, scheme=LangevinFlowEuler(),
                                  generator=torch.Generator().manual_seed(5))
        assert abs(float(vs[-1].mean())) < 5 * math.sqrt(2 * temp / m)
        assert abs(float(vs[-1].var()) / (2 * temp) - 1) < 5 * math.sqrt(2 / m)
