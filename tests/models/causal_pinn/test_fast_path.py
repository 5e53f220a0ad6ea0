"""The fast training path of the causal PINN (fused Adam, HVP engine, compiled loss) and the
Lorenz-63 scalings: each must give the numbers of plain autograd / the unscaled network."""

from __future__ import annotations

import time

import pytest
import torch

from sciflow.models.causal_pinn import ENGINES, CausalPINN, Config, PINNNetwork, train
from sciflow.models.causal_pinn.problems import lorenz63
from sciflow.models.causal_pinn.train import History, compiled_loss, lbfgs, make_adam
from sciflow.nn import MLP, ModifiedMLP


def _plain_burgers_loss(net: torch.nn.Module, batch, nu: float) -> torch.Tensor:
    """Textbook PINN loss with double backward, written independently of sciflow's engines."""
    x = batch.interior.detach().requires_grad_(True)
    u = net(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g[:, 1].sum(), x, create_graph=True)
    r = g[:, :1] + u * g[:, 1:2] - nu * g2[:, 1:2]
    return (r ** 2).mean() + (net(batch.initial) - batch.initial_values).pow(2).mean()


def _burgers_model(engine: str, dtype=torch.float64) -> tuple[CausalPINN, object]:
    cfg = Config(problem="burgers", width=16, depth=2, n_interior=64, n_chunks=8, n_initial=16,
                 causal=False, balance=False, derivative_engine=engine,
                 dtype="float64" if dtype == torch.float64 else "float32")
    model = CausalPINN(cfg).to(dtype)
    batch = model.problem.sample(64, 16, generator=torch.Generator().manual_seed(3), dtype=dtype)
    return model, batch


@pytest.mark.parametrize("engine", ["taylor", "hvp", "autograd"])
def test_engine_parameter_gradients_equal_plain_double_backward(engine: str) -> None:
    model, batch = _burgers_model(engine)
    nu = model.problem.parameters["nu"]
    g_model = torch.autograd.grad(model.loss(batch).total, list(model.parameters()))
    g_ref = torch.autograd.grad(_plain_burgers_loss(model.net, batch, nu), list(model.parameters()))
    for a, b in zip(g_model, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("arch", [MLP, ModifiedMLP])
def test_hvp_engine_equals_nested_autograd(arch) -> None:
    g = torch.Generator().manual_seed(0)
    net = PINNNetwork(3, 3, width=12, depth=2, architecture=arch, periodic={1: 2.0}, generator=g).double()
    x = torch.rand(25, 3, dtype=torch.float64, generator=g)
    spec = [(0, 1), (1, 2), (2, 2)]
    a, b = ENGINES["hvp"]()(net, x, spec), ENGINES["autograd"]()(net, x, spec)
    assert torch.allclose(a.value, b.value)
    for key in b.partials:
        assert torch.allclose(a.partials[key], b.partials[key], rtol=0, atol=1e-12), key
    with pytest.raises(ValueError, match="orders <= 2"):
        ENGINES["hvp"]()(net, x, [(1, 4)])


def test_fused_adam_step_equals_reference_adam() -> None:
    model, batch = _burgers_model("taylor", torch.float32)
    ref = CausalPINN(model.cfg).to(torch.float32)
    ref.load_state_dict(model.state_dict())
    opt_fast, opt_ref = make_adam(model, 1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2, foreach=False)
    assert opt_fast.defaults.get("fused") is True
    for _ in range(3):
        for m, opt in ((model, opt_fast), (ref, opt_ref)):
            opt.zero_grad()
            m.loss(batch).total.backward()
            opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(model.parameters()), next(CausalPINN(model.cfg).parameters()))


@pytest.mark.slow
def test_compiled_loss_gradients_equal_plain_autograd() -> None:
    model, batch = _burgers_model("taylor")
    nu = model.problem.parameters["nu"]
    g_c = torch.autograd.grad(compiled_loss(model)(batch).total, list(model.parameters()))
    g_ref = torch.autograd.grad(_plain_burgers_loss(model.net, batch, nu), list(model.parameters()))
    for a, b in zip(g_c, g_ref):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------- scalings (Lorenz)
def test_time_and_output_scaling_keep_hard_ic_and_exact_derivatives() -> None:
    g = torch.Generator().manual_seed(1)
    u0 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    net = PINNNetwork(1, 3, width=16, depth=2, architecture=MLP, hard_ic=u0, time_scale=10.0,
                      output_scale=50.0, generator=g).double()
    base = PINNNetwork(1, 3, width=16, depth=2, architecture=MLP, hard_ic=u0, generator=g).double()
    base.load_state_dict(net.state_dict())
    t = torch.rand(30, 1, dtype=torch.float64, generator=g) * 0.1
    # u(t) = u0 + t * 50 * N(10 t), N the unscaled trunk
    assert torch.allclose(net(t), u0 + 50.0 * (base(10.0 * t) - u0) / 10.0)
    assert torch.allclose(net(torch.zeros(1, 1, dtype=torch.float64)), u0[None])
    spec = [(0, 1)]
    a, b = ENGINES["taylor"]()(net, t, spec), ENGINES["autograd"]()(net, t, spec)
    assert torch.allclose(a.d(0), b.d(0), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="must be > 0"):
        PINNNetwork(1, 3, output_scale=0.0)


def test_normalize_time_uses_the_window_length() -> None:
    cfg = Config(problem="lorenz63", width=8, depth=1, n_interior=32, n_chunks=8, n_initial=0,
                 n_boundary=0, normalize_time=True, output_scale=20.0)
    model = CausalPINN(cfg, lorenz63(t_final=0.25))
    assert model.net.time_scale == pytest.approx(4.0) and model.net.output_scale == 20.0


def test_lorenz_short_window_advances_epsilon_stages() -> None:
    """The CPU recipe (window 0.1, normalised time, output x50): the official eps schedule
    must leave its first stage within a few hundred Adam steps (with 0.5-windows it never did)."""
    cfg = Config(problem="lorenz63", width=64, depth=2, periodic_embedding=False, n_interior=160,
                 n_chunks=16, n_initial=0, n_boundary=0, balance=False, anneal=True,
                 epsilon_schedule=(1e-3, 1e-2, 1e-1, 1.0, 10.0), steps=600, check_every=50,
                 normalize_time=True, output_scale=50.0)
    hist = train(CausalPINN(cfg, lorenz63(t_final=0.1)))
    assert len(hist.stage_ends) >= 1 and max(hist.epsilon) >= 1e-2
    assert hist.terms["residual"][-1] < 1e-2 * hist.terms["residual"][0]


def test_lbfgs_respects_cpu_budget_between_blocks() -> None:
    model, batch = _burgers_model("autograd")
    hist = History()
    c0 = time.process_time()
    lbfgs(model, 10_000, batch, 1.0, hist, time.perf_counter(), c0, time_budget_s=0.0, block=5)
    assert hist.step == [5]  # one block, then the (spent) budget ends it


def test_lbfgs_resample_draws_fresh_points_and_generalises(monkeypatch) -> None:
    """``lbfgs_resample``: a new batch (and a new L-BFGS) every that many iterations, logged once per
    block; on few points it lowers the loss at held-out points below one fixed batch's (which the
    network overfits: the shock drift of the demo)."""
    def run(resample: int):
        cfg = Config(problem="burgers", width=16, depth=3, n_interior=64, n_chunks=8, n_initial=32,
                     n_boundary=8, steps=50, lr=5e-3, lbfgs_steps=120, lbfgs_resample=resample,
                     check_every=50, causal=False, balance=False, dtype="float64", seed=0)
        model = CausalPINN(cfg)
        draws, cls = [], type(model.problem)
        sample = cls.sample
        monkeypatch.setattr(cls, "sample", lambda *a, **k: draws.append(1) or sample(*a, **k))
        hist = train(model)
        monkeypatch.undo()
        held_out = model.problem.sample(4096, 512, 64, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
        return hist, len(draws), float(model.loss(held_out).total.detach())

    fixed, n_fixed, loss_fixed = run(0)
    fresh, n_fresh, loss_fresh = run(30)
    assert n_fixed == 50 + 1 and n_fresh == 50 + 4
    assert fixed.step[-1] == fresh.step[-1] == 49 + 120 and fresh.step[-4:] == [79, 109, 139, 169]
    assert loss_fresh < 0.5 * loss_fixed, (loss_fresh, loss_fixed)
    with pytest.raises(ValueError, match="lbfgs_resample"):
        Config(lbfgs_resample=-1)
