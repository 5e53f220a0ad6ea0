"""NeuralODE: solver wiring against a tight reference, normalisation invariance, gradients
through every adjoint, learning a linear system, sampling shapes."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.neural_ode import Config, NeuralODE
from sciflow.solvers.ode import Dopri5
from sciflow.training import BatchLoader, TrainConfig, fit


def _spiral(n: int = 32, T: int = 12, dt: float = 0.1, seed: int = 0) -> TrajectoryBatch:
    """Exact solutions of dy/dt = A y, A = [[-0.1, 2], [-2, -0.1]] (damped rotation)."""
    g = torch.Generator().manual_seed(seed)
    y0 = torch.randn(n, 2, generator=g, dtype=torch.float64) * 2
    t = torch.arange(T, dtype=torch.float64) * dt
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    ys = torch.stack([torch.linalg.matrix_exp(A * s) @ y0.T for s in t]).permute(2, 0, 1)
    return TrajectoryBatch(values=ys.float(), times=t.float())


def test_fixed_step_converges_to_adaptive_reference_at_fourth_order() -> None:
    torch.manual_seed(0)
    ref_model = NeuralODE(Config(state_dim=2, width=16), solver=Dopri5()).double()
    ref_model.cfg = Config(state_dim=2, width=16, rtol=1e-12, atol=1e-12)
    batch = _spiral(4, T=6, dt=1.0)  # coarse grid: the asymptotic regime of RK4 at 4..16 steps
    y0, t = batch.values[:, 0].double(), batch.times.double()
    with torch.no_grad():
        ref = ref_model(y0, t)
    errs = []
    for k in (4, 8, 16):
        m = NeuralODE(Config(state_dim=2, width=16, solver="rk4", steps_per_interval=k)).double()
        m.load_state_dict(ref_model.state_dict())
        with torch.no_grad():
            errs.append(float((m(y0, t) - ref).abs().max()))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert errs[-1] < 1e-5
    assert all(3.6 < o < 4.4 for o in orders), (errs, orders)


def test_loss_is_invariant_to_rescaling_the_data() -> None:
    torch.manual_seed(0)
    batch = _spiral(8)
    m = NeuralODE(Config(state_dim=2, width=16))
    m.fit_scaler(batch.values)
    loss = m.loss(batch).total
    scaled = TrajectoryBatch(values=batch.values * 100.0 + 5.0, times=batch.times)
    m.fit_scaler(scaled.values)
    torch.testing.assert_close(m.loss(scaled).total, loss, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("adjoint", ["backsolve", "backsolve-seminorm", "checkpoint"])
def test_adjoint_gradients_match_direct(adjoint: str) -> None:
    torch.manual_seed(0)
    batch = _spiral(4, T=6)
    grads = {}
    for name in ("direct", adjoint):
        torch.manual_seed(1)
        m = NeuralODE(Config(state_dim=2, width=8, solver="dopri5", rtol=1e-9, atol=1e-9, adjoint=name)).double()
        b = TrajectoryBatch(values=batch.values.double(), times=batch.times.double())
        m.loss(b).total.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in m.parameters()])
    torch.testing.assert_close(grads[adjoint], grads["direct"], rtol=1e-4, atol=1e-7)


def test_learns_a_linear_system_and_every_parameter_gets_gradient() -> None:
    torch.manual_seed(0)
    train, val = _spiral(64, seed=0), _spiral(16, seed=1)
    m = NeuralODE(Config(state_dim=2, width=16, depth=2))
    m.fit_scaler(train.values)
    m.loss(train).total.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} receives no gradient"
    m.zero_grad()
    res = fit(m, BatchLoader(train, 32), BatchLoader(val, 16, shuffle=False),
              TrainConfig(max_steps=200, lr=2e-2, eval_every=200, log_every=100, progress=False, device="cpu"))
    first = m.__class__(m.cfg)
    first.fit_scaler(train.values)
    with torch.no_grad():
        untrained = first.loss(val).total.item()
    assert res.final_val < 0.1 * untrained, (res.final_val, untrained)


def test_sample_shapes_and_mc_dropout() -> None:
    torch.manual_seed(0)
    batch = _spiral(3, T=5)
    m = NeuralODE(Config(state_dim=2, width=8, dropout=0.3))
    m.eval()
    s = m.sample(batch, 4)
    assert s.shape == (4, 3, 5, 2) and torch.equal(s[0], s[3])
    torch.testing.assert_close(s[0][:, 0], batch.values[:, 0])
    m.train()
    d = m.sample(batch, 4)
    assert d.shape == (4, 3, 5, 2) and not torch.allclose(d[0], d[1])
    with pytest.raises(ValueError, match="state_dim=2"):
        m(torch.zeros(3, 3), batch.times)
    with pytest.raises(TypeError, match="takes TrajectoryBatch"):
        m.loss("not a batch")


def test_fit_scaler_validates_and_base_default_is_noop():
    from sciflow.models.base import SciflowModel

    m = NeuralODE(Config(state_dim=3, width=8))
    with pytest.raises(ValueError, match="state components"):
        m.fit_scaler(torch.zeros(4, 5, 2))
    with pytest.raises(ValueError, match="NaN"):
        m.fit_scaler(torch.full((4, 5, 3), float("nan")))
    assert SciflowModel.fit_scaler(m, object()) is None  # families without statistics: nothing to fit
