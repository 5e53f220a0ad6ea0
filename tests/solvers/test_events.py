"""Terminal events (``solve(..., event=Event(cond))``): location against closed forms and scipy,
direction and restart rules, saves, gradients (implicit function theorem) against closed forms and
finite differences, per-trajectory clocks, reversed time, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import solve_ivp

from sciflow.solvers import (RK4, BacksolveAdjoint, Bosh3, ConstantStepSize, Dopri5, Event,
                             ODETerm, PIController, Rodas4, SaveAt, Tsit5, solve)

DT = torch.float64
G = 9.81
TIGHT = PIController(rtol=1e-10, atol=1e-12)
SOLVERS = [(Dopri5(), TIGHT), (Tsit5(), TIGHT), (Rodas4(), TIGHT), (Bosh3(), PIController(rtol=1e-8, atol=1e-12)),
           (RK4(), ConstantStepSize(0.05))]
IDS = ["Dopri5", "Tsit5", "Rodas4", "Bosh3", "RK4-fixed"]


def ballistic(g):
    """Free fall, y = (height, velocity)."""
    return lambda t, y: torch.stack([y[..., 1], -g * torch.ones_like(y[..., 1])], -1)


def impact_time(h, v, g=G):
    return (v + torch.sqrt(v ** 2 + 2 * g * h)) / g


GROUND = Event(lambda t, y: y[..., 0], direction=-1)


@pytest.mark.parametrize("solver,ctrl", SOLVERS, ids=IDS)
def test_impact_time_and_state_match_the_closed_form(solver, ctrl):
    """Each trajectory stops at its own impact; the state there is (0, -sqrt(v0^2 + 2 g h0))."""
    y0 = torch.tensor([[10.0, 0.0], [5.0, 2.0], [1.0, -1.0], [50.0, 3.0]], dtype=DT)
    sol = solve(ODETerm(ballistic(G)), solver, 0.0, 10.0, y0, event=GROUND, batch_ndim=1, controller=ctrl)
    t_exact = impact_time(y0[:, 0], y0[:, 1])
    assert bool(sol.event.occurred.all())
    assert (sol.event.t - t_exact).abs().max() < 1e-12
    assert sol.event.y[:, 0].abs().max() < 1e-12
    assert (sol.event.y[:, 1] + torch.sqrt(y0[:, 1] ** 2 + 2 * G * y0[:, 0])).abs().max() < 1e-10
    # the t1 save is where each trajectory stopped
    assert torch.equal(sol.ts[:, -1], sol.event.t) and torch.equal(sol.ys[-1], sol.event.y)
    assert sol.stats["n_event_evals"] > 0


def test_shared_clock_event_is_scalar():
    y0 = torch.tensor([10.0, 0.0], dtype=DT)
    sol = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, 10.0, y0, controller=TIGHT,
                event=Event(lambda t, y: y[0], direction=-1))
    assert sol.event.t.shape == () and sol.event.occurred.shape == () and sol.event.y.shape == (2,)
    assert abs(sol.event.t.item() - math.sqrt(20 / G)) < 1e-12
    assert sol.ts.shape == (1,) and sol.ts[0] == sol.event.t


def test_saves_before_the_event_match_a_plain_solve_and_after_it_are_nan():
    y0 = torch.tensor([[10.0, 0.0], [1.0, 0.0]], dtype=DT)
    ts = torch.linspace(0.0, 2.0, 9, dtype=DT)
    kw = dict(batch_ndim=1, controller=TIGHT, saveat=SaveAt(ts=ts, t1=False))
    with_event = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, 2.0, y0, event=GROUND, **kw)
    plain = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, 2.0, y0, **kw)
    t_hit = impact_time(y0[:, 0], y0[:, 1])
    after = ts.unsqueeze(1) > t_hit                     # (time, batch)
    assert bool(torch.isnan(with_event.ys[after]).all())
    assert torch.allclose(with_event.ys[~after], plain.ys[~after], rtol=0, atol=1e-12)
    assert int(after.sum()) == 3 + 7                    # 10 m: t* = 1.43 (saves 1.5..2); 1 m: 0.45
    assert torch.equal(with_event.ts, ts)               # no t1 save asked: ts unchanged


def test_no_event_leaves_nan_in_the_event_and_the_end_state_in_the_solution():
    y0 = torch.tensor([[100.0, 0.0], [1.0, 0.0]], dtype=DT)
    sol = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, 1.0, y0, event=GROUND, batch_ndim=1, controller=TIGHT)
    assert sol.event.occurred.tolist() == [False, True]
    assert torch.isnan(sol.event.t[0]) and torch.isnan(sol.event.y[0]).all()
    assert sol.ts[0, -1] == 1.0 and abs(sol.ys[-1, 0, 0].item() - (100 - G / 2)) < 1e-10
    assert torch.isfinite(sol.ys).all()


@pytest.mark.parametrize("direction,expected", [(1, 2 * math.pi), (-1, math.pi), (0, math.pi)])
def test_direction_and_a_start_on_zero(direction, expected):
    """y = (sin t, cos t) starts on g = sin t = 0: not an event; then falls through 0 at pi and
    rises through it at 2 pi."""
    osc = lambda t, y: torch.stack([y[..., 1], -y[..., 0]], -1)  # noqa: E731
    y0 = torch.tensor([0.0, 1.0], dtype=DT)
    sol = solve(ODETerm(osc), Dopri5(), 0.0, 10.0, y0, controller=TIGHT,
                event=Event(lambda t, y: y[0], direction=direction))
    assert abs(sol.event.t.item() - expected) < 1e-9


OSC = ODETerm(lambda t, y: torch.stack([y[..., 1], -y[..., 0]], -1))    # y = (sin t, cos t) from (0, 1)


def test_recorded_crossings_of_a_non_terminal_event():
    """sin t crosses 0 at k pi: the first five located, the solve goes on to t1; a second
    trajectory with a shifted phase and a third with too few crossings (nan-padded)."""
    phase = torch.tensor([0.0, 0.5, 0.0], dtype=DT)
    y0 = torch.stack([torch.sin(phase), torch.cos(phase)], -1)
    t1 = torch.tensor([20.0, 20.0, 7.0], dtype=DT)
    sol = solve(OSC, Dopri5(), 0.0, t1, y0, batch_ndim=1, controller=TIGHT,
                event=Event(lambda t, y: y[..., 0], terminal=False, max_events=5))
    k = torch.arange(1, 6, dtype=DT) * math.pi
    expected = torch.stack([k, k - 0.5, k])
    assert sol.event.t.shape == (3, 5) and sol.event.y.shape == (3, 5, 2)
    assert sol.event.occurred.tolist() == [[True] * 5, [True] * 5, [True, True, False, False, False]]
    got = sol.event.t[sol.event.occurred]
    assert (got - expected[sol.event.occurred]).abs().max() < 1e-9
    assert torch.isnan(sol.event.t[2, 2:]).all()
    assert sol.event.y[..., 0][sol.event.occurred].abs().max() < 1e-9          # on the section
    assert torch.equal(sol.ts[:, -1], t1) and torch.isfinite(sol.ys).all()    # went on to t1


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
def test_terminal_event_after_several_crossings(grad):
    """Stop at the third crossing of sin t = 0 (t = 3 pi); saves after it are nan. One shared clock:
    the host-controlled loop (its differentiable and its buffered stages) and fixed steps."""
    ts = torch.linspace(0.0, 12.0, 13, dtype=DT)
    for ctrl in (TIGHT, ConstantStepSize(0.01)):
        solver = Dopri5() if isinstance(ctrl, PIController) else RK4()
        with torch.set_grad_enabled(grad):
            sol = solve(OSC, solver, 0.0, 12.0, torch.tensor([0.0, 1.0], dtype=DT), controller=ctrl,
                        saveat=SaveAt(ts=ts), event=Event(lambda t, y: y[0], max_events=3))
        assert (sol.event.t - torch.arange(1, 4, dtype=DT) * math.pi).abs().max() < 1e-9
        assert abs(sol.ts[-1].item() - 3 * math.pi) < 1e-9 and sol.ys[-1, 0].abs() < 1e-9
        assert torch.isnan(sol.ys[10:-1]).all() and torch.isfinite(sol.ys[:10]).all()   # 10 > 3 pi


def test_lorenz_maxima_match_scipy():
    """The Lorenz (1963) return map: successive maxima of z (dz/dt = xy - beta z falling through 0),
    a non-terminal event on a chaotic solution, against scipy's DOP853 with its event location."""
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0

    def lorenz(t, y):
        x, yy, z = y.unbind(-1)
        return torch.stack([sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z], -1)

    y0 = torch.tensor([[1.0, 1.0, 20.0], [-3.0, 2.0, 25.0]], dtype=DT)
    sol = solve(ODETerm(lorenz), Tsit5(), 0.0, 5.0, y0, batch_ndim=1, controller=PIController(rtol=1e-11, atol=1e-11),
                event=Event(lambda t, y: y[..., 0] * y[..., 1] - beta * y[..., 2], direction=-1, terminal=False,
                            max_events=6))

    def zdot(t, y):
        return y[0] * y[1] - beta * y[2]
    zdot.direction = -1
    for b in range(2):
        ref = solve_ivp(lambda t, y: [sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]],
                        (0.0, 5.0), y0[b].tolist(), method="DOP853", rtol=1e-13, atol=1e-13, events=zdot)
        n = min(6, len(ref.t_events[0]))
        assert n >= 5 and bool(sol.event.occurred[b, :n].all())
        assert abs(sol.event.t[b, :n] - torch.tensor(ref.t_events[0][:n])).max() < 1e-9     # measured 2.4e-11
        assert abs(sol.event.y[b, :n, 2] - torch.tensor(ref.y_events[0][:n, 2])).max() < 1e-8  # 8.5e-10


def test_reversed_time():
    """Backwards from t = 0 the ball rose: it left the ground at t = -sqrt(2 h / g) (v = 0 at t = 0)."""
    y0 = torch.tensor([[10.0, 0.0], [2.0, 0.0]], dtype=DT)
    sol = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, -5.0, y0, event=GROUND, batch_ndim=1, controller=TIGHT)
    assert (sol.event.t + torch.sqrt(2 * y0[:, 0] / G)).abs().max() < 1e-12


def test_per_sample_time_grids():
    y0 = torch.tensor([[10.0, 0.0], [5.0, 0.0]], dtype=DT)
    ts = torch.tensor([[0.0, 0.5, 1.0, 3.0], [1.0, 1.2, 1.4, 3.0]], dtype=DT)   # second starts at t = 1
    sol = solve(ODETerm(ballistic(G)), Dopri5(), ts[:, 0], ts[:, -1], y0, event=GROUND, controller=TIGHT,
                saveat=SaveAt(ts=ts), batch_ndim=1)
    expected = ts[:, 0] + torch.sqrt(2 * y0[:, 0] / G)
    assert (sol.event.t - expected).abs().max() < 1e-12
    assert sol.ts.shape == (2, 4) and torch.equal(sol.ts[:, -1], sol.event.t)


def test_bouncing_ball_restarts_from_the_event_state():
    """Restitution e: impacts at t_1 = sqrt(2h/g), t_{k+1} = t_k + 2 e^k v_1 / g. Restarting from
    the located state with the velocity reflected (direction = -1) finds the next impact, not the
    one just found."""
    e, h = 0.8, 10.0
    y = torch.tensor([h, 0.0], dtype=DT)
    t, times = 0.0, []
    for _ in range(4):
        sol = solve(ODETerm(ballistic(G)), Dopri5(), t, t + 10.0, y, controller=TIGHT,
                    event=Event(lambda t, y: y[0], direction=-1))
        assert bool(sol.event.occurred)
        t = sol.event.t.item()
        times.append(t)
        y = sol.event.y * torch.tensor([1.0, -e], dtype=DT)
    v1 = math.sqrt(2 * G * h)
    expected = [math.sqrt(2 * h / G)]
    for k in range(1, 4):
        expected.append(expected[-1] + 2 * e ** k * v1 / G)
    assert max(abs(a - b) for a, b in zip(times, expected)) < 1e-11


def test_stiff_event_matches_scipy_radau():
    """Van der Pol, mu = 1000: the first time x falls through 0 (the fast jump), Rodas4 vs scipy's
    Radau with its event location (rtol 1e-7 and 1e-10)."""
    mu = 1000.0

    def vdp(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * ((1 - x ** 2) * v) - x], -1)

    y0 = torch.tensor([2.0, 0.0], dtype=DT)
    sol = solve(ODETerm(vdp), Rodas4(), 0.0, 3000.0, y0, controller=PIController(rtol=1e-7, atol=1e-12),
                event=Event(lambda t, y: y[0], direction=-1))

    def cross(t, y):
        return y[0]
    cross.terminal, cross.direction = True, -1
    ref = solve_ivp(lambda t, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]], (0.0, 3000.0), [2.0, 0.0],
                    method="Radau", rtol=1e-10, atol=1e-13, events=cross)
    t_ref = ref.t_events[0][0]
    assert 800 < t_ref < 820
    assert abs(sol.event.t.item() - t_ref) < 5e-8 * t_ref       # measured 7.5e-9


# --- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("solver,ctrl", SOLVERS, ids=IDS)
def test_event_time_and_state_gradients_match_the_closed_form(solver, ctrl):
    """t* = sqrt(2 h / g): dt*/dg = -t* / (2g), dt*/dh = t* / (2h); v* = -g t*: dv*/dg = -t*/2."""
    g = torch.tensor(G, dtype=DT, requires_grad=True)
    h = torch.tensor([10.0, 3.0], dtype=DT, requires_grad=True)
    y0 = torch.stack([h, torch.zeros_like(h)], -1)
    sol = solve(ODETerm(ballistic(g)), solver, 0.0, 5.0, y0, event=GROUND, batch_ndim=1, controller=ctrl)
    t_star = torch.sqrt(2 * h / g).detach()
    dg, dh = torch.autograd.grad(sol.event.t.sum(), (g, h), retain_graph=True)
    assert abs(dg.item() - (-t_star / (2 * G)).sum().item()) < 1e-10
    assert torch.allclose(dh, t_star / (2 * h.detach()), rtol=1e-10, atol=0)
    dvg, = torch.autograd.grad(sol.event.y[:, 1].sum(), (g,))
    assert abs(dvg.item() - (-t_star / 2).sum().item()) < 1e-9


def test_gradient_through_the_condition_parameters():
    """A threshold c in the condition (a learnable event function): height reaches c at
    t* = sqrt(2 (h - c) / g), dt*/dc = -1 / (g t*)."""
    c = torch.tensor(2.0, dtype=DT, requires_grad=True)
    y0 = torch.tensor([10.0, 0.0], dtype=DT)
    sol = solve(ODETerm(ballistic(G)), Dopri5(), 0.0, 5.0, y0, controller=TIGHT,
                event=Event(lambda t, y: y[0] - c, direction=-1))
    t_star = math.sqrt(2 * (10.0 - 2.0) / G)
    assert abs(sol.event.t.item() - t_star) < 1e-12
    dc, = torch.autograd.grad(sol.event.t, c)
    assert abs(dc.item() + 1 / (G * t_star)) < 1e-10


@pytest.mark.parametrize("solver,ctrl", [(RK4(), ConstantStepSize(0.01)), (Bosh3(), TIGHT), (Dopri5(), TIGHT)],
                         ids=["RK4-fixed", "Bosh3", "Dopri5"])
def test_gradient_is_finite_when_some_trajectories_never_cross(solver, ctrl):
    """y' = k / y from 1 reaches 2 at t* = 3 / (2k) (dt*/dk = -1.5 at k = 1); a second trajectory
    never reaches its level. Its rows still pass through f in the batched location: they must not
    be zeros there (k / 0 = inf, whose derivative times a masked zero is nan in the backward pass)."""
    k = torch.tensor(1.0, dtype=DT, requires_grad=True)
    level = torch.tensor([2.0, 100.0], dtype=DT)
    sol = solve(ODETerm(lambda t, y: k / y), solver, 0.0, 2.0, torch.ones(2, 1, dtype=DT), batch_ndim=1,
                controller=ctrl, event=Event(lambda t, y: y[..., 0] - level))
    assert sol.event.occurred.tolist() == [True, False]
    dk, = torch.autograd.grad(sol.event.t[0], k)
    assert abs(sol.event.t[0].item() - 1.5) < 1e-6 and abs(dk.item() + 1.5) < 1e-5


def _neural_event(params: torch.Tensor, solver, ctrl) -> tuple[torch.Tensor, torch.Tensor]:
    W, b, c = params[:4].view(2, 2), params[4:6], params[6]

    def field(t, y):
        return torch.tanh(y @ W.T + b) - 0.3 * y

    y0 = torch.tensor([[0.2, -0.1], [0.4, 0.3], [-0.2, 0.5]], dtype=DT)
    sol = solve(ODETerm(field), solver, 0.0, 20.0, y0, batch_ndim=1, controller=ctrl,
                event=Event(lambda t, y: y.square().sum(-1) - 1.0 - c * y[..., 1] + 0.01 * t, direction=0))
    assert bool(sol.event.occurred.all())
    return sol.event.t, sol.event.y


@pytest.mark.parametrize("solver,ctrl", [(RK4(), ConstantStepSize(0.1)),
                                         (Dopri5(), PIController(rtol=1e-12, atol=1e-14))], ids=["RK4-fixed", "Dopri5"])
def test_gradients_of_a_neural_field_and_condition_match_finite_differences(solver, ctrl):
    """The exact gradient of the computed event time and state: with fixed steps the discrete map
    is smooth (central differences to 1e-7); adaptive steps match to the tolerance."""
    p0 = torch.tensor([1.2, -0.5, 0.7, 0.9, 0.3, -0.1, 0.25], dtype=DT)
    p = p0.clone().requires_grad_(True)
    t_ev, y_ev = _neural_event(p, solver, ctrl)
    w = torch.tensor([1.0, -0.5, 0.3], dtype=DT)
    loss = (w * t_ev).sum() + (y_ev ** 2).sum()
    grad, = torch.autograd.grad(loss, p)
    eps = 1e-6
    fd = torch.zeros_like(p0)
    with torch.no_grad():
        for i in range(p0.numel()):
            e = torch.zeros_like(p0)
            e[i] = eps
            lp = [(w * t).sum() + (y ** 2).sum() for t, y in (_neural_event(p0 + e, solver, ctrl),
                                                               _neural_event(p0 - e, solver, ctrl))]
            fd[i] = (lp[0] - lp[1]) / (2 * eps)
    tol = 1e-8 if isinstance(ctrl, ConstantStepSize) else 1e-7     # measured 4e-10 and 7e-10
    assert (grad - fd).abs().max() < tol * (1 + fd.abs().max()), (grad, fd)


# --- bad input ---------------------------------------------------------------------------------

def test_bad_events_are_refused_with_clear_errors():
    term = ODETerm(ballistic(G))
    y0 = torch.tensor([[10.0, 0.0], [5.0, 0.0]], dtype=DT)
    with pytest.raises(TypeError, match="callable"):
        Event(3.0)
    with pytest.raises(ValueError, match="direction"):
        Event(lambda t, y: y[..., 0], direction=2)
    with pytest.raises(ValueError, match="max_iter must be an integer"):
        Event(lambda t, y: y[..., 0], max_iter=2.5)
    with pytest.raises(ValueError, match=r"shape mismatch: Event.cond returned shape \(2, 2\)"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=Event(lambda t, y: y))
    with pytest.raises(ValueError, match=r"0-d tensor"):
        solve(term, Dopri5(), 0.0, 1.0, y0, event=Event(lambda t, y: y[..., 0]))
    with pytest.raises(TypeError, match="floating tensor"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=Event(lambda t, y: (y[..., 0] > 2).long()))
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=Event(lambda t, y: 1.0))
    with pytest.raises(ValueError, match="compile=True"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=GROUND, compile=True)
    with pytest.raises(ValueError, match="CheckpointAdjoint.. for per-trajectory clocks"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=GROUND, adjoint=BacksolveAdjoint())
    with pytest.raises(TypeError, match="Event"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=lambda t, y: y[..., 0])
    with pytest.raises(FloatingPointError, match="initial state"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=Event(lambda t, y: y[..., 0] / 0 * 0))
    # finite at the start, nan later: named with its time
    late_nan = Event(lambda t, y: torch.where(t > 0.5, torch.nan, 1.0) * y[..., 0])
    with pytest.raises(FloatingPointError, match=r"Event.cond returned a non-finite value .* at t = "):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=late_nan)


def test_dtmax_finds_a_pair_of_crossings_inside_one_step():
    """sin t rises above 0.995 for 0.2 time units around pi/2: at rtol 1e-3 Dopri5 steps over the
    whole excursion (no sign change at the step ends, no event); dtmax = 0.05 finds both."""
    y0 = torch.tensor([0.0, 1.0], dtype=DT)
    ev = Event(lambda t, y: y[0] - 0.995, terminal=False, max_events=2)
    loose = solve(OSC, Dopri5(), 0.0, 6.0, y0, controller=PIController(rtol=1e-3, atol=1e-6), event=ev)
    assert not bool(loose.event.occurred.any())
    capped = solve(OSC, Dopri5(), 0.0, 6.0, y0, controller=PIController(rtol=1e-3, atol=1e-6, dtmax=0.05), event=ev)
    a = math.asin(0.995)
    assert bool(capped.event.occurred.all())
    assert (capped.event.t - torch.tensor([a, math.pi - a], dtype=DT)).abs().max() < 1e-4
