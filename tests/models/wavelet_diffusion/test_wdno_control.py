"""Solver-based evaluation of controls: the data's own forcing reproduces its final state."""

import pytest
import torch

from sciflow.data.pdes.burgers import generate_control
from sciflow.models.wavelet_diffusion import evaluate_burgers_control, grid_forcing


def test_grid_forcing_is_bilinear():
    t = torch.tensor([0.0, 0.5, 1.0])
    x = torch.tensor([0.0, 0.25, 1.0])
    v = torch.arange(9.0).reshape(1, 3, 3)
    f = grid_forcing(v, t, x)
    assert torch.allclose(f(0.5, x), v[:, 1].double())
    assert torch.allclose(f(0.25, torch.tensor([0.125])), torch.tensor([[(0 + 1 + 3 + 4) / 4]], dtype=torch.float64))
    assert torch.allclose(f(2.0, x), v[:, 2].double())  # constant beyond the last time


def test_true_forcing_reaches_the_data_final_state():
    ds = generate_control(2, 3, nx=33, nt=5, n_modes=32, dt=5e-3)
    u = torch.tensor(ds.u.values)
    f = torch.tensor(ds.forcing.values)
    t, x = torch.tensor(ds.time.values), torch.tensor(ds.x.values)
    kw = dict(n_modes=32, dt=5e-3, weight=0.1)
    true = evaluate_burgers_control(f, u[:, 0], u[:, -1], t, x, **kw)
    zero = evaluate_burgers_control(torch.zeros_like(f), u[:, 0], u[:, -1], t, x, **kw)
    assert true.u.shape == u.shape
    assert (true.state_cost < 0.02 * zero.state_cost).all(), (true.state_cost, zero.state_cost)
    assert torch.allclose(true.J, true.state_cost + 0.1 * f.pow(2).mean((1, 2)))
    assert (zero.energy == 0).all()
    with pytest.raises(ValueError, match="forcing"):
        evaluate_burgers_control(f[:, :, :-1], u[:, 0], u[:, -1], t, x)
