"""Events under ``CheckpointAdjoint`` and ``BacksolveAdjoint`` (locate without a graph, replay with
the adjoint, implicit function theorem; :mod:`sciflow.solvers.ode._event_replay`): event-time
gradients against closed forms and against ``DirectAdjoint`` for a neural field, recorded
(non-terminal) crossings with one shared clock, several events with crossings that do not happen,
reversed time, checkpoint segments, the grid merge, and the adjoints and solvers it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciflow.solvers import (BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, Dopri5, Event, ODETerm, PIController,
                             Rodas4, SaveAt, Tsit5, solve)
from sciflow.solvers.ode._event_replay import _merged_grid

DT = torch.float64
TIGHT = PIController(rtol=1e-10, atol=1e-12)
ADJOINTS = [CheckpointAdjoint(), CheckpointAdjoint(segments=3)]


def fall(g):
    return lambda t, y: torch.stack([y[..., 1], -g * torch.ones_like(y[..., 1])], -1)


@pytest.mark.parametrize("adjoint", ADJOINTS, ids=["segments1", "segments3"])
def test_fall_time_gradients_match_the_closed_form(adjoint):
    """Dropped from h: t* = sqrt(2h/g), v* = -sqrt(2gh); saves after the impact are nan, the t1
    save is the impact."""
    g = torch.tensor(9.81, dtype=DT, requires_grad=True)
    h = torch.tensor([10.0, 5.0, 1.0], dtype=DT, requires_grad=True)
    y0 = torch.stack([h, torch.zeros_like(h)], -1)
    ts = torch.linspace(0.0, 3.0, 7, dtype=DT)
    sol = solve(ODETerm(fall(g)), Dopri5(), 0.0, 3.0, y0, batch_ndim=1, saveat=SaveAt(ts=ts), adjoint=adjoint,
                controller=TIGHT, event=Event(lambda t, y: y[..., 0], direction=-1))
    t_exact = torch.sqrt(2 * h / g)
    assert (sol.event.t - t_exact).abs().max() < 1e-12
    assert torch.equal(sol.ts[:, -1], sol.event.t) and torch.equal(sol.ys[-1], sol.event.y)
    assert torch.equal(sol.ys[:-1, :, 0].isnan(), ts[:-1, None] > t_exact[None].detach())
    dt_dg, dt_dh = torch.autograd.grad(sol.event.t.sum(), (g, h), retain_graph=True)
    assert abs(dt_dg - (-t_exact / (2 * g)).sum()) < 1e-9
    assert (dt_dh - 1 / torch.sqrt(2 * g * h)).abs().max() < 1e-9
    dv_dg, dv_dh = torch.autograd.grad(sol.event.y[:, 1].sum(), (g, h))
    assert abs(dv_dg - (-torch.sqrt(h / (2 * g))).sum()) < 1e-9        # v* = -sqrt(2gh)
    assert (dv_dh + torch.sqrt(g / (2 * h))).abs().max() < 1e-9


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y) + torch.stack([torch.ones_like(y[..., 0]), torch.zeros_like(y[..., 0])], -1)


def _loss_and_grads(adjoint, events, y0, ts, batch_ndim=1, t1=None):
    f = Field()
    sol = solve(ODETerm(f), Tsit5(), ts[..., 0], ts[..., -1] if t1 is None else t1, y0, batch_ndim=batch_ndim,
                saveat=SaveAt(ts=ts), adjoint=adjoint, controller=TIGHT, event=events)
    evs = sol.event if isinstance(sol.event, tuple) else (sol.event,)
    loss = torch.nan_to_num(sol.ys).square().sum() + torch.nan_to_num(sol.ts).sin().sum()
    for r in evs:
        loss = loss + torch.nan_to_num(r.t).sum() + torch.nan_to_num(r.y).cos().sum()
    grads = torch.autograd.grad(loss, list(f.parameters()))
    return sol, torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("adjoint", ADJOINTS, ids=["segments1", "segments3"])
def test_neural_field_gradients_match_direct(adjoint):
    """An MLP field, a terminal threshold crossing and a recorded one, per-trajectory clocks; one
    trajectory never reaches the terminal threshold. Values and parameter gradients agree with
    DirectAdjoint's to the solver tolerance."""
    y0 = torch.tensor([[0.0, 0.1], [0.3, -0.2], [-0.5, 0.4], [-3.0, 0.0]], dtype=DT)
    ts = torch.linspace(0.0, 1.5, 6, dtype=DT)
    events = [Event(lambda t, y: y[..., 0] - 0.8, direction=+1),
              Event(lambda t, y: y[..., 0] - 0.2, terminal=False, max_events=2)]
    ref, g_ref = _loss_and_grads(DirectAdjoint(), events, y0, ts)
    sol, g = _loss_and_grads(adjoint, events, y0, ts)
    assert ref.event[0].occurred.tolist() == [True, True, False, False]     # the last two never get there
    assert ref.event[1].occurred.tolist() == [[True, False], [False, False], [True, False], [False, False]]
    for a, b in zip(ref.event, sol.event):
        assert torch.equal(a.occurred, b.occurred)
        assert torch.equal(a.t.isnan(), b.t.isnan())
        assert (torch.nan_to_num(a.t) - torch.nan_to_num(b.t)).abs().max() < 1e-13   # the located times
        assert (torch.nan_to_num(a.y) - torch.nan_to_num(b.y)).abs().max() < 1e-9
    assert torch.equal(ref.ys.isnan(), sol.ys.isnan())
    assert (torch.nan_to_num(ref.ys) - torch.nan_to_num(sol.ys)).abs().max() < 1e-9
    assert torch.isfinite(g).all()
    err = ((g - g_ref).abs().max() / g_ref.abs().max()).item()
    assert err < 1e-7, err                                                  # measured 1.7e-10


def test_terminal_event_with_a_shared_clock_and_saves():
    """One clock (a scalar condition), saves at ts with t0: the stop slot, nan after the impact,
    dt*/dh = 1/sqrt(2gh) and dy(t)/dh = 1 at the saves before it."""
    h = torch.tensor(10.0, dtype=DT, requires_grad=True)
    y0 = torch.stack([h, torch.zeros_like(h)])
    ts = torch.linspace(0.0, 5.0, 6, dtype=DT)
    sol = solve(ODETerm(fall(9.81)), Dopri5(), 0.0, 5.0, y0, saveat=SaveAt(ts=ts, t0=True), controller=TIGHT,
                adjoint=CheckpointAdjoint(), event=Event(lambda t, y: y[0], direction=-1))
    t_exact = math.sqrt(20 / 9.81)
    assert sol.ts.shape == (6,) and abs(sol.ts[-1].item() - t_exact) < 1e-12
    assert torch.isnan(sol.ys[2:5]).all() and not torch.isnan(sol.ys[:2]).any()
    dt_dh, = torch.autograd.grad(sol.event.t, h, retain_graph=True)
    assert abs(dt_dh.item() - 1 / math.sqrt(2 * 9.81 * 10.0)) < 1e-9
    dy_dh, = torch.autograd.grad(sol.ys[1, 0], h)
    assert abs(dy_dh.item() - 1.0) < 1e-12


def test_recorded_crossings_with_a_shared_clock():
    """x = cos(wt): crossings of x = 0 at t_k = (k + 1/2) pi / w, dt_k/dw = -t_k / w; with one
    clock for the batch the condition is a scalar; the saves are those of the plain solve."""
    w = torch.tensor(1.7, dtype=DT, requires_grad=True)
    y0 = torch.tensor([1.0, 0.0], dtype=DT)
    term = ODETerm(lambda t, y: torch.stack([y[1], -w ** 2 * y[0]]))
    ts = torch.linspace(0.0, 5.0, 11, dtype=DT)
    ev = Event(lambda t, y: y[0], terminal=False, max_events=3)
    sol = solve(term, Dopri5(), 0.0, 5.0, y0, saveat=SaveAt(ts=ts), adjoint=CheckpointAdjoint(), controller=TIGHT,
                event=ev)
    k = torch.arange(3, dtype=DT)
    t_exact = (k + 0.5) * math.pi / w
    assert sol.event.t.shape == (3,) and bool(sol.event.occurred.all())
    assert (sol.event.t - t_exact).abs().max() < 1e-10
    assert (sol.ys[:, 0] - torch.cos(w * ts)).abs().max() < 1e-9
    for i in range(3):
        dt_dw, = torch.autograd.grad(sol.event.t[i], w, retain_graph=True)
        assert abs(dt_dw - (-t_exact[i] / w)) < 1e-8
    # the state there: y = (0, -w sin((k + 1/2) pi)), dv/dw = -sin(..) (the phase is fixed)
    dv_dw, = torch.autograd.grad(sol.event.y[0, 1], w)
    assert abs(dv_dw + 1.0) < 1e-8


def test_backsolve_replay_with_a_shared_clock():
    """BacksolveAdjoint (named parameters) replays through the recorded zero crossings of
    x = cos(wt): dt_k/dw = -t_k/w to the backward solve's tolerance, and a terminal stop."""
    w = torch.tensor(1.7, dtype=DT, requires_grad=True)
    y0 = torch.tensor([1.0, 0.0], dtype=DT)
    term = ODETerm(lambda t, y: torch.stack([y[1], -w ** 2 * y[0]]))
    sol = solve(term, Dopri5(), 0.0, 5.0, y0, controller=TIGHT, adjoint=BacksolveAdjoint([w]),
                event=Event(lambda t, y: y[0], terminal=False, max_events=3))
    t_exact = (torch.arange(3, dtype=DT) + 0.5) * math.pi / w
    assert (sol.event.t - t_exact).abs().max() < 1e-10
    grads = [torch.autograd.grad(sol.event.t[i], w, retain_graph=True)[0] for i in range(3)]
    assert max(abs(g - (-t_exact[i] / w)) for i, g in enumerate(grads)) < 1e-7
    # terminal: the first downward crossing of x = 0 at pi / (2w); the t1 save is the stop
    sol = solve(term, Dopri5(), 0.0, 5.0, y0, controller=TIGHT, adjoint=BacksolveAdjoint([w]),
                event=Event(lambda t, y: y[0], direction=-1))
    assert abs(sol.ts[-1].item() - math.pi / (2 * w.item())) < 1e-10
    dt_dw, = torch.autograd.grad(sol.ts[-1], w)
    assert abs(dt_dw.item() + math.pi / (2 * w.item() ** 2)) < 1e-7


def test_reversed_time_and_no_grad():
    """Integrating backwards from t0 = 0 to t1 = -5: the fall time is -sqrt(2h/g), and its
    gradient; without autograd the solve is the direct one (no replay)."""
    h = torch.tensor([10.0, 3.0], dtype=DT, requires_grad=True)
    y0 = torch.stack([h, torch.zeros_like(h)], -1)
    ground = Event(lambda t, y: y[..., 0], direction=-1)
    sol = solve(ODETerm(fall(9.81)), Dopri5(), 0.0, -5.0, y0, batch_ndim=1, adjoint=CheckpointAdjoint(),
                controller=TIGHT, event=ground)
    assert (sol.event.t + torch.sqrt(2 * h / 9.81)).abs().max() < 1e-12
    dt_dh, = torch.autograd.grad(sol.event.t.sum(), h)
    assert (dt_dh + 1 / torch.sqrt(2 * 9.81 * h)).abs().max() < 1e-9
    with torch.no_grad():
        a = solve(ODETerm(fall(9.81)), Dopri5(), 0.0, -5.0, y0, batch_ndim=1, adjoint=CheckpointAdjoint(),
                  controller=TIGHT, event=ground)
        b = solve(ODETerm(fall(9.81)), Dopri5(), 0.0, -5.0, y0, batch_ndim=1, controller=TIGHT, event=ground)
    assert torch.equal(a.event.t, b.event.t) and torch.equal(a.ys, b.ys) and a.stats["nfe"] == b.stats["nfe"]
    assert sol.stats["nfe"] > b.stats["nfe"]                 # the replay's work is counted


def test_merged_grid_is_strictly_increasing_and_maps_every_needed_time():
    """Rows with different numbers of needed times, duplicates and unneeded ones."""
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0, 1.5, 9.0],      # an event at 1.5, an unneeded candidate
                      [0.0, 1.0, 2.0, 3.0, 2.0, 0.5],      # an event exactly on a save time
                      [0.0, 1.0, 2.0, 3.0, 0.7, 2.5]], dtype=DT)
    needed = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    grid, pos = _merged_grid(s, needed)
    assert (grid[:, 1:] > grid[:, :-1]).all()
    assert torch.equal(grid.gather(-1, pos)[needed], s[needed])
    assert pos[1, 4] == pos[1, 2]                           # the duplicate shares its slot
    assert grid[:, 0].eq(0).all() and torch.equal(grid[:, -1], torch.tensor([3.0, 3.0, 2.5], dtype=DT))


def test_refused_adjoints_and_solvers():
    y0 = torch.tensor([[10.0, 0.0]], dtype=DT)
    ground = Event(lambda t, y: y[..., 0], direction=-1)
    with pytest.raises(ValueError, match="one clock shared by the batch"):
        solve(ODETerm(fall(9.81)), Dopri5(), 0.0, 5.0, y0, batch_ndim=1, event=ground, adjoint=BacksolveAdjoint())
    with pytest.raises(ValueError, match="Rodas4 cannot be used with CheckpointAdjoint"):
        solve(ODETerm(fall(9.81)), Rodas4(), 0.0, 5.0, y0.requires_grad_(True), batch_ndim=1, event=ground,
              adjoint=CheckpointAdjoint())
