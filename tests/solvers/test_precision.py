"""Solvers under ``torch.autocast``: a half-precision state is integrated in float32.

dy/dt = -0.001 y through a bias-free linear layer, 100 unit steps from y0 = 1: each increment is
1e-3 of the state, below bf16's half-ulp (2^-9), so a solve that stepped in bf16 would never leave
y0 = 1; in float32 it reaches 0.999^100 (Euler) = 0.905 (the layer's bf16 weight -0.0009994...
is the only rounding left).
"""

from __future__ import annotations

import pytest
import torch

from sciflow.solvers import RK4, Diagonal, Dopri5, Euler, EulerMaruyama, odeint, sdeint
from sciflow.solvers._precision import in_state_dtype, working_state


def _decay_layer() -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(-1e-3)
    return layer


@pytest.mark.parametrize("solver", [Euler(), RK4()])
def test_ode_state_stays_float32_under_autocast(solver) -> None:
    layer = _decay_layer()
    t = torch.linspace(0.0, 100.0, 101)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y0 = layer(torch.full((4, 1), -1e3))  # an encoder's bf16 output: -1e-3 * -1e3 = 1
        assert y0.dtype == torch.bfloat16
        ys = odeint(lambda t, y: layer(y), y0, t, solver=solver)
    assert ys.dtype == torch.float32
    w = torch.tensor(-1e-3).bfloat16().double()  # the weight autocast multiplies with
    expected = (1 + w) ** 100 if isinstance(solver, Euler) else torch.exp(100 * w)
    torch.testing.assert_close(ys[-1].double(), expected.expand(4, 1), rtol=3e-3, atol=0)
    assert float(ys[-1].detach().max()) < 0.91  # stepped in bf16 it would stay at 1


def test_sde_state_stays_float32_under_autocast() -> None:
    layer = _decay_layer()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y0 = layer(torch.full((4, 1), -1e3))
        ys = sdeint(lambda t, y: layer(y), lambda t, y: torch.zeros_like(y), y0, torch.linspace(0.0, 100.0, 101),
                    noise=Diagonal(), solver=EulerMaruyama())
    assert ys.dtype == torch.float32
    assert float(ys[-1].detach().max()) < 0.91


def test_outside_autocast_a_half_state_is_the_callers_choice() -> None:
    y0 = torch.ones(3, dtype=torch.bfloat16)
    assert working_state(y0) is y0
    ys = odeint(lambda t, y: -1e-3 * y, y0, torch.linspace(0.0, 10.0, 11), solver=Euler())
    assert ys.dtype == torch.bfloat16 and torch.equal(ys[-1], y0)  # bf16 arithmetic, as asked
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert working_state(y0).dtype == torch.float32
        assert working_state(y0.double()).dtype == torch.float64
    half = torch.ones(2, dtype=torch.bfloat16)
    assert in_state_dtype(half, torch.zeros(2)).dtype == torch.float32
    assert in_state_dtype(half, torch.zeros(2, dtype=torch.float64)).dtype == torch.float64
    full = torch.ones(2)
    assert in_state_dtype(full, torch.zeros(2, dtype=torch.float64)) is full  # only half precision is cast


@pytest.mark.parametrize("solver", [RK4(), Dopri5()])
def test_half_precision_stages_are_combined_in_the_state_dtype(solver) -> None:
    """A field that returns bf16 (an autocast layer) gives exactly the solve of the same values in
    float32: the stages are cast before the update and the error estimate combine them."""
    y0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 2.0, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = odeint(lambda t, y: (-0.5 * y).bfloat16(), y0, t, solver=solver, rtol=1e-4, atol=1e-6)
    ref = odeint(lambda t, y: (-0.5 * y).bfloat16().float(), y0, t, solver=solver, rtol=1e-4, atol=1e-6)
    assert got.dtype == torch.float32 and torch.equal(got, ref)
