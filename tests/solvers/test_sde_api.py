"""sdeint's contract: noise types, torchsde backend on the same path, clear errors."""

from __future__ import annotations

import pytest
import torch

from sciflow.solvers.ode import Dopri5, odeint
from sciflow.solvers.sde import (SRA1, SRI, Additive, BrownianIncrements, Diagonal, EulerMaruyama, General, Milstein,
                                 Scalar, StratonovichHeun, TorchSDE, VirtualBrownianTree, sdeint)

DT = torch.float64
T01 = torch.tensor([0.0, 0.5, 1.0], dtype=DT)


def _bm(shape, n=64, levy=False, seed=0):
    return BrownianIncrements.uniform(0.0, 1.0, n, shape, generator=torch.Generator().manual_seed(seed),
                                      dtype=DT, levy_area=levy)


def test_general_noise_with_diagonal_matrix_equals_diagonal_noise():
    y0 = torch.randn(4, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    bm = _bm((4, 3))
    f = lambda t, y: -y  # noqa: E731
    g_diag = lambda t, y: 0.3 * torch.tanh(y) + 0.1  # noqa: E731
    a = sdeint(f, g_diag, y0, T01, noise=Diagonal(), dt=1 / 64, brownian=bm)
    b = sdeint(f, lambda t, y: torch.diag_embed(g_diag(t, y)), y0, T01, noise=General(3), dt=1 / 64, brownian=bm)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_scalar_noise_shares_one_brownian_motion():
    # both components driven by the same W: with g = 1 and f = 0 they stay equal
    y0 = torch.zeros(6, 2, dtype=DT)
    ys = sdeint(lambda t, y: 0 * y, lambda t, y: torch.ones_like(y), y0, T01, noise=Scalar(), dt=0.1,
                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ys[..., 0], ys[..., 1])
    assert ys[-1].std() > 0.1


@pytest.mark.parametrize("method, ours, noise", [
    ("euler", EulerMaruyama(), Diagonal()),
    ("heun", StratonovichHeun(), Diagonal()),
    ("euler", EulerMaruyama(), General(2)),
])
def test_torchsde_backend_matches_on_the_same_path(method, ours, noise):
    y0 = torch.rand(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4)) + 0.5
    f = lambda t, y: torch.sin(y) - 0.5 * y * t  # noqa: E731
    if isinstance(noise, General):
        w = torch.randn(3, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
        g = lambda t, y: 0.2 * torch.tanh(y).unsqueeze(-1) * w  # noqa: E731
    else:
        g = lambda t, y: 0.3 * y  # noqa: E731
    bm = _bm(noise.increment_shape(y0.shape))
    a = sdeint(f, g, y0, T01, noise=noise, solver=ours, dt=1 / 64, brownian=bm)
    b = sdeint(f, g, y0, T01, noise=noise, solver=TorchSDE(method), dt=1 / 64, brownian=bm)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_sri_matches_torchsde_srk_diagonal():
    """Same Rößler tableau as torchsde's srk for diagonal noise, evaluated once per stage."""
    y0 = torch.rand(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4)) + 0.5
    f = lambda t, y: torch.sin(y) - 0.5 * y * t  # noqa: E731
    g = lambda t, y: 0.3 * torch.tanh(y) + 0.1 * t  # noqa: E731
    bm = _bm((5, 3), levy=True)
    a = sdeint(f, g, y0, T01, solver=SRI(), dt=1 / 64, brownian=bm)
    b = sdeint(f, g, y0, T01, solver=TorchSDE("srk"), dt=1 / 64, brownian=bm)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_sra1_matches_torchsde_srk_additive():
    """Same tableau, same path, same I_(1,0) convention: torchsde's SRA1 and ours agree."""
    y0 = torch.rand(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4))
    f = lambda t, y: torch.sin(2 * y) - y  # noqa: E731
    w = torch.randn(3, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    g = lambda t, y: (1 + t) * w.expand(*y.shape, 2)  # noqa: E731
    bm = _bm((5, 2), levy=True)
    a = sdeint(f, g, y0, T01, noise=Additive(2), solver=SRA1(), dt=1 / 64, brownian=bm)
    b = sdeint(f, g, y0, T01, noise=Additive(2), solver=TorchSDE("srk"), dt=1 / 64, brownian=bm)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_tree_and_increments_drive_same_solver():
    tree = VirtualBrownianTree(0.0, 1.0, (8, 2), seed=1, dtype=DT)
    ys = sdeint(lambda t, y: -y, lambda t, y: 0.5 * y, torch.ones(8, 2, dtype=DT), T01, dt=0.01, brownian=tree)
    # the same tree twice gives the same solution (adjoint/recompute requirement)
    ys2 = sdeint(lambda t, y: -y, lambda t, y: 0.5 * y, torch.ones(8, 2, dtype=DT), T01, dt=0.01, brownian=tree)
    assert torch.equal(ys, ys2)


def test_gradients_flow_through_sdeint():
    w = torch.tensor(0.7, dtype=DT, requires_grad=True)
    ys = sdeint(lambda t, y: -w * y, lambda t, y: 0.1 * y, torch.ones(3, 2, dtype=DT), T01, dt=0.05,
                generator=torch.Generator().manual_seed(0))
    ys[-1].sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad) and w.grad < 0


def test_errors_are_clear():
    y0 = torch.ones(4, 2, dtype=DT)
    f = lambda t, y: -y  # noqa: E731
    g = lambda t, y: y  # noqa: E731
    with pytest.raises(TypeError, match="Dopri5 solves ode terms but was handed a SDETerm"):
        sdeint(f, g, y0, T01, solver=Dopri5())
    with pytest.raises(TypeError, match="EulerMaruyama solves sde terms but was handed a ODETerm"):
        odeint(f, y0, T01, solver=EulerMaruyama(), dt=0.1)
    with pytest.raises(ValueError, match="diffusion returned shape"):
        sdeint(f, lambda t, y: y[..., :1], y0, T01, dt=0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        sdeint(f, g, y0, torch.tensor([0.0, 1.0, 0.5]), dt=0.1)
    with pytest.raises(ValueError, match="Milstein supports noise types"):
        sdeint(f, lambda t, y: y.unsqueeze(-1), y0, T01, noise=General(1), solver=Milstein(), dt=0.1)
    with pytest.raises(ValueError, match="SRA1 supports noise types"):
        sdeint(f, g, y0, T01, solver=SRA1(), dt=0.1)
    with pytest.raises(ValueError, match="levy_area=True"):
        sdeint(f, lambda t, y: torch.ones_like(y), y0, T01, noise=Additive(), solver=SRA1(), dt=0.1,
               brownian=_bm((4, 2)))
    with pytest.raises(ValueError, match="needs increments of shape"):
        sdeint(f, g, y0, T01, dt=0.1, brownian=_bm((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        sdeint(f, g, torch.full((4, 2), float("nan")), T01, dt=0.1)
    with pytest.raises(FloatingPointError, match="t=0.5"):
        sdeint(lambda t, y: y**3 * 1e5, lambda t, y: 0 * y, y0, T01, dt=0.1)


def test_torchsde_adjoint_backend_gradient_matches_direct():
    # same Brownian path; adjoint (optimise-then-discretise) and direct gradients agree to O(dt)
    w = torch.tensor(0.8, dtype=DT, requires_grad=True)
    f = lambda t, y: -w * y + torch.sin(y)  # noqa: E731
    g = lambda t, y: 0.2 * torch.ones_like(y)  # noqa: E731
    y0 = torch.ones(16, 2, dtype=DT)
    bm = VirtualBrownianTree(0.0, 1.0, (16, 2), seed=3, dtype=DT, tol=1e-3)
    tt = torch.tensor([0.0, 1.0], dtype=DT)
    direct = torch.autograd.grad(sdeint(f, g, y0, tt, noise=Additive(), dt=5e-3, brownian=bm)[-1].sum(), w)[0]
    adj = torch.autograd.grad(sdeint(f, g, y0, tt, noise=Additive(), dt=5e-3, brownian=bm,
                                     solver=TorchSDE("euler", adjoint=True, adjoint_params=(w,)))[-1].sum(), w)[0]
    torch.testing.assert_close(adj, direct, rtol=2e-2, atol=1e-6)
