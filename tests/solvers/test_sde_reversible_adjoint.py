"""The reversible Heun adjoint (Kidger et al. 2021, Alg. 2): gradients equal to backpropagation
through the same reversible Heun steps (same Brownian increments) for every noise type and save
pattern, the step inverted to rounding, memory flat in the number of steps, and the settings it
refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.solvers import (Additive, Diagonal, EulerMaruyama, General, PIController, ReversibleAdjoint,
                             ReversibleHeun, Scalar, sdeint)
from sciflow.solvers.sde.reversible_adjoint import _step
from sciflow.solvers.sde.term import SDETerm

DT = torch.float64


class Net(nn.Module):
    def __init__(self, d_in, d_out, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, d_out)).double()

    def forward(self, t, y):
        return self.net(torch.cat([y, torch.sin(t).expand(*y.shape[:-1], 1)], -1))


def fields(noise):
    f = Net(4, 3, 0)
    if isinstance(noise, General):
        g_net = Net(4, 6, 1)
        return f, lambda t, y: g_net(t, y).reshape(*y.shape, 2), g_net
    if isinstance(noise, Scalar):
        g_net = Net(4, 3, 1)
        return f, lambda t, y: 0.3 * torch.tanh(g_net(t, y)), g_net
    if isinstance(noise, Additive):
        g_net = Net(1, 3, 1)
        return f, lambda t, y: g_net(t, torch.zeros(*y.shape[:-1], 0, dtype=y.dtype)).tanh(), g_net
    g_net = Net(4, 3, 1)
    return f, lambda t, y: 0.3 * torch.tanh(g_net(t, y)), g_net


NOISES = [Diagonal(), Scalar(), General(2), Additive()]


@pytest.mark.parametrize("noise", NOISES, ids=lambda n: type(n).__name__)
def test_gradients_equal_backprop_through_the_steps(noise):
    """y0, drift and diffusion parameters; a loss on three of five saves (the save at t0 too)."""
    f, g, g_net = fields(noise)
    y0 = torch.randn(6, 3, dtype=DT, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 5, dtype=DT)
    params = [y0, *f.parameters(), *g_net.parameters()]
    out = []
    for adjoint in (None, ReversibleAdjoint(list(f.parameters()) + list(g_net.parameters()))):
        ys = sdeint(f, g, y0, t, noise=noise, solver=ReversibleHeun(), dt=0.02,
                    generator=torch.Generator().manual_seed(3), adjoint=adjoint)
        loss = ys[0].square().sum() + ys[2].sin().sum() + (ys[-1] ** 3).mean()
        out.append((ys.detach(), torch.autograd.grad(loss, params)))
    (ya, ga), (yb, gb) = out
    assert torch.equal(ya, yb)
    for a, b in zip(ga, gb):
        assert float((a - b).abs().max() / b.abs().max()) < 1e-12          # measured ~7e-16


def test_the_step_inverts_to_rounding():
    """200 steps forward, then the inversion used by the backward pass: back at (y0, z0 = y0)."""
    f, g, _ = fields(Diagonal())
    term = SDETerm(f, g, Diagonal())
    g_ = torch.Generator().manual_seed(0)
    y = z = torch.randn(4, 3, dtype=DT, generator=g_)
    y_start = y.clone()
    ts = torch.linspace(0, 2, 201, dtype=DT)
    dws = 0.1 * torch.randn(200, 4, 3, dtype=DT, generator=g_)
    with torch.no_grad():
        fz, gz = term.f(ts[0], z), term.g(ts[0], z)
        for i in range(200):
            y, z, fz, gz = _step(term, ts[i], ts[i + 1], 0.01, dws[i], y, z, fz, gz)
        for i in reversed(range(200)):
            z = 2 * y - z - fz * 0.01 - term.g_prod(gz, dws[i])
            f0, g0 = term.f(ts[i], z), term.g(ts[i], z)
            y = y - 0.005 * (f0 + fz) - 0.5 * term.g_prod(g0 + gz, dws[i])
            fz, gz = f0, g0
    assert float((y - y_start).abs().max()) < 1e-11 and float((z - y_start).abs().max()) < 1e-11


def test_memory_is_flat_in_the_number_of_steps():
    """Bytes autograd keeps from the forward pass: the same for 25 and 400 steps (only the saves,
    the end state and the parameters), linear without the adjoint."""
    f, g, g_net = fields(Diagonal())
    y0 = torch.randn(32, 3, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)

    def saved(n, adjoint):
        seen = {}

        def pack(x):
            seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            ys = sdeint(f, g, y0, t, solver=ReversibleHeun(), dt=1.0 / n, generator=torch.Generator().manual_seed(0),
                        adjoint=adjoint)
        ys.sum().backward()
        return sum(seen.values())

    assert saved(25, ReversibleAdjoint()) == saved(400, ReversibleAdjoint())
    assert saved(400, None) > 10 * saved(25, ReversibleAdjoint())


def test_refused_settings():
    f, g, _ = fields(Diagonal())
    y0 = torch.randn(2, 3, dtype=DT)
    t = torch.linspace(0, 1, 3, dtype=DT)
    with pytest.raises(ValueError, match="solver=ReversibleHeun"):
        sdeint(f, g, y0, t, solver=EulerMaruyama(), dt=0.1, adjoint=ReversibleAdjoint())
    with pytest.raises(ValueError, match="fixed steps"):
        sdeint(f, g, y0, t, solver=ReversibleHeun(), controller=PIController(), adjoint=ReversibleAdjoint())
    with pytest.raises(ValueError, match="shared by the batch"):
        sdeint(f, g, y0, t.expand(2, 3), solver=ReversibleHeun(), dt=0.1, adjoint=ReversibleAdjoint())
    with pytest.raises(TypeError, match="ReversibleAdjoint"):
        sdeint(f, g, y0, t, solver=ReversibleHeun(), dt=0.1, adjoint="reversible")
    with pytest.raises(TypeError, match="adjoint_params must be tensors"):
        ReversibleAdjoint([1.0])
