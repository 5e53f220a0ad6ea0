"""Strong and weak convergence orders of the SDE solvers (float64, exact solutions on the same path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.sde import (SRA1, SRI, Additive, BrownianIncrements, Diagonal, EulerMaruyama, Milstein,
                                 ReversibleHeun, Scalar, StratonovichHeun, VirtualBrownianTree, sdeint)

DT = torch.float64
MU, SIGMA, T = 0.8, 0.9, 1.0


def _slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


def _gbm_errors(solver, calculus, n_paths=1500, levels=(3, 4, 5, 6, 7), fine=7, noise=None, tree=False):
    """Mean |X_N - X(T)| for geometric Brownian motion on one shared fine Brownian path."""
    g = torch.Generator().manual_seed(1234)
    noise = noise or Diagonal()
    y0 = torch.ones(n_paths, 1, dtype=DT)
    if tree:
        bm = VirtualBrownianTree(0.0, T, noise.increment_shape(y0.shape), seed=99, dtype=DT, tol=2.0**-12)
    else:
        bm = BrownianIncrements.uniform(0.0, T, 2**fine, noise.increment_shape(y0.shape), generator=g, dtype=DT,
                                        levy_area=True)
    w_t = bm.increment(0.0, T)
    if calculus == "ito":
        exact = torch.exp((MU - 0.5 * SIGMA**2) * T + SIGMA * w_t)
    else:
        exact = torch.exp(MU * T + SIGMA * w_t)
    hs, errs = [], []
    for lv in levels:
        dt = T / 2**lv
        ys = sdeint(lambda t, y: MU * y, lambda t, y: SIGMA * y, y0, torch.tensor([0.0, T], dtype=DT),
                    noise=noise, solver=solver, dt=dt, brownian=bm)
        hs.append(dt)
        errs.append(float((ys[-1] - exact).abs().mean()))
    return hs, errs


@pytest.mark.parametrize(
    "solver, calculus, order",
    [(EulerMaruyama(), "ito", 0.5), (Milstein(), "ito", 1.0), (StratonovichHeun(), "stratonovich", 1.0),
     (SRI(), "ito", 1.5)],
)
def test_strong_order_gbm(solver, calculus, order):
    hs, errs = _gbm_errors(solver, calculus)
    slope = _slope(hs, errs)
    assert abs(slope - order) < 0.2, f"{solver!r}: strong order {slope:.2f}, declared {order}; errors {errs}"
    assert solver.strong_order == order


def test_milstein_scalar_noise_order_on_vector_state():
    # scalar noise: one Brownian motion drives both components of a 2-d GBM (commutative)
    hs, errs = _gbm_errors(Milstein(), "ito", noise=Scalar(state_ndim=1), n_paths=800)
    assert abs(_slope(hs, errs) - 1.0) < 0.2


def _additive_problem():
    # strong noise so the order-1.5 stochastic error, not the order-2 deterministic one, dominates
    f = lambda t, y: 2 * torch.sin(2 * y) - y  # noqa: E731  nonlinear drift
    g = lambda t, y: (1.2 + 0.8 * t) * torch.ones_like(y)  # noqa: E731  additive, time-dependent
    return f, g


def _additive_errors(solver, levels, fine, n_paths=400, seed=7):
    f, g = _additive_problem()
    gen = torch.Generator().manual_seed(seed)
    y0 = torch.full((n_paths, 1), 0.5, dtype=DT)
    bm = BrownianIncrements.uniform(0.0, T, 2**fine, y0.shape, generator=gen, dtype=DT, levy_area=True)
    tt = torch.tensor([0.0, T], dtype=DT)
    ref = sdeint(f, g, y0, tt, noise=Additive(), solver=SRA1(), dt=T / 2**fine, brownian=bm)[-1]
    hs, errs = [], []
    for lv in levels:
        ys = sdeint(f, g, y0, tt, noise=Additive(), solver=solver, dt=T / 2**lv, brownian=bm)
        hs.append(T / 2**lv)
        errs.append(float((ys[-1] - ref).abs().mean()))
    return hs, errs


def test_sra1_strong_order_additive():
    hs, errs = _additive_errors(SRA1(), levels=(3, 4, 5, 6), fine=10)
    slope = _slope(hs, errs)
    assert abs(slope - 1.5) < 0.25, f"SRA1 strong order {slope:.2f}; errors {errs}"
    # and it beats Euler–Maruyama (strong order 1.0 for additive noise) on the same path
    _, errs_em = _additive_errors(EulerMaruyama(), levels=(6,), fine=10)
    assert errs[-1] < 0.2 * errs_em[0]


def test_sri_strong_order_on_virtual_tree():
    """The tree's space-time Lévy area makes order 1.5 available without pre-sampling."""
    hs, errs = _gbm_errors(SRI(), "ito", n_paths=600, levels=(2, 3, 4, 5), tree=True)
    assert abs(_slope(hs, errs) - 1.5) < 0.25, errs


def test_reversible_heun_order_additive():
    hs, errs = _additive_errors(ReversibleHeun(), levels=(3, 4, 5, 6), fine=10)
    slope = _slope(hs, errs)
    assert abs(slope - 1.0) < 0.25, f"ReversibleHeun strong order {slope:.2f}; errors {errs}"


def test_euler_maruyama_weak_order_ou_moments():
    """Weak order 1 on Ornstein–Uhlenbeck dX = -θX dt + σ dW: E X_T and E X_T² against closed forms."""
    theta, sigma, x0, n = 1.0, 1.0, 1.0, 200_000
    mean_exact = x0 * math.exp(-theta * T)
    m2_exact = mean_exact**2 + sigma**2 / (2 * theta) * (1 - math.exp(-2 * theta * T))
    hs, errs = [], []
    for k, steps in enumerate((2, 4, 8)):
        gen = torch.Generator().manual_seed(100 + k)
        ys = sdeint(lambda t, y: -theta * y, lambda t, y: sigma * torch.ones_like(y),
                    torch.full((n,), x0, dtype=DT), torch.tensor([0.0, T], dtype=DT),
                    noise=Additive(), dt=T / steps, generator=gen)[-1]
        err = abs(float(ys.mean()) - mean_exact) + abs(float((ys**2).mean()) - m2_exact)
        hs.append(T / steps)
        errs.append(err)
    slope = _slope(hs, errs)
    assert abs(slope - 1.0) < 0.25, f"EM weak order {slope:.2f}; errors {errs}"


def test_save_times_hit_exactly_and_shapes():
    gen = torch.Generator().manual_seed(0)
    y0 = torch.ones(3, 4, 2, dtype=DT)  # (*batch, *state) with two batch axes
    t = torch.tensor([0.0, 0.15, 0.5, 1.0], dtype=DT)
    ys = sdeint(lambda t, y: -y, lambda t, y: 0 * y, y0, t, dt=1e-3, generator=gen)
    assert ys.shape == (4, 3, 4, 2)
    # zero diffusion: EM is explicit Euler; compare with the exact ODE solution at the save times
    exact = torch.exp(-t).reshape(-1, 1, 1, 1) * y0
    assert torch.allclose(ys, exact, atol=2e-3)
