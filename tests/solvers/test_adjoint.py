"""Adjoints: backsolve and checkpointing agree with direct autograd; gradcheck on small problems."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.solvers import (
    RK4, BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, Dopri5, Torchdiffeq, Tsit5, odeint,
)

DT = torch.float64


def make_field(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.5)

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y) * torch.cos(t) - 0.1 * y

    y0 = torch.randn(4, 3, generator=g, dtype=DT)
    return Field(), y0


def grads(adjoint, solver=None, **kw):
    f, y0 = make_field()
    y0.requires_grad_(True)
    t = torch.linspace(0, 1.5, 4, dtype=DT)
    w = torch.linspace(-1, 1, 4 * 4 * 3, dtype=DT).reshape(4, 4, 3)
    ys = odeint(f, y0, t, solver=solver or Dopri5(), adjoint=adjoint, **kw)
    loss = (w * ys).sum() + (ys[-1] ** 2).sum()
    return torch.autograd.grad(loss, (y0, *f.parameters()))


def assert_grads_close(a, b, rtol):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol * y.abs().max().item())


@pytest.mark.parametrize("solver", [Dopri5(), Tsit5()], ids=lambda s: type(s).__name__)
def test_backsolve_matches_direct(solver):
    tol = dict(rtol=1e-10, atol=1e-12)
    ref = grads(DirectAdjoint(), solver, **tol)
    got = grads(BacksolveAdjoint(), solver, **tol)
    assert_grads_close(got, ref, 1e-5)


def test_checkpoint_matches_direct_exactly():
    tol = dict(rtol=1e-7, atol=1e-9)
    ref = grads(DirectAdjoint(), **tol)
    got = grads(CheckpointAdjoint(), **tol)
    assert_grads_close(got, ref, 1e-7)
    # per-trajectory stepping and fixed steps too
    ref = grads(DirectAdjoint(), batch_ndim=1, **tol)
    got = grads(CheckpointAdjoint(), batch_ndim=1, **tol)
    assert_grads_close(got, ref, 1e-7)
    ref = grads(DirectAdjoint(), RK4(), dt=0.05)
    got = grads(CheckpointAdjoint(), RK4(), dt=0.05)
    assert_grads_close(got, ref, 1e-10)
    # sub-interval segments that the fixed steps hit exactly: same steps, same gradients
    got = grads(CheckpointAdjoint(segments=5), RK4(), dt=0.05)
    assert_grads_close(got, ref, 1e-9)
    with pytest.raises(ValueError, match="segments must be >= 1"):
        CheckpointAdjoint(segments=0)


def test_backsolve_explicit_params_only():
    """Only the named tensors receive gradients; gradients to them are still right."""
    f, y0 = make_field()
    first = f.net[0].weight
    t = torch.linspace(0, 1, 3, dtype=DT)
    ys = odeint(f, y0, t, adjoint=BacksolveAdjoint([first]), rtol=1e-10, atol=1e-12)
    ys.pow(2).sum().backward()
    assert f.net[2].weight.grad is None
    g_bs = first.grad.clone()
    first.grad = None
    odeint(f, y0, t, rtol=1e-10, atol=1e-12).pow(2).sum().backward()
    torch.testing.assert_close(g_bs, first.grad, rtol=1e-5, atol=1e-8)


def test_gradcheck_small_problem():
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 0.25, 0.5], dtype=DT)

    def run(adjoint, solver, **kw):
        def fn(y0, A):
            return odeint(lambda s, y: torch.tanh(y @ A.T), y0, t, solver=solver, adjoint=adjoint, **kw)
        return fn

    y0 = torch.tensor([[0.3, -0.7]], dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(run(CheckpointAdjoint(), Dopri5(), rtol=1e-8, atol=1e-10), (y0, A))
    # backsolve: the continuous adjoint of a fine fixed-step forward solve
    assert torch.autograd.gradcheck(run(BacksolveAdjoint([A]), RK4(), dt=0.02), (y0, A), atol=1e-6)


def test_backsolve_rejects_per_sample_grids():
    f, y0 = make_field()
    ts = torch.tensor([[0.0, 1.0]] * 4, dtype=DT)
    with pytest.raises(ValueError, match="shared by the batch"):
        odeint(f, y0, ts, adjoint=BacksolveAdjoint())


def test_torchdiffeq_backend_adjoint():
    f, y0 = make_field()
    t = torch.linspace(0, 1, 3, dtype=DT)
    params = list(f.parameters())
    ys = odeint(f, y0, t, solver=Torchdiffeq("dopri5"), adjoint=BacksolveAdjoint(params), rtol=1e-10, atol=1e-12)
    g_td = torch.autograd.grad(ys.pow(2).sum(), params)
    ys = odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    g_ref = torch.autograd.grad(ys.pow(2).sum(), params)
    assert_grads_close(g_td, g_ref, 1e-5)
