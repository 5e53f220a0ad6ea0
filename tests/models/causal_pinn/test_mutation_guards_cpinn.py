"""Mutation-audit guards for :mod:`sciflow.models.causal_pinn`: properties the other causal-PINN
tests left unchecked (session 11 audit; the mutants each test kills are named in its docstring).

Every check is numerical: an exact solution of the PDE, the reference data at ``t = 0``, a loss
formula evaluated by hand on a tiny case, or an exact symmetry of the network.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from sciflow.data.reference import load_reference
from sciflow.models.causal_pinn import ENGINES, CausalPINN, Config, PINNNetwork
from sciflow.models.causal_pinn.balancing import GradNormBalancer
from sciflow.models.causal_pinn.evaluate import GridReference, evaluate, seed_ensemble
from sciflow.models.causal_pinn.network import make_network
from sciflow.models.causal_pinn.problems import (allen_cahn, burgers, fourier_mode_ic, lorenz63,
                                                 navier_stokes)
from sciflow.models.causal_pinn.marching import MarchedSolution

F64 = torch.float64


class _Field(nn.Module):
    """A closed-form ``u(points)`` as a module (for the derivative engines and the model's loss)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.fn(p)


def _tiny(**kw) -> Config:
    base = dict(width=16, depth=2, n_interior=64, n_chunks=8, n_initial=16, n_boundary=16,
                steps=1, balance=False, derivative_engine="autograd")
    base.update(kw)
    return Config(**base)


# ---------------------------------------------------------------------------- problems
def test_navier_stokes_residual_vanishes_on_a_single_mode_with_unequal_wavenumbers() -> None:
    """One Fourier mode ``w = A cos(a x + b y + phi) exp(-nu (a^2 + b^2) t)`` with its own velocity
    is an exact NS solution (``u . grad w = 0``). With ``a != b``, ``w_xx != w_yy`` — Taylor–Green
    (``a = b``) cannot tell ``nu (w_xx + w_yy)`` from ``2 nu w_xx``. Kills: ``dyy -> dxx`` in the
    vorticity residual."""
    nu, (A, a, b, phi) = 0.05, (1.3, 1, 2, 0.4)
    ic = fourier_mode_ic(((A, a, b, phi),))
    prob = navier_stokes(nu=nu, modes=((A, a, b, phi),))
    exact = _Field(lambda p: ic(p[:, 1:]) * torch.exp(-nu * (a * a + b * b) * p[:, :1]))
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(200, 3, generator=g, dtype=F64) * torch.tensor([1.0, 2 * math.pi, 2 * math.pi], dtype=F64)
    d = ENGINES["autograd"]()(exact, pts, prob.derivatives)
    assert prob.residual(d).abs().max() < 1e-12
    # the check has teeth: a wrong viscosity leaves a residual of size |dnu| (a^2 + b^2) |w|
    assert navier_stokes(nu=2 * nu, modes=((A, a, b, phi),)).residual(d).abs().max() > 0.1


def test_burgers_problem_residual_vanishes_on_a_travelling_wave_at_the_papers_viscosity() -> None:
    """``u = c - a tanh(a (x - c t) / (2 nu))`` solves Burgers with ``nu = 0.01 / pi`` (Raissi et
    al. 2019, the constant of ``burgers_shock.mat``). Kills: a wrong default ``nu``."""
    nu, c, a = 0.01 / math.pi, 0.3, 0.05
    prob = burgers()
    wave = _Field(lambda p: c - a * torch.tanh(a * (p[:, 1:] - c * p[:, :1]) / (2 * nu)))
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(200, 2, generator=g, dtype=F64) * 2 - 1   # (t, x) in [-1, 1]^2: the wave solves it everywhere
    r = prob.residual(ENGINES["autograd"]()(wave, pts, prob.derivatives))
    assert r.abs().max() < 1e-12


def test_allen_cahn_problem_residual_vanishes_on_the_stationary_kink() -> None:
    """``tanh(x sqrt(k / 2D))`` is a steady solution of ``u_t = D u_xx + k (u - u^3)`` with the
    paper's ``D = 1e-4``, ``k = 5``: checks the problem's constants and argument wiring."""
    D, k = 1e-4, 5.0
    prob = allen_cahn()
    kink = _Field(lambda p: torch.tanh(p[:, 1:] * math.sqrt(k / (2 * D))) + 0 * p[:, :1])
    pts = torch.stack([torch.rand(100, dtype=F64), 0.02 * torch.rand(100, dtype=F64) - 0.01], 1)
    d = ENGINES["autograd"]()(kink, pts, prob.derivatives)
    assert prob.residual(d).abs().max() < 1e-8
    assert allen_cahn(reaction=4.0).residual(d).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["burgers_shock", "allen_cahn"])
def test_initial_condition_equals_the_reference_data_at_t0(name: str) -> None:
    """The problem's ``u(x, 0)`` against the first column of the published reference solution
    (``../shared/reference``, Raissi et al.). Kills: ``x^2 cos(pi x) -> x cos(pi x)``."""
    ref = load_reference(name)
    assert float(ref.t[0]) == 0.0
    prob = burgers() if name == "burgers_shock" else allen_cahn()
    u0 = prob.initial_condition(torch.as_tensor(ref.x, dtype=F64).reshape(-1, 1))[:, 0]
    torch.testing.assert_close(u0, torch.as_tensor(ref.u[:, 0], dtype=F64), rtol=0, atol=1e-7)


def test_sampled_points_lie_in_the_window_and_cover_both_dirichlet_faces() -> None:
    """Collocation points of a time-marching window ``[0.5, 1]``: interior and boundary times
    uniform on the window (mean 0.75, standard error 0.003), initial points at ``t0``, boundary
    points on both faces ``x = -1`` and ``x = 1`` in about equal numbers. Kills: ``t0`` dropped
    from the interior or boundary times, one face sampled twice."""
    prob = burgers(periodic=False).window(0.5, 1.0)
    b = prob.sample(4000, 64, 2000, generator=torch.Generator().manual_seed(3), dtype=F64)
    for t in (b.interior[:, 0], b.boundary[:, 0]):
        assert 0.5 <= float(t.min()) and float(t.max()) <= 1.0
        assert abs(float(t.mean()) - 0.75) < 0.02
    assert torch.all(b.initial[:, 0] == 0.5)
    xb = b.boundary[:, 1]
    lo, hi = (xb == -1.0), (xb == 1.0)
    assert bool((lo | hi).all())
    assert 0.4 < float(lo.to(F64).mean()) < 0.6
    assert torch.all(b.boundary_values == 0)


# ---------------------------------------------------------------------------- loss
def test_total_loss_weights_each_term_by_its_own_lambda() -> None:
    """``L = lambda_ic L_ic + lambda_bc L_bc + lambda_res mean(r^2)`` (plain PINN, Dirichlet
    Burgers), rebuilt by hand from the network. Kills: ``lambda_ic`` and ``lambda_bc`` swapped."""
    cfg = _tiny(problem="burgers", periodic_embedding=False, causal=False,
                lambda_ic=3.0, lambda_bc=7.0, lambda_res=2.0)
    model = CausalPINN(cfg).double()
    b = model.problem.sample(64, 16, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = model.loss(b)
    l_ic = (model(b.initial) - b.initial_values).pow(2).mean()
    l_bc = (model(b.boundary) - b.boundary_values).pow(2).mean()
    l_r = model.residual(b.interior).pow(2).sum(1).mean()
    assert l_ic.item() > 0 and l_bc.item() > 0
    torch.testing.assert_close(out.total, 3 * l_ic + 7 * l_bc + 2 * l_r, rtol=1e-10, atol=0)


def test_residual_loss_sums_the_squared_residuals_of_all_equations() -> None:
    """For a system (NS: vorticity, its definition, continuity) the residual loss is
    ``mean_points sum_equations r^2`` (the paper adds the equations' losses). Kills: a mean over
    the equations (a factor 1/3 on the residual term)."""
    cfg = _tiny(problem="navier_stokes", causal=False, lambda_ic=0.0)
    model = CausalPINN(cfg).double()
    b = model.problem.sample(64, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = model.residual(b.interior)
    assert r.shape[1] == 3
    torch.testing.assert_close(model.loss(b).total, r.pow(2).sum(1).mean(), rtol=1e-10, atol=0)


def test_initial_loss_enters_the_causal_weights_scaled_by_lambda_ic() -> None:
    """``w_i = exp(-eps (lambda_ic L_ic + sum_{k<i} L_r(t_k)))`` (official code, Algorithm 1's
    ``L(t_0) = lambda_ic L_ic``), evaluated by hand with ``lambda_ic = 10``. Kills: the IC loss in
    the weights without its ``lambda_ic``."""
    cfg = _tiny(problem="allen_cahn", ic_in_weights=True, lambda_ic=10.0, epsilon=0.7)
    model = CausalPINN(cfg).double()
    b = model.problem.sample(64, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    model.loss(b)
    l_ic = (model(b.initial) - b.initial_values).pow(2).mean().detach()
    pts = b.interior[torch.argsort(b.interior[:, 0])]
    chunks = model.residual(pts).pow(2).sum(1).reshape(8, 8).mean(1).detach()  # (engine needs autograd)
    prior = torch.cat([chunks.new_zeros(1), chunks.cumsum(0)[:-1]])
    expected = torch.exp(-0.7 * (10.0 * l_ic + prior))
    assert float(10 * l_ic) > 0.01                      # the IC term is not negligible
    torch.testing.assert_close(model.last_weights, expected, rtol=1e-10, atol=0)


def test_periodic_bc_loss_is_zero_for_a_periodic_field_and_exact_for_a_linear_one() -> None:
    """Soft periodicity on ``[-1, 1]``: ``mean (u(lo) - u(hi))^2 + mean (u_x(lo) - u_x(hi))^2``.
    ``sin(pi x) + t`` is 2-periodic with equal slopes ``-pi`` at both faces: 0. ``x + t``: value jump
    2, equal slopes: exactly 4. Kills: ``u_x(lo) + u_x(hi)`` in the derivative term."""
    model = CausalPINN(_tiny(problem="allen_cahn", periodic_embedding=False, periodic_bc_loss=True)).double()
    pts = torch.rand(64, 2, dtype=F64) * torch.tensor([1.0, 2.0], dtype=F64) - torch.tensor([0.0, 1.0], dtype=F64)
    model.net = _Field(lambda p: torch.sin(math.pi * p[:, 1:]) + p[:, :1])
    assert model.periodic_bc_loss(pts).item() < 1e-24
    model.net = _Field(lambda p: p[:, 1:] + p[:, :1])
    assert model.periodic_bc_loss(pts).item() == pytest.approx(4.0, rel=1e-12)


def test_grad_norm_weights_are_the_active_norm_sum_over_each_norm() -> None:
    """``lambda_i <- m lambda_i + (1 - m) (sum_j ||g_j||) / ||g_i||`` with the sum over the terms
    present only (an absent term keeps its weight and adds nothing), evaluated by hand. Kills:
    the absent term's placeholder norm counted in the sum."""
    p = nn.Parameter(torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=F64))
    terms = [(p ** 2).sum(), 10 * p.sum(), None]
    n0, n1 = float(2 * p.detach().norm()), 10 * 2.0
    w = torch.tensor([1.0, 2.0, 5.0], dtype=F64)
    GradNormBalancer(w, every=1, momentum=0.25).update(terms, [p])
    total = n0 + n1
    expected = torch.tensor([0.25 * 1 + 0.75 * total / n0, 0.25 * 2 + 0.75 * total / n1, 5.0], dtype=F64)
    torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------- network
def test_time_scale_acts_on_the_time_coordinate_only() -> None:
    """``PINNNetwork(time_scale=s)(t, x) = PINNNetwork(time_scale=1)(s t, x)`` with the same
    weights, in 2D (in 1D, Lorenz, the time is also the last coordinate). Kills: the scale put on
    the last coordinate."""
    s = 4.0
    net = PINNNetwork(2, 1, width=8, depth=2, time_scale=s, generator=torch.Generator().manual_seed(0)).double()
    ref = PINNNetwork(2, 1, width=8, depth=2, generator=torch.Generator().manual_seed(0)).double()
    ref.load_state_dict(net.state_dict())
    pts = torch.rand(20, 2, dtype=F64)
    scaled = pts * torch.tensor([s, 1.0], dtype=F64)
    torch.testing.assert_close(net(pts), ref(scaled), rtol=1e-12, atol=1e-14)
    spec = ((0, 1), (1, 1))
    d_ref = ENGINES["autograd"]()(ref, scaled, spec)
    for engine in ("taylor", "autograd"):   # u_t picks up the chain-rule factor s, u_x does not
        d = ENGINES[engine]()(net, pts, spec)
        torch.testing.assert_close(d.d(0), s * d_ref.d(0), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(d.d(1), d_ref.d(1), rtol=1e-10, atol=1e-12)


def test_periodic_embedding_period_is_the_domain_length() -> None:
    """On ``x in [-1, 1]`` the embedded network is 2-periodic in ``x`` and *not* 1-periodic (the
    Allen–Cahn IC ``x^2 cos(pi x)`` is not). Kills: the period taken as ``hi`` instead of
    ``hi - lo``."""
    cfg = _tiny(problem="allen_cahn")
    net = make_network(cfg, allen_cahn(), generator=torch.Generator().manual_seed(0)).double()
    pts = torch.rand(50, 2, dtype=F64) * torch.tensor([1.0, 2.0], dtype=F64) - torch.tensor([0.0, 1.0], dtype=F64)
    shift = lambda L: pts + torch.tensor([0.0, L], dtype=F64)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(net(shift(2.0)), net(pts), rtol=1e-10, atol=1e-12)
        assert (net(shift(1.0)) - net(pts)).abs().max().item() > 1e-3


def test_normalized_time_maps_every_window_to_unit_length() -> None:
    """``normalize_time``: the network sees ``t / (t1 - t0)``, so the window ``[0.25, 0.5]`` of a
    time-marched Lorenz run spans exactly 1 in network time. Kills: ``1 / t1`` instead of
    ``1 / (t1 - t0)`` (equal only for the first window)."""
    cfg = Config(problem="lorenz63", normalize_time=True, width=8, depth=2, n_interior=64, n_chunks=8)
    for t0, t1 in ((0.0, 0.25), (0.25, 0.5), (1.5, 1.75)):
        net = make_network(cfg, lorenz63().window(t0, t1))
        assert net.time_scale * (t1 - t0) == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------------------- evaluation
def test_seed_ensemble_bounds_are_the_2p5_and_97p5_percentiles() -> None:
    """41 members predicting the constants 0..40: the 95 % band is ``[1, 39]`` (linear
    interpolation at 0.025 * 40 = 1 and 0.975 * 40 = 39), the mean 20. Kills: a 90 % band."""
    preds = [(lambda p, k=k: torch.full((p.shape[0], 1), float(k))) for k in range(41)]
    out = seed_ensemble(preds, torch.zeros(3, 2))
    torch.testing.assert_close(out.lower, torch.full((3, 1), 1.0))
    torch.testing.assert_close(out.upper, torch.full((3, 1), 39.0))
    torch.testing.assert_close(out.mean, torch.full((3, 1), 20.0))


def test_per_channel_relative_l2_compares_each_channel_with_itself() -> None:
    """``evaluate`` on a 2-channel reference with channel 0 exact and channel 1 off by 10 %:
    ``rel_l2_0 = 0``, ``rel_l2_1 = 0.1``, overall ``0.1 ||ref_1|| / ||ref||`` (by hand). Kills:
    every channel's prediction taken from channel 0."""
    t, x = torch.linspace(0, 1, 5, dtype=F64), torch.linspace(-1, 1, 7, dtype=F64)
    T, X = torch.meshgrid(t, x, indexing="ij")
    values = torch.stack([torch.sin(math.pi * X) + T, torch.cos(X) * (1 + T)], -1)
    ref = GridReference(t, (x,), values)
    out = evaluate(lambda p: torch.stack([torch.sin(math.pi * p[:, 1]) + p[:, 0],
                                          1.1 * torch.cos(p[:, 1]) * (1 + p[:, 0])], 1), ref, dtype=F64)
    assert out["rel_l2_0"] < 1e-14
    assert out["rel_l2_1"] == pytest.approx(0.1, rel=1e-12)
    assert out["rel_l2"] == pytest.approx(0.1 * float(values[..., 1].norm() / values.norm()), rel=1e-12)


# ---------------------------------------------------------------------------- training
def test_marched_prediction_evaluates_each_window_on_its_local_time() -> None:
    """``MarchedSolution.predict``: a global time ``t`` in window ``[e_k, e_{k+1}]`` is the
    window's network at local time ``t - e_k`` (each window is trained on ``[0, dt]``), checked
    against the window models called directly. Kills: the local time taken from the window's end."""
    cfg = Config(problem="lorenz63", width=8, depth=2, n_interior=64, n_chunks=8, n_initial=0,
                 n_boundary=0, balance=False)
    sub = lorenz63().window(0.0, 0.25)
    models = [CausalPINN(replace(cfg, seed=s), sub) for s in (0, 1)]
    sol = MarchedSolution(models, [0.0, 0.25, 0.5], [])
    pts = torch.tensor([[0.05], [0.2], [0.3], [0.45]])
    out = sol.predict(pts)
    torch.testing.assert_close(out[:2], models[0].predict(pts[:2]))
    torch.testing.assert_close(out[2:], models[1].predict(pts[2:] - 0.25))


def test_learning_rate_decays_smoothly_as_decay_rate_to_step_over_decay_steps(monkeypatch) -> None:
    """``lr_s = lr * decay_rate ** (s / decay_steps)`` (Config docstring; continuous exponential
    decay), read from the optimiser after 5 steps with ``decay_steps = 2``: ``lr 0.5^2.5``.
    Kills: a staircase decay ``0.5^(5 // 2)``."""
    import importlib

    train_mod = importlib.import_module("sciflow.models.causal_pinn.train")  # the package re-exports train()

    opts = []
    make = train_mod.make_adam
    monkeypatch.setattr(train_mod, "make_adam", lambda m, lr: opts.append(make(m, lr)) or opts[-1])
    cfg = _tiny(problem="allen_cahn", steps=5, lr=1e-3, decay_rate=0.5, decay_steps=2, check_every=5)
    train_mod.train(CausalPINN(cfg))
    assert opts[0].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 ** 2.5, rel=1e-12)
