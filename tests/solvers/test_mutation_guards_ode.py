"""Mutation-audit guards for the ODE core: properties the other ODE tests left unchecked.

``test_initial_step_matches_hairer_and_scipy``: the automatic first step of Hairer, Nørsett &
Wanner (*Solving ODEs I*, §II.4, "Starting step size") is the same algorithm as scipy's
``select_initial_step``; a swapped ratio ``d1/d0`` in ``h0 = 0.01 d0/d1`` (or a wrong exponent
``1/(error_order + 1)``) still integrates to tolerance — the controller recovers — so only the
first step itself exposes it. It is read off the field's evaluation times: the first is
``f(t0, y0)``, the second Hairer's probe ``f(t0 + h0, y0 + h0 f0)`` with ``h0 = 0.01 d0/d1``, the
third the first step's second stage at ``t0 + c_2 h``; on the shared-clock and the
per-trajectory paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciflow.solvers import RK4, Bosh3, Dopri5, Heun, Tsit5, odeint

DT = torch.float64

# y' = -Λ y + c sin(y): stiff-ish (|f0| >> |y0|, so 100 h0 binds at loose tolerance) and nonlinear
LAM = np.array([100.0, 30.0, 1.0])
C = np.array([0.5, -2.0, 3.0])


def _f_np(t, y):
    return -LAM * y + C * np.sin(y)


def _f_torch(t, y):
    return -torch.as_tensor(LAM, dtype=y.dtype) * y + torch.as_tensor(C, dtype=y.dtype) * torch.sin(y)


class _Recorder:
    """Vector field that records the times of its first evaluations."""

    def __init__(self):
        self.times = []

    def __call__(self, t, y):
        if len(self.times) < 3:
            self.times.append(t.detach().clone())
        return _f_torch(t, y)


@pytest.mark.parametrize("rtol, atol", [(1e-2, 1e-2), (1e-6, 1e-8)])
@pytest.mark.parametrize("solver", [Dopri5(), Tsit5(), Bosh3()], ids=lambda s: type(s).__name__)
def test_initial_step_matches_hairer_and_scipy(solver, rtol, atol):
    # scipy's implementation is private API: skip (not fail) if a scipy release moves it
    select_initial_step = pytest.importorskip("scipy.integrate._ivp.common").select_initial_step
    y0s = np.array([[1.0, 0.5, -0.2], [0.01, 2.0, 0.3]])
    t1 = 5.0
    c2 = float(solver.tableau.c[1])
    expected, probe = [], []
    for y0 in y0s:
        f0 = _f_np(0.0, y0)
        expected.append(select_initial_step(_f_np, 0.0, y0, t1, np.inf, f0, 1, solver.error_order, rtol, atol))
        scale = atol + rtol * np.abs(y0)
        d0, d1 = np.sqrt(np.mean((y0 / scale) ** 2)), np.sqrt(np.mean((f0 / scale) ** 2))
        probe.append(min(0.01 * d0 / d1, t1))
    expected, probe = np.array(expected), np.array(probe)
    assert expected.min() > 0 and np.ptp(expected) > 0  # the two rows really differ
    # one shared clock per solve: solve each row alone
    for y0, h_ref, p_ref in zip(y0s, expected, probe):
        rec = _Recorder()
        odeint(rec, torch.tensor(y0, dtype=DT), torch.tensor([0.0, t1], dtype=DT), solver=solver,
               rtol=rtol, atol=atol)
        np.testing.assert_allclose(float(rec.times[1]), p_ref, rtol=1e-12)
        np.testing.assert_allclose(float(rec.times[2]) / c2, h_ref, rtol=1e-10)
    # per-trajectory error control: each row gets its own first step
    rec = _Recorder()
    odeint(rec, torch.tensor(y0s, dtype=DT), torch.tensor([0.0, t1], dtype=DT), solver=solver,
           rtol=rtol, atol=atol, batch_ndim=1)
    np.testing.assert_allclose(rec.times[1].reshape(-1).numpy(), probe, rtol=1e-12)
    np.testing.assert_allclose(rec.times[2].reshape(-1).numpy() / c2, expected, rtol=1e-10)


@pytest.mark.parametrize("solver, dt, tol", [(Dopri5(), None, 1e-7), (Tsit5(), None, 1e-7), (RK4(), 0.01, 1e-8),
                                             (Bosh3(), None, 1e-5), (Heun(), None, 1e-3)],
                         ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("batch_ndim", [0, 1])
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])  # the no-grad eager path has its own loop
def test_backward_in_time_with_a_time_dependent_field(solver, dt, tol, batch_ndim, grad):
    """``y' = sin(ω t) + λ y`` (odd in ``t``: a field fed ``-t`` is wrong) integrated from ``t = 2``
    down to ``t = 0``: the field must see the true (decreasing) time. Exact:
    ``y(t) = e^{λ(t-2)} (y(2) - y_p(2)) + y_p(t)``. The other ODE tests integrate time-dependent
    fields forwards only."""
    lam, om = -0.5, 3.0
    y2 = torch.tensor([[1.0], [-0.4]], dtype=DT)
    ts = torch.tensor([2.0, 1.3, 0.0], dtype=DT)

    def particular(t):  # y_p = -(ω cos ωt + λ sin ωt)/(λ² + ω²) solves y_p' = λ y_p + sin ωt
        return -(om * torch.cos(om * t) + lam * torch.sin(om * t)) / (lam**2 + om**2)

    exact = torch.stack([torch.exp(lam * (t - 2.0)) * (y2 - particular(ts[0])) + particular(t) for t in ts])
    rtol = 1e-5 if isinstance(solver, Heun) else 1e-9           # Heun: non-FSAL, order 2
    kw = dict(solver=solver, rtol=rtol, atol=rtol / 100) if dt is None else dict(solver=solver, dt=dt)
    with torch.set_grad_enabled(grad):
        ys = odeint(lambda t, y: torch.sin(om * t) + lam * y, y2, ts, batch_ndim=batch_ndim, **kw)
    torch.testing.assert_close(ys, exact, rtol=0, atol=tol)
