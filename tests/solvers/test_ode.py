"""ODE solvers: measured convergence orders, dense output, Lorenz-63 vs scipy, layouts, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sciflow.solvers import (
    RK4, Bosh3, ConstantStepSize, Dopri5, Euler, Heun, Midpoint, ODETerm, PIController, Rodas4, SaveAt,
    Torchdiffeq, Tsit5, odeint, solve,
)
from sciflow.solvers.registry import SOLVERS

DT = torch.float64
ALL = [Euler(), Midpoint(), Heun(), RK4(), Bosh3(), Dopri5(), Tsit5()]
ADAPTIVE = [Heun(), Bosh3(), Dopri5(), Tsit5()]

# damped rotation + coupling: y' = A y, y(t) = expm(tA) y0
A = torch.tensor([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.5], [0.0, -0.5, -0.3]], dtype=DT)


def linear(t, y):
    return y @ A.T


def exact_linear(y0, t):
    return torch.stack([y0 @ torch.linalg.matrix_exp(A * ti).T for ti in t])


def slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize("solver", ALL, ids=lambda s: type(s).__name__)
def test_convergence_order_matches_declared(solver):
    y0 = torch.tensor([[1.0, 0.0, 0.5], [-0.3, 0.8, 0.1]], dtype=DT)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=DT)
    exact = exact_linear(y0, t)
    # step ranges where the error is in the asymptotic regime and above round-off
    hs = [0.1, 0.05, 0.025, 0.0125] if solver.order < 5 else [0.08, 0.04, 0.02, 0.01]
    errs = [(odeint(linear, y0, t, solver=solver, dt=h) - exact).abs().max().item() for h in hs]
    measured = slope(hs, errs)
    assert abs(measured - solver.order) < 0.3, (type(solver).__name__, measured, errs)


@pytest.mark.parametrize("solver,order", [(Dopri5(), 5), (Tsit5(), 5), (Bosh3(), 4), (RK4(), 4)],
                         ids=lambda x: type(x).__name__ if not isinstance(x, int) else str(x))
def test_dense_output_local_order(solver, order):
    """Interpolant error inside one step is O(h^(p+1)): Dopri5/Tsit5 continuous extensions are
    order 4 (local error h^5); the Hermite fallback is order 3 (local error h^4)."""
    y0 = torch.tensor([[1.0, 0.0, 0.5]], dtype=DT)
    theta = torch.tensor([[0.3, 0.5, 0.77]], dtype=DT)
    hs = [0.1, 0.05, 0.025, 0.0125]
    errs = []
    for h in hs:
        ht = torch.tensor([h], dtype=DT)
        t0 = torch.zeros(1, dtype=DT)
        k1 = linear(t0, y0)
        y1, ks, _ = solver.step(linear, t0, y0, ht, k1)
        f1 = linear(t0 + ht, y1)
        vals = solver.interpolate(theta, ht, y0, y1, ks, f1)[0]
        exact = torch.stack([y0[0] @ torch.linalg.matrix_exp(A * h * th).T for th in theta[0]])
        errs.append((vals - exact).abs().max().item())
    assert abs(slope(hs, errs) - order) < 0.35, errs


@pytest.mark.parametrize("solver", [Dopri5(), Tsit5(), Bosh3()], ids=lambda s: type(s).__name__)
def test_dense_output_elementwise_path_matches(solver):
    """The broadcast (compile-friendly) dense-output evaluation equals the matrix-product one."""
    g = torch.Generator().manual_seed(4)
    y0 = torch.randn(5, 3, generator=g, dtype=DT)
    t0 = torch.zeros(5, dtype=DT)
    h = torch.rand(5, generator=g, dtype=DT) * 0.2
    y1, ks, _ = solver.step(linear, t0, y0, h, linear(t0, y0))
    theta = torch.rand(5, 4, generator=g, dtype=DT)
    a = solver.interpolate(theta, h, y0, y1, ks, ks[-1])
    b = solver.interpolate(theta, h, y0, y1, ks, ks[-1], elementwise=True)
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.slow
def test_compiled_attempt_matches_eager():
    """compile=True fuses the attempt with torch.compile; same steps, same answer (slow: compiles)."""
    g = torch.Generator().manual_seed(5)
    y0 = torch.randn(16, 3, generator=g, dtype=DT) * 5 + torch.tensor([0.0, 0.0, 25.0], dtype=DT)
    t = torch.linspace(0, 1, 6, dtype=DT)
    for bn in (0, 1):
        with torch.no_grad():
            a, sa = odeint(lorenz, y0, t, solver=Tsit5(), rtol=1e-7, atol=1e-7, batch_ndim=bn, return_stats=True)
            b, sb = odeint(lorenz, y0, t, solver=Tsit5(), rtol=1e-7, atol=1e-7, batch_ndim=bn, return_stats=True,
                           compile=True)
        assert sa["nfe"] == sb["nfe"]
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def lorenz(t, y, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, yy, z = y.unbind(-1)
    return torch.stack([sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z], -1)


def lorenz_np(t, y, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, yy, z = y
    return [sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z]


@pytest.fixture(scope="module")
def lorenz_reference():
    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(8, 3, generator=g, dtype=DT) * 5 + torch.tensor([0.0, 0.0, 25.0], dtype=DT)
    t = torch.linspace(0.0, 1.0, 5, dtype=DT)
    ref = np.stack([solve_ivp(lorenz_np, (0, 1), y.numpy(), method="DOP853", rtol=1e-12, atol=1e-12,
                              t_eval=t.numpy()).y.T for y in y0], 1)
    return y0, t, torch.from_numpy(ref)


@pytest.mark.parametrize("solver", [Dopri5(), Tsit5()], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("batch_ndim", [0, 1])
def test_lorenz_batched_vs_scipy_dop853(lorenz_reference, solver, batch_ndim):
    y0, t, ref = lorenz_reference
    ys, stats = odeint(lorenz, y0, t, solver=solver, rtol=1e-9, atol=1e-9, batch_ndim=batch_ndim,
                       return_stats=True)
    err = (ys - ref).abs().max().item()
    assert err < 2e-5, err
    # a looser tolerance is measurably worse: the controller really controls the error
    ys_loose = odeint(lorenz, y0, t, solver=solver, rtol=1e-5, atol=1e-5, batch_ndim=batch_ndim)
    assert (ys_loose - ref).abs().max().item() > 3 * err
    if batch_ndim:
        assert stats["n_accepted"].shape == (8,)
        assert int(stats["n_accepted"].min()) < int(stats["n_accepted"].max())  # own step sequences


def test_per_trajectory_error_control_matches_solo_solves(lorenz_reference):
    """With batch_ndim = 1 each trajectory takes exactly the steps it would take alone."""
    y0, t, _ = lorenz_reference
    ys = odeint(lorenz, y0, t, solver=Dopri5(), rtol=1e-6, atol=1e-6, batch_ndim=1)
    for i in (5,):
        solo = odeint(lorenz, y0[i:i + 1], t, solver=Dopri5(), rtol=1e-6, atol=1e-6, batch_ndim=1)
        torch.testing.assert_close(ys[:, i], solo[:, 0], rtol=1e-12, atol=1e-12)


def test_per_sample_time_grids_fixed_and_adaptive():
    g = torch.Generator().manual_seed(1)
    y0 = torch.randn(4, 3, generator=g, dtype=DT)
    ts = torch.sort(torch.rand(4, 6, generator=g, dtype=DT) * 3, dim=1).values
    for solver, kw in [(RK4(), {"dt": 0.01}), (Dopri5(), {"rtol": 1e-10, "atol": 1e-12})]:
        ys = odeint(linear, y0, ts, solver=solver, **kw)
        assert ys.shape == (6, 4, 3)
        for b in range(4):
            ex = exact_linear(y0[b], ts[b] - ts[b, 0])
            assert (ys[:, b] - ex).abs().max() < 1e-7


def test_any_state_shape_and_backward_time():
    g = torch.Generator().manual_seed(2)
    y0 = torch.randn(2, 5, 3, generator=g, dtype=DT)  # (*batch, *state) with batch (2, 5)
    t = torch.tensor([0.0, 0.7, 1.5], dtype=DT)
    ys = odeint(linear, y0, t, solver=Tsit5(), rtol=1e-10, atol=1e-12, batch_ndim=2)
    assert ys.shape == (3, 2, 5, 3)
    ex = torch.stack([y0 @ torch.linalg.matrix_exp(A * ti).T for ti in t])
    assert (ys - ex).abs().max() < 1e-8
    back = odeint(linear, ys[-1], t.flip(0), solver=Dopri5(), rtol=1e-10, atol=1e-12)
    assert (back[-1] - y0).abs().max() < 1e-7


def test_time_dependent_field_gets_broadcastable_time():
    """f uses t: shared clock (0-d t) and per-trajectory clocks ((batch, 1) t) agree."""
    f = lambda t, y: torch.cos(t) * y  # y(t) = y0 exp(sin t)
    y0 = torch.tensor([[1.0], [2.0]], dtype=DT)
    t = torch.linspace(0, 3, 4, dtype=DT)
    ex = y0.squeeze(-1) * torch.exp(torch.sin(t)).unsqueeze(-1)
    for bn in (0, 1):
        ys = odeint(f, y0, t, rtol=1e-10, atol=1e-12, batch_ndim=bn)
        assert (ys.squeeze(-1) - ex).abs().max() < 1e-8


def test_dense_saving_many_points_exact_and_cheap():
    y0 = torch.tensor([1.0, 0.0, 0.5], dtype=DT)
    t_few = torch.tensor([0.0, 3.0], dtype=DT)
    t_many = torch.linspace(0, 3, 301, dtype=DT)
    _, s_few = odeint(linear, y0, t_few, rtol=1e-8, atol=1e-10, return_stats=True)
    ys, s_many = odeint(linear, y0, t_many, rtol=1e-8, atol=1e-10, return_stats=True)
    assert (ys - exact_linear(y0, t_many)).abs().max() < 1e-7
    # dense output (not step clipping) provides the saves; window clipping costs at most a few steps
    assert s_many["nfe"] <= 1.5 * s_few["nfe"] + 60


def test_solve_general_form():
    term = ODETerm(linear)
    y0 = torch.tensor([1.0, 0.0, 0.5], dtype=DT)
    sol = solve(term, Tsit5(), 0.0, 2.0, y0, saveat=SaveAt(ts=torch.tensor([0.5, 1.0], dtype=DT), t1=True),
                controller=PIController(rtol=1e-10, atol=1e-12))
    assert sol.ts.tolist() == [0.5, 1.0, 2.0]
    assert (sol.ys - exact_linear(y0, sol.ts)).abs().max() < 1e-8
    assert sol.stats["nfe"] > 0 and sol.stats["n_steps"] > 0
    sol = solve(term, RK4(), 0.0, 1.0, y0, controller=ConstantStepSize(0.01))
    assert sol.ys.shape == (1, 3) and (sol.ys[0] - exact_linear(y0, [1.0])[0]).abs().max() < 1e-8
    assert sol.stats["n_steps"] == 100


def test_pi_controller_coefficients_change_steps_not_answer(lorenz_reference):
    y0, t, ref = lorenz_reference
    ys, st = odeint(lorenz, y0, t, controller=PIController(rtol=1e-8, atol=1e-8, pcoeff=0.2, icoeff=0.3),
                    return_stats=True)
    _, st_i = odeint(lorenz, y0, t, rtol=1e-8, atol=1e-8, return_stats=True)
    assert (ys - ref).abs().max() < 1e-4
    assert st["nfe"] != st_i["nfe"]


def test_torchdiffeq_backend_agrees():
    y0 = torch.tensor([[1.0, 0.0, 0.5]], dtype=DT)
    t = torch.linspace(0, 2, 5, dtype=DT)
    ours = odeint(linear, y0, t, rtol=1e-10, atol=1e-12)
    ex = exact_linear(y0, t)
    assert (ours - ex).abs().max() < 1e-8
    for method in ("dopri5", "dopri8"):
        theirs, st = odeint(linear, y0, t, solver=Torchdiffeq(method), rtol=1e-8, atol=1e-10, return_stats=True)
        assert (theirs - ex).abs().max() < 1e-5 and st["nfe"] > 0
    fixed = odeint(linear, y0, t, solver=Torchdiffeq("rk4"), dt=0.01)
    assert (fixed - exact_linear(y0, t)).abs().max() < 1e-7
    with pytest.raises(ValueError, match="unknown torchdiffeq method"):
        Torchdiffeq("dopri6")


def test_registry_names_solver_classes():
    for name in ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5"):
        assert SOLVERS[name]().order >= 1


# --- clear errors --------------------------------------------------------------------------------

def test_error_unsorted_and_duplicated_times():
    y0 = torch.ones(3, dtype=DT)
    with pytest.raises(ValueError, match="duplicated"):
        odeint(linear, y0, torch.tensor([0.0, 1.0, 1.0], dtype=DT))
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing"):
        odeint(linear, y0, torch.tensor([0.0, 2.0, 1.0], dtype=DT))
    with pytest.raises(ValueError, match="non-finite time"):
        odeint(linear, y0, torch.tensor([0.0, float("nan")], dtype=DT))
    # per-trajectory intervals that run both ways (used to be an IndexError from inside the check)
    with pytest.raises(ValueError, match="same direction .* trajectory 1"):
        solve(ODETerm(linear), Dopri5(), 0.0, torch.tensor([1.0, -1.0], dtype=DT), torch.ones(2, 3, dtype=DT),
              batch_ndim=1)
    # save times outside the interval are named as such (not as an order change of the merged grid)
    with pytest.raises(ValueError, match=r"SaveAt.ts must lie inside \[t0, t1\]: ts\[\(1,\)\] = 2"):
        solve(ODETerm(linear), Dopri5(), 0.0, 1.0, y0, saveat=SaveAt(ts=torch.tensor([0.0, 2.0], dtype=DT)))


def test_error_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape mismatch.*\(2,\).*\(3,\)"):
        odeint(lambda t, y: y[:2], torch.ones(3, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT))
    with pytest.raises(ValueError, match="per-sample time grid"):
        odeint(linear, torch.ones(4, 3, dtype=DT), torch.rand(5, 3, dtype=DT).sort(1).values)


def test_error_solver_controller_and_term_kinds():
    with pytest.raises(ValueError, match="RK4 has no embedded error estimate"):
        odeint(linear, torch.ones(3, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT), solver=RK4(),
               controller=PIController())

    class FakeSDETerm:
        kind = "sde"
        vector_field = staticmethod(linear)

    from sciflow.solvers.ode._core import solve_grid
    with pytest.raises(TypeError, match="Dopri5 solves ode terms but was handed a FakeSDETerm"):
        solve_grid(FakeSDETerm(), Dopri5(), torch.ones(3, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT),
                   PIController())
    # the real SDE objects, both ways round
    from sciflow.solvers import Diagonal, EulerMaruyama, SDETerm
    with pytest.raises(TypeError, match="ODETerm, got SDETerm"):
        solve(SDETerm(linear, linear, Diagonal()), Dopri5(), 0.0, 1.0, torch.ones(3, dtype=DT))
    with pytest.raises(TypeError, match="EulerMaruyama solves sde terms but was handed a ODETerm"):
        odeint(linear, torch.ones(3, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT), solver=EulerMaruyama())


def test_error_non_finite_state_reports_time():
    # y' = y^2, y(0) = 1 blows up at t = 1; fixed steps overflow to inf after it
    f = lambda t, y: y * y
    t = torch.linspace(0, 2, 21, dtype=DT)
    with pytest.raises(FloatingPointError, match=r"non-finite.*t = 1\.[0-9]"):
        odeint(f, torch.ones(1, dtype=DT), t, solver=RK4(), dt=0.1)
    with pytest.raises(RuntimeError, match=r"(step size underflow|max_steps).*t = (0\.99|1 )"):
        odeint(f, torch.ones(1, dtype=DT), t, solver=Dopri5(), max_steps=5000)


def test_error_max_steps():
    with pytest.raises(RuntimeError, match="max_steps = 10 reached"):
        odeint(lorenz, torch.ones(3, dtype=DT), torch.tensor([0.0, 10.0], dtype=DT), max_steps=10)


@pytest.mark.parametrize("solver", ADAPTIVE, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("direction", [1, -1])
def test_shared_clock_paths_agree_with_masked_loop(solver, direction):
    """One clock (batch_ndim = 0): the host-controlled loop — buffered stages without autograd,
    the solver's own differentiable step with autograd — takes the masked loop's steps."""
    from sciflow.solvers.ode._flat_field import FlatField
    from sciflow.solvers.ode._integrate import integrate_adaptive
    from sciflow.solvers.ode._shared_clock import integrate_shared_clock

    g = torch.Generator().manual_seed(7)
    y0 = torch.randn(6, 3, generator=g, dtype=DT)
    ts = torch.tensor([0.0, 0.2, 0.25, 0.9, 1.0, 1.6, 2.0], dtype=DT)
    if direction < 0:
        ts = 2.0 - ts
    tol = 1e-7 if solver.order >= 3 else 1e-4   # Heun (order 2): keep the step count small
    ctrl = PIController(rtol=tol, atol=tol / 100, pcoeff=0.1, icoeff=0.3)

    def run(fn, grad):
        field = FlatField(lambda t, y: torch.cos(t) * linear(t, y), (6, 3), (), shared_clock=True,
                          direction=direction)
        with torch.set_grad_enabled(grad):
            ys, _ = fn(field, solver, y0.reshape(1, -1), (direction * ts).unsqueeze(0), ctrl, window=2)
        return ys.reshape(len(ts), 6, 3), field.stats

    masked, sm = run(integrate_adaptive, False)
    buffered, sb = run(integrate_shared_clock, False)
    listed, sl = run(integrate_shared_clock, True)
    # exact solution of y' = cos(t) A y: y(t) = expm(sin(t) A) y0 (A commutes with itself)
    ex = torch.stack([y0 @ torch.linalg.matrix_exp(A * (torch.sin(ti) - torch.sin(ts[0]))).T for ti in ts])
    assert (buffered - ex).abs().max() < 100 * tol
    torch.testing.assert_close(buffered, masked, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(listed, buffered, rtol=1e-12, atol=1e-13)
    assert sb.n_steps == sm.n_steps == sl.n_steps
    assert int(sb.n_accepted) == int(sm.n_accepted[0]) == int(sl.n_accepted)
    if solver.fsal:  # the masked loop also evaluates f(t1, y1) for rejected non-FSAL steps
        assert sb.nfe == sm.nfe == sl.nfe
    else:
        assert sb.nfe == sl.nfe <= sm.nfe


def test_shared_clock_gradient_matches_per_trajectory_with_one_trajectory():
    """autograd through the host-controlled loop equals autograd through the masked loop."""
    w = torch.tensor(0.7, dtype=DT, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.0, 0.5]], dtype=DT)
    t = torch.linspace(0, 2, 5, dtype=DT)
    f = lambda t, y: w * linear(t, y)
    (ga,) = torch.autograd.grad(odeint(f, y0, t, solver=Tsit5(), rtol=1e-8, atol=1e-10).sum(), w)
    (gb,) = torch.autograd.grad(odeint(f, y0, t, solver=Tsit5(), rtol=1e-8, atol=1e-10, batch_ndim=1).sum(), w)
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=0)
    eps = 1e-6  # and both equal a central difference of the exact solution
    ex = lambda s: exact_linear_scaled(y0, t, s).sum()
    assert abs(ga.item() - (ex(0.7 + eps) - ex(0.7 - eps)).item() / (2 * eps)) < 1e-5


def exact_linear_scaled(y0, t, s):
    return torch.stack([y0 @ torch.linalg.matrix_exp(s * A * ti).T for ti in t])



def _compiled_vs_eager(solver, bn):
    """Values, NFE and gradients (w.r.t. y0 and a field parameter) of ``compile=False`` and
    ``compile=True`` (chunks of attempts, deferred dense output) on the same Lorenz problem."""
    g = torch.Generator().manual_seed(6)
    y0 = torch.randn(6, 3, generator=g, dtype=DT) * 5 + torch.tensor([0.0, 0.0, 25.0], dtype=DT)
    t = torch.linspace(0, 0.5, 4, dtype=DT)
    rho = torch.tensor(28.0, dtype=DT, requires_grad=True)

    def field(tt, y):
        return lorenz(tt, y, rho=rho)

    out = []
    for comp in (False, True):
        y = y0.clone().requires_grad_(True)
        rho.grad = None
        ys, st = odeint(field, y, t, solver=solver, rtol=1e-8, atol=1e-8, batch_ndim=bn, compile=comp,
                        return_stats=True)
        (ys[1:] ** 2).sum().backward()
        out.append((ys.detach(), y.grad, rho.grad.clone(), st["nfe"]))
    (ya, ga, ra, na), (yb, gb, rb, nb) = out
    assert na == nb
    for a, b in ((ya, yb), (ga, gb), (ra, rb)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver,bn", [(Dopri5(), 0), (Tsit5(), 1), (Bosh3(), 0)],
                         ids=["Dopri5-shared", "Tsit5-per-trajectory", "Bosh3-hermite"])
def test_chunked_attempts_match_eager_loop(monkeypatch, solver, bn):
    """The compile=True code path (chunks of masked attempts, host checks per chunk, dense output
    deferred to the attempts that save) run without the compiler: same values, NFE and gradients."""
    import sciflow.solvers.ode._chunk as chunk

    monkeypatch.setattr(chunk, "_compile", lambda fn, **kw: fn)
    monkeypatch.setattr(chunk, "_COMPILED", {})
    _compiled_vs_eager(solver, bn)


@pytest.mark.slow
@pytest.mark.parametrize("bn", [0, 1])
def test_compiled_gradients_match_eager(bn):
    """The same through torch.compile (C++ wrapper on CPU), forward and backward (slow: compiles)."""
    _compiled_vs_eager(Dopri5(), bn)


@pytest.mark.parametrize("batch_ndim", [0, 1])
def test_dtmax_caps_every_step(batch_ndim):
    """``PIController(dtmax=...)``: a smooth decay that the error control would cross in a few
    steps takes at least span / dtmax accepted steps, with the same answer; the initial step and
    a given dt0 are capped too."""
    from sciflow.solvers import ODETerm, PIController, SaveAt, solve

    y0 = torch.ones(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = math.exp(-2.0)
    for dt0 in (None, 1.0):
        free = solve(ODETerm(lambda s, y: -y), Dopri5(), 0.0, 2.0, y0, batch_ndim=batch_ndim,
                     controller=PIController(rtol=1e-6, atol=1e-9, dt0=dt0))
        capped = solve(ODETerm(lambda s, y: -y), Dopri5(), 0.0, 2.0, y0, batch_ndim=batch_ndim,
                       controller=PIController(rtol=1e-6, atol=1e-9, dt0=dt0, dtmax=0.05), saveat=SaveAt(ts=t))
        n_free, n_capped = int(free.stats["n_accepted"].max()), int(capped.stats["n_accepted"].min())
        assert n_free < 20 and 40 <= n_capped <= 42, (n_free, n_capped)
        torch.testing.assert_close(capped.ys[-1], torch.full_like(y0, exact), rtol=1e-8, atol=0)
    with pytest.raises(ValueError, match="dtmax must be positive"):
        PIController(dtmax=0.0)


@pytest.mark.parametrize("solver,bn,compiled", [(Dopri5(), 1, False), (Tsit5(), 1, False), (Dopri5(), 1, True),
                                                (Dopri5(), 0, True), (Dopri5(), 0, False)],
                         ids=["Dopri5-per-trajectory", "Tsit5-per-trajectory", "Dopri5-per-trajectory-chunked",
                              "Dopri5-shared-chunked", "Dopri5-shared-host-loop"])
def test_gradients_stay_finite_after_a_rejected_step_overflows(monkeypatch, solver, bn, compiled):
    """y' = -k y^3 from y = 10 with a first step of 1: that step's stages overflow (inf) and it is
    rejected. The masked loop drops it with torch.where, but 0 * inf = nan in the field's backward
    used to reach dy/dk; the attempt is now re-run for the graph with h = 0 on the rejected rows.
    Exact: y(t) = (y0^-2 + 2 k t)^-1/2, dy/dk = -t y^3. The chunked (compile=True) path is run
    without the compiler; after such a chunk the solve goes on eagerly."""
    import sciflow.solvers.ode._chunk as chunk

    monkeypatch.setattr(chunk, "_compile", lambda fn, **kw: fn)
    monkeypatch.setattr(chunk, "_COMPILED", {})
    k = torch.tensor([1.0, 0.9], dtype=DT, requires_grad=True)
    y0 = torch.full((2, 1), 10.0, dtype=DT)
    sol = solve(ODETerm(lambda t, y: -k.unsqueeze(-1) * y ** 3), solver, 0.0, 100.0, y0, batch_ndim=bn,
                controller=PIController(rtol=1e-8, atol=1e-10, dt0=1.0), compile=compiled)
    assert int(sol.stats["n_rejected"].max()) >= 1
    dk, = torch.autograd.grad(sol.ys[-1].sum(), k)
    y = (1 / 100.0 + 2 * k.detach() * 100.0) ** -0.5
    torch.testing.assert_close(sol.ys[-1, :, 0].detach(), y, rtol=1e-6, atol=0)
    torch.testing.assert_close(dk, -100.0 * y ** 3, rtol=1e-5, atol=0)
    if bn == 1 and not compiled:    # the masked loop's re-run changes the graph, not the solution
        with torch.no_grad():
            again = solve(ODETerm(lambda t, y: -k.unsqueeze(-1) * y ** 3), solver, 0.0, 100.0, y0, batch_ndim=bn,
                          controller=PIController(rtol=1e-8, atol=1e-10, dt0=1.0))
        assert torch.equal(again.ys, sol.ys.detach())


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "autograd"])
@pytest.mark.parametrize("solver", [Tsit5(), Bosh3(), Rodas4()], ids=["Tsit5", "Bosh3-Hermite", "Rodas4"])
def test_dense_output_of_the_writing_rows_only_equals_the_full_batch(monkeypatch, grad, solver):
    """Eager per-trajectory solves on CPU evaluate the interpolant for the rows that write a save
    time only; on GPU (no host sync per attempt) for every row. Both give the same saves and the
    same gradients (irregular per-sample grids, an MLP field; an interpolant, the cubic Hermite
    fallback, a Rosenbrock continuous extension)."""
    import sciflow.solvers.ode._integrate as integ
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    ts = torch.sort(torch.rand(16, 12, dtype=torch.float64) * 3, dim=1).values
    ts[:, 0] = 0.0
    y0 = torch.randn(16, 4, dtype=torch.float64)

    def run():
        with torch.set_grad_enabled(grad):
            ys = odeint(lambda t, y: net(y), y0, ts, solver=solver, rtol=1e-8, atol=1e-10)
        if not grad:
            return ys, None
        return ys, torch.autograd.grad(ys.square().sum(), list(net.parameters()))

    ys_rows, g_rows = run()
    monkeypatch.setattr(integ, "sync_is_free", lambda device: False)
    ys_all, g_all = run()
    torch.testing.assert_close(ys_rows, ys_all, rtol=1e-13, atol=1e-13)
    if grad:
        for a, b in zip(g_rows, g_all):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_stage_sums_with_cached_scalars_are_the_python_float_products():
    """combination's first product uses a cached 0-d tensor of the state's dtype (no float64
    wrap-and-convert per call): the same numbers as x * c with a Python float, in float32 and
    float64, and one cached tensor per (value, dtype, device)."""
    from sciflow.solvers.ode.solver import combination, scalar
    g = torch.Generator().manual_seed(0)
    for dt in (torch.float32, torch.float64):
        xs = [torch.randn(64, 3, generator=g, dtype=dt) for _ in range(3)]
        cs = [0.1, 0.0, 2.0 / 3.0]
        assert torch.equal(combination(cs, xs), (xs[0] * 0.1).add(xs[2], alpha=2.0 / 3.0))
        s = scalar(2.0 / 3.0, xs[0])
        assert s.dtype == dt and s.ndim == 0 and scalar(2.0 / 3.0, xs[1]) is s


def test_chunked_attempts_trace_under_dynamo(monkeypatch):
    """The compile=True path traced by Dynamo (backend "eager": the graph capture without
    Inductor's code generation, seconds instead of the slow tests' minutes): constants must stay
    Python numbers while compiling (``solver.scalar``) — a 0-d-tensor-only op such as
    ``addcmul(tensor, tensor, x)`` fed floats failed here before any real compilation ran."""
    import sciflow.solvers.ode._chunk as chunk

    monkeypatch.setattr(chunk, "_compile", lambda fn, **kw: torch.compile(fn, backend="eager", dynamic=False))
    monkeypatch.setattr(chunk, "_COMPILED", {})
    g = torch.Generator().manual_seed(5)
    y0 = torch.randn(8, 3, generator=g, dtype=DT) * 5 + torch.tensor([0.0, 0.0, 25.0], dtype=DT)
    t = torch.linspace(0, 0.5, 4, dtype=DT)
    with torch.no_grad():
        a, sa = odeint(lorenz, y0, t, solver=Tsit5(), rtol=1e-7, atol=1e-7, batch_ndim=1, return_stats=True)
        b, sb = odeint(lorenz, y0, t, solver=Tsit5(), rtol=1e-7, atol=1e-7, batch_ndim=1, return_stats=True,
                       compile=True)
    assert sa["nfe"] == sb["nfe"]
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
