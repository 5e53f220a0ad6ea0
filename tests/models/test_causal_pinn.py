"""Causal PINNs: the weight formula, annealing, derivative engines, residuals, training."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sciflow.data.batches import CollocationBatch, TrajectoryBatch
from sciflow.data.pdes import residuals as R
from sciflow.models.causal_pinn import (ENGINES, AnnealedEpsilon, CausalPINN, Config, FixedEpsilon,
                                        PINNNetwork, causal_weights, chunk_losses, march, train)
from sciflow.models.causal_pinn.balancing import GradNormBalancer
from sciflow.models.causal_pinn.problems import PROBLEMS, navier_stokes, navier_stokes_exact
from sciflow.models.causal_pinn.taylor import Directions, Jet, jet_forward
from sciflow.nn import MLP, ModifiedMLP

CONFIGS = Path(__file__).resolve().parents[2] / "sciflow" / "configs"


# ---------------------------------------------------------------------------- causal weights
def test_causal_weights_exact_exclusive_cumsum() -> None:
    L = torch.tensor([0.5, 0.25, 2.0, 0.125, 1.0], dtype=torch.float64)
    eps = 0.7
    w = causal_weights(L, eps)
    expect = [math.exp(-eps * float(L[:i].sum())) for i in range(len(L))]
    assert w[0].item() == 1.0  # w_1 = 1 exactly
    assert torch.allclose(w, torch.tensor(expect, dtype=torch.float64), rtol=1e-15, atol=0)
    # an inclusive sum would give w_1 = exp(-eps L_1) < 1
    assert not torch.allclose(w, torch.exp(-eps * torch.cumsum(L, 0)))
    # the IC loss enters in front of the sum (official code): w_i = exp(-eps (L0 + sum_{k<i}))
    w0 = causal_weights(L, eps, initial_loss=torch.tensor(0.3, dtype=torch.float64))
    assert torch.allclose(w0, torch.tensor(expect, dtype=torch.float64) * math.exp(-eps * 0.3))
    assert torch.all(w[1:] <= w[:-1])  # non-increasing in time


def test_causal_weights_are_detached() -> None:
    L = torch.tensor([0.4, 0.3, 0.2], requires_grad=True)
    w = causal_weights(L, 1.0)
    assert not w.requires_grad
    (w * L).mean().backward()
    # gradient of mean(w_i L_i) with constant w is w / N_t: nothing flows through w
    assert torch.allclose(L.grad, w / 3)


def test_chunk_losses_and_validation() -> None:
    r2 = torch.arange(8.0)
    assert torch.equal(chunk_losses(r2, 4), torch.tensor([0.5, 2.5, 4.5, 6.5]))
    with pytest.raises(ValueError, match="equal time chunks"):
        chunk_losses(torch.ones(10), 4)
    with pytest.raises(ValueError, match="epsilon"):
        causal_weights(torch.ones(3), -1.0)


def test_epsilon_annealing_stage_logic() -> None:
    s = AnnealedEpsilon((1e-2, 1e-1, 1.0, 10.0, 100.0), delta=0.99)
    assert s.epsilon == 1e-2
    assert s.observe(0.5) is False and s.epsilon == 1e-2  # min w <= delta: stay
    assert s.observe(0.99) is False  # strict inequality
    for e_next in (1e-1, 1.0, 10.0, 100.0):
        assert s.observe(0.995) is True
        assert s.epsilon == e_next and not s.finished
    assert s.observe(0.999) is True and s.finished
    f = FixedEpsilon(1.0)
    assert f.observe(1.0) is False and f.epsilon == 1.0 and not f.finished
    with pytest.raises(ValueError, match="delta"):
        AnnealedEpsilon(delta=1.5)


def _tiny(problem: str = "allen_cahn", **kw) -> Config:
    base = dict(problem=problem, width=16, depth=2, n_interior=128, n_chunks=8, n_initial=32,
                n_boundary=16, steps=60, check_every=10, lr=5e-3, balance_every=20)
    base.update(kw)
    return Config(**base)


def test_unsorted_batch_is_sorted_and_chunks_follow_time() -> None:
    torch.manual_seed(0)
    model = CausalPINN(_tiny()).double()
    g = torch.Generator().manual_seed(1)
    batch = model.problem.sample(128, 32, generator=g, dtype=torch.float64)
    perm = torch.randperm(128, generator=g)
    shuffled = CollocationBatch(batch.interior[perm], batch.initial, batch.initial_values)
    a, b = model.loss(batch), model.loss(shuffled)
    assert torch.allclose(a.total, b.total, rtol=1e-12)
    # chunk i holds the i-th block of the time-sorted points
    pts = batch.interior[torch.argsort(batch.interior[:, 0])]
    r2 = model.residual(pts).pow(2).sum(1)
    w = causal_weights(chunk_losses(r2, 8), model.epsilon)
    assert torch.allclose(model.last_weights, w, rtol=1e-12)


# ---------------------------------------------------------------------------- derivatives
def _nets():
    g = torch.Generator().manual_seed(0)
    return [
        PINNNetwork(2, 1, width=24, depth=3, architecture=MLP, generator=g),
        PINNNetwork(2, 2, width=24, depth=2, architecture=ModifiedMLP, periodic={1: 2.0},
                    n_harmonics=2, fourier_features=6, factorized=True, generator=g),
        PINNNetwork(3, 3, width=16, depth=2, architecture=ModifiedMLP, periodic={1: 6.0, 2: 6.0},
                    generator=g),
        PINNNetwork(1, 3, width=16, depth=2, architecture=MLP, hard_ic=torch.tensor([1.0, 2.0, 3.0]),
                    generator=g),
    ]


@pytest.mark.parametrize("engine", ["taylor", "jvp"])
@pytest.mark.parametrize("k", range(4))
def test_fast_derivatives_equal_nested_autograd_float64(engine: str, k: int) -> None:
    net = _nets()[k].double()
    dim = net.dim
    spec = [(0, 1)] + [(a, 4) for a in range(1, dim)]
    x = torch.rand(40, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    ref = ENGINES["autograd"]()(net, x, spec)
    got = ENGINES[engine]()(net, x, spec)
    assert torch.allclose(got.value, ref.value, rtol=0, atol=1e-14)
    for key, val in ref.partials.items():
        scale = val.abs().max().item() + 1.0
        assert torch.allclose(got.partials[key], val, rtol=0, atol=1e-12 * scale), key


def test_vmap_hessian_engine_and_its_limits() -> None:
    net = _nets()[1].double()
    x = torch.rand(20, 2, dtype=torch.float64)
    spec = [(0, 1), (1, 2)]
    a, b = ENGINES["vmap_hessian"]()(net, x, spec), ENGINES["autograd"]()(net, x, spec)
    for key in b.partials:
        assert torch.allclose(a.partials[key], b.partials[key], atol=1e-12)
    with pytest.raises(ValueError, match="orders <= 2"):
        ENGINES["vmap_hessian"]()(net, x, [(1, 4)])


def test_taylor_mode_gradient_wrt_parameters_matches_autograd() -> None:
    net = _nets()[1].double()
    x = torch.rand(30, 2, dtype=torch.float64)
    spec = [(0, 1), (1, 2)]
    grads = []
    for name in ("taylor", "autograd"):
        net.zero_grad()
        d = ENGINES[name]()(net, x, spec)
        (d.d(0) + d.value * d.d(1) - 0.1 * d.d(1, 2)).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_taylor_mode_rejects_unknown_modules() -> None:
    with pytest.raises(TypeError, match="no Taylor-mode rule"):
        jet_forward(torch.nn.GELU(), Jet.seed(torch.zeros(2, 2), Directions.from_spec([(0, 1)])))


# ---------------------------------------------------------------------------- residuals
def _derivs(fn, t, x, orders=4):
    """Closed-form solution's derivatives by autograd (float64) for the pure residuals."""
    t = t.clone().requires_grad_(True)
    x = x.clone().requires_grad_(True)
    u = fn(t, x)
    out = {"u": u}
    (out["t"],) = torch.autograd.grad(u.sum(), t, create_graph=True)
    d = u
    for k in range(1, orders + 1):
        (d,) = torch.autograd.grad(d.sum(), x, create_graph=True)
        out[f"x{k}"] = d
    return out


def test_residuals_vanish_on_analytic_solutions() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(200, generator=g, dtype=torch.float64)
    x = 2 * torch.rand(200, generator=g, dtype=torch.float64) - 1
    nu, c, a = 0.05, 0.3, 0.8
    d = _derivs(lambda t, x: c - a * torch.tanh(a * (x - c * t) / (2 * nu)), t, x)  # Burgers wave
    assert R.burgers(d["u"], d["t"], d["x1"], d["x2"], nu).abs().max() < 1e-12
    assert R.burgers(d["u"], d["t"], d["x1"], d["x2"], 2 * nu).abs().max() > 1e-2
    kap = 0.3
    d = _derivs(lambda t, x: torch.exp(-kap * math.pi**2 * t) * torch.sin(math.pi * x), t, x)
    assert R.heat(d["t"], d["x2"], kap).abs().max() < 1e-12
    D, k = 1e-4, 5.0  # Allen–Cahn stationary kink tanh(x sqrt(k / 2D))
    d = _derivs(lambda t, x: torch.tanh(x * math.sqrt(k / (2 * D))) + 0 * t, t, 0.01 * x)
    assert R.allen_cahn(d["u"], d["t"], d["x2"], D, k).abs().max() < 1e-8
    # KS: the dispersion relation of a small Fourier mode, u = A exp((b k^2 - g k^4) t) cos(k x),
    # satisfies the linearised equation; alpha = 0 isolates it exactly
    b_, g_, kk = 0.5, 0.005, 3.0
    d = _derivs(lambda t, x: torch.exp((b_ * kk**2 - g_ * kk**4) * t) * torch.cos(kk * x), t, x)
    assert R.kuramoto_sivashinsky(d["u"], d["t"], d["x1"], d["x2"], d["x4"], 0.0, b_, g_).abs().max() < 1e-10
    # Lorenz fixed point
    s, r, b = 10.0, 28.0, 8.0 / 3.0
    q = math.sqrt(b * (r - 1))
    fp = torch.tensor([[q, q, r - 1]], dtype=torch.float64)
    assert R.lorenz63(fp, torch.zeros_like(fp), s, r, b).abs().max() < 1e-12


def test_navier_stokes_problem_residual_vanishes_on_taylor_green() -> None:
    nu = 0.01
    prob = navier_stokes(nu=nu)

    class Exact(torch.nn.Module):
        def forward(self, p):
            return navier_stokes_exact(p[:, 0], p[:, 1], p[:, 2], nu)

    pts = torch.rand(100, 3, dtype=torch.float64) * torch.tensor([1.0, 6.28, 6.28], dtype=torch.float64)
    d = ENGINES["autograd"]()(Exact(), pts, prob.derivatives)
    assert prob.residual(d).abs().max() < 1e-12
    d_wrong = ENGINES["autograd"]()(Exact(), pts * torch.tensor([2.0, 1, 1], dtype=torch.float64), prob.derivatives)
    assert navier_stokes(nu=0.1).residual(d_wrong).abs().max() > 1e-3


# ---------------------------------------------------------------------------- model + training
@pytest.mark.parametrize("cfg", [
    _tiny("allen_cahn"),
    _tiny("burgers", periodic_embedding=False, architecture="modified_mlp", factorized=True,
          fourier_features=8, anneal=True, ic_in_weights=True),
    _tiny("kuramoto_sivashinsky", n_harmonics=2),
])
def test_short_training_decreases_loss_and_all_parameters_get_gradient(cfg: Config) -> None:
    torch.manual_seed(0)
    model = CausalPINN(cfg)
    batch = model.problem.sample(cfg.n_interior, cfg.n_initial, cfg.n_boundary,
                                 generator=torch.Generator().manual_seed(5))
    model.loss(batch).total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    model.zero_grad()
    def unweighted() -> float:  # lambdas move under balancing: compare the raw terms
        t = model.loss(batch).terms
        return float(t["ic"] + t["bc"] + t.get("causal_residual", t["residual"]))

    before = unweighted()
    hist = train(model)
    after = unweighted()
    assert after < 0.8 * before, (before, after)
    assert hist.step[0] == 0 and len(hist.weights[-1]) == cfg.n_chunks
    if not cfg.periodic_embedding:
        assert "bc" in hist.terms and hist.terms["bc"][-1] > 0


def test_plain_pinn_mode_and_protocol() -> None:
    model = CausalPINN(_tiny(causal=False))
    batch = model.problem.sample(128, 32, generator=torch.Generator().manual_seed(0))
    out = model.loss(batch)
    assert "w_min" not in out.terms and out.total.ndim == 0
    assert torch.allclose(out.total, out.terms["ic"] + out.terms["residual"])
    s = model.sample(batch, 3)
    assert s.shape == (3, 128, 1) and torch.equal(s[0], s[2])
    with pytest.raises(TypeError, match="CollocationBatch"):
        model.loss(TrajectoryBatch(torch.zeros(1, 2, 1), torch.tensor([0.0, 1.0])))
    with pytest.raises(ValueError, match="multiple of n_chunks"):
        Config(n_interior=100, n_chunks=32)
    with pytest.raises(ValueError, match="unknown problem"):
        CausalPINN(Config(problem="nope"))


def test_grad_norm_balancing_equalises_weighted_gradient_norms() -> None:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    terms = [(p ** 2).sum(), 10 * p.sum(), None]
    w = torch.ones(3)
    GradNormBalancer(w, every=1, momentum=0.0).update(terms, [p])
    n0 = w[0] * torch.autograd.grad(terms[0], p, retain_graph=True)[0].norm()
    n1 = w[1] * torch.autograd.grad(terms[1], p, retain_graph=True)[0].norm()
    assert torch.allclose(n0, n1, rtol=1e-6) and w[2] == 1.0


def test_time_marching_lorenz_windows_are_continuous() -> None:
    cfg = Config(problem="lorenz63", width=16, depth=2, n_interior=64, n_chunks=8, n_initial=0,
                 n_boundary=0, steps=20, check_every=10, time_windows=2, balance=False)
    sol = march(cfg)
    assert len(sol.models) == 2 and sol.edges == [0.0, 0.25, 0.5]
    end_first = sol.models[0].predict(torch.tensor([[0.25]]))
    start_second = sol.models[1].predict(torch.tensor([[0.0]]))
    assert torch.allclose(end_first, start_second, atol=1e-6)
    assert torch.allclose(sol.models[0].predict(torch.tensor([[0.0]])), torch.ones(1, 3))
    u = sol.predict(torch.tensor([[0.1], [0.3], [0.5]]))
    assert u.shape == (3, 3)


def test_time_marching_pde_initial_condition_is_previous_prediction() -> None:
    cfg = replace(_tiny("allen_cahn", steps=5), time_windows=2)
    sol = march(cfg)
    xs = torch.linspace(-1, 1, 7)[:, None]
    prev = sol.models[0].predict(torch.cat([torch.full((7, 1), 0.5), xs], 1))
    assert torch.allclose(sol.models[1].problem.initial_condition(xs), prev)


def test_lorenz_reference_matches_scipy() -> None:
    from scipy.integrate import solve_ivp

    from sciflow.models.causal_pinn.evaluate import lorenz_reference
    from sciflow.models.causal_pinn.problems import lorenz63

    prob = lorenz63(t_final=0.2)
    t = torch.linspace(0, 0.2, 3, dtype=torch.float64)
    ours = lorenz_reference(prob, t, rtol=1e-8, atol=1e-8)
    f = lambda _t, y: [10 * (y[1] - y[0]), y[0] * (28 - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]]
    ref = solve_ivp(f, (0, 0.2), [1.0, 1.0, 1.0], t_eval=t.numpy(), rtol=1e-12, atol=1e-12, method="DOP853")
    assert torch.allclose(ours, torch.as_tensor(ref.y.T), atol=1e-5)


def test_seed_ensemble_and_plots(tmp_path: Path) -> None:
    from sciflow.models.causal_pinn.evaluate import GridReference, relative_l2, seed_ensemble
    from sciflow.models.causal_pinn.plots import plot_causal_weights, plot_losses, plot_solution

    models = [CausalPINN(_tiny(seed=s)) for s in range(3)]
    pts = torch.rand(10, 2)
    pred = seed_ensemble([m.predict for m in models], pts)
    assert pred.samples.shape == (3, 10, 1) and pred.mean.shape == (10, 1)
    assert torch.all(pred.lower <= pred.mean) and torch.all(pred.mean <= pred.upper)
    assert relative_l2(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    hist = train(CausalPINN(_tiny(steps=3, check_every=1)))
    ref = GridReference(torch.linspace(0, 1, 4), (torch.linspace(-1, 1, 5),), torch.rand(4, 5, 1))
    for path in (plot_solution(ref.values + 0.1, ref, tmp_path / "s.png"),
                 plot_causal_weights(hist, tmp_path / "w.png"), plot_losses(hist, tmp_path / "l.png")):
        assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("pinn_*.yaml")), ids=lambda p: p.name)
def test_packaged_configs_load(path: Path) -> None:
    cfg = Config.from_yaml(str(path))
    assert cfg.problem in PROBLEMS


# ---------------------------------------------------------------------------- slow: accuracy
@pytest.mark.slow
def test_burgers_reaches_5e3_relative_l2() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from pinn_burgers import SCALES

    from sciflow.models.causal_pinn.evaluate import evaluate, reference

    model = CausalPINN(SCALES["cpu"])
    train(model)
    err = evaluate(model.predict, reference(model.problem))["rel_l2"]
    assert err <= 5e-3, err


@pytest.mark.slow
def test_allen_cahn_causal_beats_plain_with_same_budget() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from pinn_allen_cahn import SCALES

    from sciflow.models.causal_pinn.evaluate import evaluate, reference

    errs = {}
    for causal in (True, False):
        model = CausalPINN(replace(SCALES["test"], causal=causal))
        train(model)
        errs[causal] = evaluate(model.predict, reference(model.problem))["rel_l2"]
    assert errs[True] < 0.5 * errs[False], errs
