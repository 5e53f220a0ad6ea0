"""Rodas4 (Rosenbrock, L-stable, stiffly accurate): orders, stiff accuracy, batching, gradients, errors.

References are exact solutions or scipy's Radau at rtol 1e-10 / atol 1e-14 (Hairer's RADAU5 family).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sciflow.solvers import (BacksolveAdjoint, CheckpointAdjoint, ConstantStepSize, Dopri5, ODETerm,
                             PIController, Rodas4, SaveAt, odeint, solve)
from sciflow.solvers.registry import SOLVERS

DT = torch.float64


def slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# --- orders: non-stiff, non-autonomous, nonlinear problem with a known solution ------------------

def smooth(t, y):  # y1 = 1/(1+t^2), y2 = exp(sin t)
    t = t.reshape(-1, 1) if t.ndim else t
    return torch.cat([-2 * t * y[..., :1] ** 2, y[..., 1:] * torch.cos(t)], -1)


def smooth_exact(t):
    return torch.stack([1 / (1 + t ** 2), torch.exp(torch.sin(t))], -1)


def test_global_order_is_four_with_fixed_steps():
    y0 = torch.tensor([1.0, 1.0], dtype=DT)
    t = torch.tensor([0.0, 2.0], dtype=DT)
    ns = [40, 80, 160, 320]
    errs = [(odeint(smooth, y0, t, solver=Rodas4(), dt=2.0 / n)[-1] - smooth_exact(t[-1])).abs().max().item()
            for n in ns]
    assert abs(slope([2.0 / n for n in ns], errs) - 4.0) < 0.3, errs


def test_local_error_estimate_and_dense_output_orders():
    """One step of size h: y1's local error ~ h^5 (order 4), the estimate e = U_6 ~ h^4 (embedded
    order 3), the continuous extension ~ h^4 (order 3)."""
    s = Rodas4()
    t0 = torch.tensor([0.3], dtype=DT)
    y0 = smooth_exact(t0)
    hs = [0.2, 0.1, 0.05, 0.025]
    loc, est, dense = [], [], []
    th = torch.tensor([[0.3, 0.5, 0.8]], dtype=DT)
    for h in hs:
        h_ = torch.tensor([h], dtype=DT)
        y1, us, err = s.step(smooth, t0, y0, h_, smooth(t0, y0))
        loc.append((y1 - smooth_exact(t0 + h_)).abs().max().item())
        est.append(err.abs().max().item())
        yd = s.interpolate(th, h_, y0, y1, us, None)
        dense.append((yd[0] - smooth_exact(t0 + th[0] * h)).abs().max().item())
        assert torch.equal(s.interpolate(torch.ones(1, 1, dtype=DT), h_, y0, y1, us, None)[0, 0], y1[0])
    assert abs(slope(hs, loc) - (s.order + 1)) < 0.35, loc
    assert abs(slope(hs, est) - (s.error_order + 1)) < 0.2, est
    assert abs(slope(hs, dense) - 4.0) < 0.2, dense


def test_declared_capabilities_and_registry():
    s = SOLVERS["rodas4"]()
    assert isinstance(s, Rodas4) and (s.order, s.error_order, s.stages, s.fsal, s.adaptive) == (4, 3, 6, False, True)
    declared = (Rodas4.jacobians_per_step, Rodas4.compilable, Rodas4.backsolve, Rodas4.default_window)
    assert declared == (1, False, False, 1)
    tab = Rodas4.tableau  # stiffly accurate: y1 = Y_6 + U_6, the last row of a is m without its last entry
    assert tab.a[5] == tab.m[:5] and tab.alpha[4:] == (1.0, 1.0) and tab.e == (0, 0, 0, 0, 0, 1.0)


# --- stiff accuracy: Prothero–Robinson, λ = 1e6 ---------------------------------------------------

LAM = 1e6


def prothero_robinson(t, y):
    return -LAM * (y - torch.sin(t)) + torch.cos(t)


def test_prothero_robinson_stiff_accuracy_and_step_count_vs_dopri5():
    t = torch.linspace(0, 10, 11, dtype=DT)
    y0 = torch.zeros(1, dtype=DT)
    ys, st = odeint(prothero_robinson, y0, t, solver=Rodas4(), rtol=1e-6, atol=1e-8, return_stats=True)
    err = (ys[:, 0] - torch.sin(t)).abs().max().item()
    n = int(st["n_accepted"])
    assert err < 1e-6, err                    # ~ the tolerance, with steps h >> 1/λ
    assert n < 60 and st["njev"] == st["n_steps"]
    # Dopri5 is stability-bound at h ~ 3.3/λ: it cannot finish in 1000x Rodas4's steps
    with pytest.raises(RuntimeError, match="max_steps"):
        odeint(prothero_robinson, y0, t, solver=Dopri5(),
               controller=PIController(rtol=1e-6, atol=1e-8, max_steps=1000 * n))


def test_interpolating_saves_is_opt_in():
    """window=4 interpolates with the (non stiff-aware) continuous extension: less accurate on
    Prothero–Robinson than the default, which makes every save time a step end point."""
    term = ODETerm(prothero_robinson)
    ts = torch.linspace(0, 10, 11, dtype=DT)
    ctrl = PIController(rtol=1e-6, atol=1e-8)
    y0 = torch.zeros(1, dtype=DT)
    at_steps = solve(term, Rodas4(), 0.0, 10.0, y0, saveat=SaveAt(ts=ts), controller=ctrl)
    interp = solve(term, Rodas4(), 0.0, 10.0, y0, saveat=SaveAt(ts=ts), controller=ctrl, window=4)
    e_steps = (at_steps.ys[:, 0] - torch.sin(ts)).abs().max().item()
    e_interp = (interp.ys[:, 0] - torch.sin(ts)).abs().max().item()
    assert e_steps < 1e-6 < 1e-3 < e_interp


# --- Robertson kinetics and Van der Pol vs scipy Radau --------------------------------------------

K1, K2, K3 = 0.04, 3e7, 1e4


def robertson(t, y, k1=K1):
    y1, y2, y3 = y.unbind(-1)
    return torch.stack([-k1 * y1 + K3 * y2 * y3, k1 * y1 - K3 * y2 * y3 - K2 * y2 ** 2, K2 * y2 ** 2], -1)


def robertson_np(t, y):
    y1, y2, y3 = y
    return [-K1 * y1 + K3 * y2 * y3, K1 * y1 - K3 * y2 * y3 - K2 * y2 ** 2, K2 * y2 ** 2]


def test_robertson_vs_radau():
    ts = np.concatenate([[0.0], np.logspace(-5, 5, 21)])
    ref = solve_ivp(robertson_np, (0, 1e5), [1.0, 0.0, 0.0], method="Radau", rtol=1e-10, atol=1e-14,
                    t_eval=ts).y.T
    rtol, atol = 1e-6, 1e-10
    ys, st = odeint(robertson, torch.tensor([1.0, 0.0, 0.0], dtype=DT), torch.tensor(ts), solver=Rodas4(),
                    rtol=rtol, atol=atol, return_stats=True)
    ys = ys.numpy()
    rel = np.abs(ys - ref) / np.abs(ref).clip(1e-300)
    big = np.abs(ref) > 1e3 * atol            # relative error is meaningful above the atol floor
    assert rel[big].max() < 1e-5, rel[big].max()          # measured 3.4e-7
    assert (np.abs(ys - ref) / (rtol * np.abs(ref) + atol)).max() < 10
    assert np.abs(ys.sum(1) - 1).max() < 1e-12            # y1 + y2 + y3 = 1 (linear invariant)
    assert 50 < int(st["n_accepted"]) < 500               # measured 192; an explicit solver needs ~1e7


def test_van_der_pol_mu_1000_one_period_vs_radau():
    mu = 1000.0

    def vdp(t, y):
        x, v = y.unbind(-1)
        return torch.stack([v, mu * (1 - x ** 2) * v - x], -1)

    def vdp_np(t, y):
        return [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]]

    period = (3 - 2 * math.log(2)) * mu
    ts = np.linspace(0, period, 21)
    ref = solve_ivp(vdp_np, (0, period), [2.0, 0.0], method="Radau", rtol=1e-10, atol=1e-12, t_eval=ts,
                    jac=lambda t, y: [[0, 1], [-2 * mu * y[0] * y[1] - 1, mu * (1 - y[0] ** 2)]]).y.T
    ys, st = odeint(vdp, torch.tensor([2.0, 0.0], dtype=DT), torch.tensor(ts), solver=Rodas4(), rtol=1e-6,
                    atol=1e-8, return_stats=True)
    err = np.abs(ys.numpy() - ref)
    assert err[:, 0].max() < 2e-4, err[:, 0].max()        # measured 2.5e-5 (x in [-2, 2])
    assert err[:, 1].max() < 1e-3, err[:, 1].max()        # measured 1.1e-4
    assert int(st["n_accepted"]) < 2000                   # measured 560


# --- batched: per-trajectory clocks ---------------------------------------------------------------

def test_batched_trajectories_take_their_own_steps():
    lams = torch.tensor([1.0, 1e2, 1e4, 1e6], dtype=DT)

    def pr(t, y, lam=lams):
        lam = lam.reshape(-1, 1) if lam.ndim else lam
        return -lam * (y - torch.sin(t)) + torch.cos(t) + torch.sin(y) * 0.1

    t = torch.linspace(0, 3, 4, dtype=DT)
    y0 = torch.full((4, 1), 0.5, dtype=DT)
    ys, st = odeint(pr, y0, t, solver=Rodas4(), rtol=1e-6, atol=1e-9, batch_ndim=1, return_stats=True)
    n_acc = st["n_accepted"]
    assert len(set(n_acc.tolist())) > 1                   # different stiffness, different steps
    for i in range(4):
        yi, sti = odeint(lambda t, y: pr(t, y, lams[i]), y0[i:i + 1], t, solver=Rodas4(), rtol=1e-6,
                         atol=1e-9, batch_ndim=1, return_stats=True)
        assert int(sti["n_accepted"][0]) == int(n_acc[i])
        assert torch.allclose(yi[:, 0], ys[:, i], rtol=1e-12, atol=1e-14)


# --- gradients --------------------------------------------------------------------------------------

def test_gradient_matches_analytic_derivative_on_the_linear_problem():
    k = torch.tensor(50.0, dtype=DT, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=DT)
    T = 0.1
    ys = odeint(lambda t, y: -k * y, y0, torch.tensor([0.0, T], dtype=DT), solver=Rodas4(), rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(ys[-1].sum(), k)
    exact = -T * y0.sum() * math.exp(-50.0 * T)
    assert abs(g.item() - exact) < 1e-7 * abs(exact)


def test_gradient_matches_central_differences_float64():
    """DirectAdjoint: the exact derivative of the computed (fixed-step) solution w.r.t. a parameter
    of a stiff, nonlinear, non-autonomous field (forced Van der Pol, μ = 100) — including the
    dependence of the Jacobian and of ∂f/∂t on it."""
    t = torch.tensor([0.0, 0.25, 0.5], dtype=DT)
    y0 = torch.tensor([2.0, 0.0], dtype=DT)

    def loss(mu):
        def f(tt, y):
            x, v = y.unbind(-1)
            return torch.stack([v, mu * (1 - x ** 2) * v - x + torch.sin(3 * tt)], -1)
        ys = odeint(f, y0, t, solver=Rodas4(), dt=0.01)
        return (ys[1:] ** 2).sum()

    mu = torch.tensor(100.0, dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(loss(mu), mu)
    eps = 1e-4
    with torch.no_grad():
        fd = (loss(torch.tensor(100.0 + eps, dtype=DT)) - loss(torch.tensor(100.0 - eps, dtype=DT))) / (2 * eps)
    assert abs(g.item() - fd.item()) < 1e-6 * abs(fd.item()), (g.item(), fd.item())


def test_backsolve_with_explicit_backward_solver_works_and_unsupported_adjoints_are_refused():
    k = torch.tensor(5.0, dtype=DT, requires_grad=True)
    f = lambda t, y: -k * y + torch.sin(t)  # noqa: E731
    y0, t = torch.ones(2, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT)
    ys = odeint(f, y0, t, solver=Rodas4(), rtol=1e-8, atol=1e-10)
    (g_direct,) = torch.autograd.grad(ys[-1].sum(), k)
    ys = odeint(f, y0, t, solver=Rodas4(), rtol=1e-8, atol=1e-10,
                adjoint=BacksolveAdjoint([k], solver=Dopri5()))
    (g_back,) = torch.autograd.grad(ys[-1].sum(), k)
    assert abs(g_back.item() - g_direct.item()) < 1e-6 * abs(g_direct.item())
    with pytest.raises(ValueError, match="backward solver of BacksolveAdjoint"):
        odeint(f, y0, t, solver=Rodas4(), adjoint=BacksolveAdjoint([k]))
    with pytest.raises(ValueError, match="cannot be used with CheckpointAdjoint"):
        odeint(f, y0, t, solver=Rodas4(), adjoint=CheckpointAdjoint())


# --- bad input --------------------------------------------------------------------------------------

class _NoFuncSupport(torch.autograd.Function):
    """An old-style autograd.Function (forward with ctx): torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


def test_vector_field_without_autodiff_support_is_a_clear_error():
    y0, t = torch.ones(2, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(TypeError, match="needs the Jacobian"):
        odeint(lambda t, y: _NoFuncSupport.apply(y), y0, t, solver=Rodas4())
    with pytest.raises(TypeError, match="needs the Jacobian"):
        odeint(lambda t, y: torch.from_numpy(-y.numpy()), y0, t, solver=Rodas4())


def test_singular_matrix_is_a_clear_error():
    # y' = 4 y with h = 1: I/(hγ) - J = 4 I - 4 I = 0
    with pytest.raises(FloatingPointError, match="singular"):
        odeint(lambda t, y: 4.0 * y, torch.ones(2, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT),
               solver=Rodas4(), controller=ConstantStepSize(1.0))
    with pytest.raises(FloatingPointError, match="Jacobian .* non-finite"):
        odeint(lambda t, y: torch.sqrt(y), torch.zeros(2, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT),
               solver=Rodas4(), dt=0.1)


def test_compile_is_refused():
    with pytest.raises(ValueError, match="does not support compile=True"):
        odeint(lambda t, y: -y, torch.ones(2, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT), solver=Rodas4(),
               compile=True)
