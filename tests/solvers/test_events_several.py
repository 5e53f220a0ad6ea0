"""Several events in one solve (``solve(..., event=[Event(a), Event(b)])``): the first terminal
stop among them, crossings after it discarded (also inside the stopping step), recorded events
beside a terminal one, every stepping loop, gradients of the stop time, scipy's event lists, and
bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import solve_ivp

from sciflow.solvers import RK4, ConstantStepSize, Dopri5, Event, ODETerm, PIController, Rodas4, SaveAt, solve

DT = torch.float64
G = 9.81
TIGHT = PIController(rtol=1e-10, atol=1e-12)
LOOPS = [(Dopri5(), TIGHT, 1), (Rodas4(), TIGHT, 1), (RK4(), ConstantStepSize(0.01), 1), (Dopri5(), TIGHT, 0)]
LOOP_IDS = ["Dopri5-per-trajectory", "Rodas4", "RK4-fixed", "Dopri5-shared-clock"]


def projectile(t, y):
    """y = (x, height, vx, vy) under gravity."""
    zero = torch.zeros_like(y[..., 0])
    return torch.stack([y[..., 2], y[..., 3], zero, zero - G], -1)


WALL = 3.0
FLOOR = Event(lambda t, y: y[..., 1], direction=-1)
RIGHT_WALL = Event(lambda t, y: y[..., 0] - WALL, direction=+1)


@pytest.mark.parametrize("solver,ctrl", [(Dopri5(), TIGHT), (RK4(), ConstantStepSize(0.01))], ids=["Dopri5", "RK4"])
def test_the_first_terminal_event_stops_each_trajectory(solver, ctrl):
    """Thrown from (0, h) with (vx, 0): the wall at x = 3 stops the fast ones at 3 / vx, the floor
    the slow ones at sqrt(2 h / g). The other event did not happen; the t1 save is the stop."""
    h = torch.tensor([5.0, 5.0, 1.0, 20.0], dtype=DT)
    vx = torch.tensor([1.0, 10.0, 2.0, 4.0], dtype=DT)
    y0 = torch.stack([torch.zeros_like(h), h, vx, torch.zeros_like(h)], -1)
    sol = solve(ODETerm(projectile), solver, 0.0, 10.0, y0, batch_ndim=1, controller=ctrl,
                event=[FLOOR, RIGHT_WALL])
    floor, wall = sol.event
    t_floor, t_wall = torch.sqrt(2 * h / G), WALL / vx
    by_wall = t_wall < t_floor
    assert by_wall.tolist() == [False, True, False, True]
    assert floor.occurred.tolist() == (~by_wall).tolist() and wall.occurred.tolist() == by_wall.tolist()
    t_stop = torch.minimum(t_floor, t_wall)
    assert (sol.ts[:, -1] - t_stop).abs().max() < 1e-12
    assert (floor.t[~by_wall] - t_floor[~by_wall]).abs().max() < 1e-12 and torch.isnan(floor.t[by_wall]).all()
    assert (wall.t[by_wall] - t_wall[by_wall]).abs().max() < 1e-12 and torch.isnan(wall.t[~by_wall]).all()
    assert torch.equal(sol.ys[-1][by_wall], wall.y[by_wall]) and torch.equal(sol.ys[-1][~by_wall], floor.y[~by_wall])
    assert (wall.y[by_wall, 0] - WALL).abs().max() < 1e-12 and floor.y[~by_wall, 1].abs().max() < 1e-12


@pytest.mark.parametrize("solver,ctrl,batch_ndim", LOOPS, ids=LOOP_IDS)
def test_crossings_after_the_stop_are_discarded_even_inside_the_stopping_step(solver, ctrl, batch_ndim):
    """y = t: levels 0.2 (recorded), 0.3 (terminal), 0.6 (recorded). Whatever the step, the stop
    is at 0.3 and the crossing of 0.6 does not happen — also with one step over all three
    (ConstantStepSize(1.0): the step from the save at 0.1 to the one at 1.0), where all of them are
    located together after the step."""
    for ctrl_ in (ctrl, ConstantStepSize(1.0)):
        y0 = torch.zeros((2, 1) if batch_ndim else (1,), dtype=DT)
        s = (lambda y: y[..., 0]) if batch_ndim else (lambda y: y[0])
        events = [Event(lambda t, y: s(y) - 0.2, terminal=False), Event(lambda t, y: s(y) - 0.3),
                  Event(lambda t, y: s(y) - 0.6, terminal=False)]
        solver_ = RK4() if isinstance(ctrl_, ConstantStepSize) else solver
        sol = solve(ODETerm(lambda t, y: torch.ones_like(y)), solver_, 0.0, 2.0, y0, batch_ndim=batch_ndim,
                    controller=ctrl_, event=events, saveat=SaveAt(ts=torch.tensor([0.0, 0.1, 1.0, 2.0], dtype=DT)))
        low, stop, high = sol.event
        assert bool(low.occurred.all()) and bool(stop.occurred.all()) and not bool(high.occurred.any())
        assert (low.t - 0.2).abs().max() < 1e-12 and (stop.t - 0.3).abs().max() < 1e-12
        assert torch.isnan(high.t).all() and torch.isnan(high.y).all()
        assert (sol.ys[1] - 0.1).abs().max() < 1e-12 and torch.isnan(sol.ys[2]).all()
        assert (sol.ys[-1] - 0.3).abs().max() < 1e-12


def test_a_stopped_trajectory_records_nothing_while_the_others_step_on():
    """Fixed steps are shared: row 0 stops at y = 0.5 and steps on with row 1 (to 2.0); the
    recorded level 0.8 is crossed by row 1 only."""
    c = torch.tensor([0.5, 2.0], dtype=DT)
    events = [Event(lambda t, y: y[..., 0] - c), Event(lambda t, y: y[..., 0] - 0.8, terminal=False)]
    for solver, ctrl in ((RK4(), ConstantStepSize(0.1)), (Dopri5(), TIGHT)):
        sol = solve(ODETerm(lambda t, y: torch.ones_like(y)), solver, 0.0, 3.0, torch.zeros(2, 1, dtype=DT),
                    batch_ndim=1, controller=ctrl, event=events)
        stop, level = sol.event
        assert (stop.t - c).abs().max() < 1e-12
        assert level.occurred.tolist() == [False, True] and abs(level.t[1].item() - 0.8) < 1e-12


def test_recorded_events_beside_a_terminal_one_match_scipy():
    """The pendulum theta'' = -sin theta: zeros of theta and of omega recorded (four each), a
    terminal event at the second rise through theta = -0.5; against scipy's DOP853 with the same
    conditions (recorded to t1, then cut at that stop)."""
    def pendulum(t, y):
        return torch.stack([y[..., 1], -torch.sin(y[..., 0])], -1)

    y0 = torch.tensor([1.2, 0.0], dtype=DT)
    events = [Event(lambda t, y: y[0], terminal=False, max_events=4),
              Event(lambda t, y: y[1], terminal=False, max_events=4),
              Event(lambda t, y: y[0] + 0.5, direction=+1, max_events=2)]
    sol = solve(ODETerm(pendulum), Dopri5(), 0.0, 30.0, y0, controller=PIController(rtol=1e-12, atol=1e-13),
                event=events)

    def e_stop(t, y):
        return y[0] + 0.5
    e_stop.direction = 1
    ref = solve_ivp(lambda t, y: [y[1], -math.sin(y[0])], (0.0, 30.0), y0.tolist(), method="DOP853",
                    rtol=1e-13, atol=1e-13, events=[lambda t, y: y[0], lambda t, y: y[1], e_stop])
    t_stop = ref.t_events[2][1]
    assert abs(sol.ts[-1].item() - t_stop) < 1e-9
    for res, t_ref in zip(sol.event, ref.t_events):
        # scipy counts a start on zero (omega at t = 0), sciflow does not
        t_ref = torch.tensor(t_ref[(t_ref > 0) & (t_ref <= t_stop)][:4], dtype=DT)
        got = res.t[res.occurred]
        assert got.shape == t_ref.shape and (got - t_ref).abs().max() < 1e-9
    assert sol.event[0].occurred.tolist() == [True, True, True, False]      # T/4, 3T/4, 5T/4
    assert sol.event[1].occurred.tolist() == [True, True, True, False]      # T/2, T, 3T/2


def test_stop_time_gradients_follow_the_stopping_event():
    """t_stop = min(sqrt(2 h / g), W / vx): d/dvx is -W / vx^2 where the wall stops, 0 where the
    floor does; d/dh is 1 / sqrt(2 g h) where the floor stops, 0 where the wall does."""
    h = torch.tensor([5.0, 5.0], dtype=DT, requires_grad=True)
    vx = torch.tensor([1.0, 10.0], dtype=DT, requires_grad=True)
    y0 = torch.stack([torch.zeros_like(h), h, vx, torch.zeros_like(h)], -1)
    sol = solve(ODETerm(projectile), Dopri5(), 0.0, 10.0, y0, batch_ndim=1, controller=TIGHT,
                event=[FLOOR, RIGHT_WALL])
    dh, dvx = torch.autograd.grad(sol.ts[:, -1].sum(), (h, vx))
    hd, vd = h.detach(), vx.detach()
    assert abs(dh[0].item() - 1 / math.sqrt(2 * G * hd[0].item())) < 1e-10 and dh[1].abs() < 1e-12
    assert abs(dvx[1].item() + WALL / vd[1].item() ** 2) < 1e-10 and dvx[0].abs() < 1e-12


def test_bad_lists_of_events_are_refused_with_clear_errors():
    term = ODETerm(projectile)
    y0 = torch.tensor([[0.0, 5.0, 1.0, 0.0]], dtype=DT)
    for bad in ([], [FLOOR, lambda t, y: y[..., 0]], (FLOOR, None)):
        with pytest.raises(TypeError, match="non-empty list"):
            solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=bad)
    with pytest.raises(ValueError, match=r"shape mismatch: event\[1\].cond returned shape \(1, 4\)"):
        solve(term, Dopri5(), 0.0, 1.0, y0, batch_ndim=1, event=[FLOOR, Event(lambda t, y: y)])
    late_nan = Event(lambda t, y: torch.where(t > 0.5, torch.nan, 1.0) * y[..., 0])
    for solver, ctrl in ((Dopri5(), TIGHT), (RK4(), ConstantStepSize(0.1))):
        with pytest.raises(FloatingPointError, match=r"event\[1\].cond returned a non-finite value .* at t = "):
            solve(term, solver, 0.0, 1.0, y0, batch_ndim=1, controller=ctrl, event=[FLOOR, late_nan])
