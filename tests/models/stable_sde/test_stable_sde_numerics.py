"""Stable neural SDEs: equation structure, stability, positivity, gradients, backends, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sciflow.data.batches import IrregularBatch
from sciflow.models.registry import MODELS
from sciflow.models.stable_sde import KINDS, Config, StableSDE
from sciflow.models.stable_sde.model import _LatentSDE
from sciflow.solvers.sde import BrownianIncrements
from sciflow.solvers.sde.sdeint import step_grid


def make_batch(B=6, T=15, C=2, missing=0.4, seed=0, dtype=torch.float32, irregular=True, labels=True):
    g = torch.Generator().manual_seed(seed)
    if irregular:
        t = torch.sort(torch.rand(B, T, generator=g, dtype=torch.float64), dim=1).values * 3.0
        t = t + torch.arange(T, dtype=torch.float64) * 1e-3          # strictly increasing
    else:
        t = torch.linspace(0, 3, T, dtype=torch.float64).expand(B, T).contiguous()
    v = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    m = torch.rand(B, T, C, generator=g) > missing
    m[:, 0] = True
    v = torch.where(m, v, torch.zeros(()))
    y = torch.randint(0, 2, (B,), generator=g) if labels else None
    return IrregularBatch(v.to(dtype), t.to(dtype), m, labels=y)


def model(kind, **kw):
    kw.setdefault("hidden_dim", 4)
    kw.setdefault("input_channels", 2)
    kw.setdefault("n_classes", 2)
    torch.manual_seed(kw.pop("seed", 0))
    return StableSDE(Config(kind=kind, **kw)).eval()


def scale_weights(module, factor):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 2:
                p.mul_(factor)


# ---------------------------------------------------------------- equation structure
def test_lsde_diffusion_is_independent_of_state_and_lnsde_gsde_are_linear_in_it():
    b = make_batch()
    t = torch.tensor(0.7)
    z = torch.randn(6, 4)
    for variant in ("paper", "official"):
        lsde = model("lsde", variant=variant)
        sde = _LatentSDE(lsde, lsde.control(b).path, 1)
        g1, g2 = sde.g(t, z), sde.g(t, 100 * z + 3)
        assert torch.equal(g1, g2)                                # σ(t) only
        assert g1.abs().max() > 0
        for kind in ("lnsde", "gsde"):
            m = model(kind, variant=variant)
            sde = _LatentSDE(m, m.control(b).path, 1)
            if kind == "gsde" and variant == "paper":
                # log-space: du = (γ - σ²/2) dt + σ(t) dW, additive in u
                assert torch.equal(sde.g(t, z), sde.g(t, 5 * z))
                sig = m.diffusion(t, z)
                gamma = m.drift(t, z, sde.control(t))
                torch.testing.assert_close(sde.f(t, z), gamma - 0.5 * sig ** 2)
                continue
            sig = m.diffusion(t, z)
            want = sig * z if variant == "paper" else torch.tanh(sig * z)
            torch.testing.assert_close(sde.g(t, z), want)
            assert torch.equal(sde.g(t, torch.zeros_like(z)), torch.zeros_like(z))   # σ(t)·0 = 0


def test_tabulated_control_equals_the_spline_at_the_grid_times():
    """One Euler step per gap evaluates the drift at grid times only; the control tabulated there
    once must equal evaluating the Hermite spline at each time (also for 2 stacked copies)."""
    for irregular in (False, True):                     # shared grid, per-sample grids
        b = make_batch(irregular=irregular)
        m = model("lnsde")
        ctrl = m.control(b)
        assert ctrl.grid.ndim == (2 if irregular else 1)
        direct = _LatentSDE(m, ctrl.path, 2)
        table = _LatentSDE(m, ctrl.path, 2, grid=ctrl.grid)
        z = torch.randn(12, 4)
        for t in ctrl.grid.unbind(-1):
            t = t if t.ndim == 0 else t.repeat(2).unsqueeze(1)     # per-sample: (2 * batch, 1)
            torch.testing.assert_close(table.control(t), direct.control(t), rtol=0, atol=0)
            torch.testing.assert_close(table.f(t, z), direct.f(t, z), rtol=0, atol=0)


def test_lsde_drift_is_autonomous_in_time_but_lnsde_drift_is_not():
    z = torch.randn(6, 4)
    x = torch.randn(6, 3)
    lsde, lnsde = model("lsde"), model("lnsde")
    assert torch.equal(lsde.drift(torch.tensor(0.1), z, x), lsde.drift(torch.tensor(2.3), z, x))
    assert not torch.allclose(lnsde.drift(torch.tensor(0.1), z, x), lnsde.drift(torch.tensor(2.3), z, x))


def test_official_variant_bounds_drift_and_diffusion_by_one():
    b = make_batch()
    for kind in ("lsde", "lnsde", "gsde", "neural_sde"):
        m = model(kind, variant="official")
        scale_weights(m, 30.0)
        sde = _LatentSDE(m, m.control(b).path, 1)
        z = 1e4 * torch.randn(6, 4)
        assert sde.f(torch.tensor(1.0), z).abs().max() <= 1.0
        assert sde.g(torch.tensor(1.0), z).abs().max() <= 1.0


# ---------------------------------------------------------------- stability and positivity
@pytest.mark.parametrize("kind", ["lsde", "lnsde", "gsde"])
def test_official_stable_classes_stay_bounded_under_large_lipschitz_init(kind):
    """|z(t_k) - z(t_0)| <= (t_k - t_0) + Σ_j |ΔW_j| for bounded drift/diffusion (|f|, |g| <= 1),
    however large the networks' Lipschitz constants and the inputs."""
    b = make_batch(B=5, T=30, irregular=False)
    b = IrregularBatch(b.values * 1e3, b.times * 10, b.mask, labels=b.labels)   # large inputs and gaps
    m = model(kind, variant="official")
    scale_weights(m, 20.0)
    grid = m.control(b).grid.tolist()
    bm = BrownianIncrements(grid, (5, 4), generator=torch.Generator().manual_seed(1))
    _, z = m.latent(b, brownian=bm)
    assert torch.isfinite(z).all()
    dw = bm.increments(grid).abs().cumsum(0)
    bound = torch.tensor(grid[1:]).sub(grid[0]).view(-1, 1, 1) + dw
    assert ((z[1:] - z[0]).abs() <= bound + 1e-3 * bound).all()


def _set_diffusion(m, L):
    """Deliberately large-Lipschitz diffusion: naive g(t, z) = L |z| (ReLU(z) + ReLU(-z)), the
    stable classes' σ(t) = L (so σ(t) z = L z for the LNSDE/GSDE)."""
    d = m.cfg.hidden_dim
    net = m.diffusion.net
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        m.diffusion.theta.fill_(50.0)                           # sigmoid(θ) = 1
        if m.cfg.kind == "neural_sde":
            eye = torch.eye(d)
            net[0].weight[:d, 2:] = eye
            net[0].weight[d:2 * d, 2:] = -eye
            net[2].weight[:, :d] = L * eye
            net[2].weight[:, d:2 * d] = L * eye
        else:
            net[0].bias.fill_(1.0)
            net[2].weight.fill_(L / net[2].weight.shape[1])


def test_naive_neural_sde_blows_up_where_stable_classes_do_not():
    """Same Brownian path, diffusion of Lipschitz constant L = 100 with unit steps: Euler–Maruyama on
    the naive SDE's state-dependent g = L|z| grows like Π|1 ± L ΔW| and overflows; the LSDE's additive
    σ(t) = L and the official (bounded) LNSDE/GSDE stay finite. (The paper-variant LNSDE with
    σ(t) = L, i.e. g = L z, is *not* Euler-stable at L √h ≫ 1 either: stability in the paper's sense
    is existence/uniqueness and robustness of the SDE, not of any discretisation.)"""
    b = make_batch(B=5, T=40, irregular=False)
    b = IrregularBatch(b.values, b.times * 13, b.mask, labels=b.labels)   # unit gaps
    kw = dict(hidden_hidden_dim=8)
    grid = model("lsde", **kw).control(b).grid.tolist()
    bm = BrownianIncrements(grid, (5, 4), generator=torch.Generator().manual_seed(2))
    naive = model("neural_sde", **kw)
    _set_diffusion(naive, 100.0)
    with pytest.raises(FloatingPointError, match="non-finite"):
        naive.latent(b, brownian=bm)
    # in training, the divergence is a NaN output on the autograd graph (the trainer's guard skips
    # and counts the step); nonfinite="raise" re-raises the solver's error
    out = naive(b, brownian=bm)
    assert torch.isnan(out).all()
    out.sum().backward()
    assert torch.isnan(naive.initial.weight.grad).all()
    strict = StableSDE(dataclasses.replace(naive.cfg, nonfinite="raise")).eval()
    strict.load_state_dict(naive.state_dict())
    with pytest.raises(FloatingPointError):
        strict(b, brownian=bm)
    for kind, variant in (("lsde", "paper"), ("lnsde", "official"), ("gsde", "official"), ("gsde", "paper")):
        m = model(kind, variant=variant, **kw)
        _set_diffusion(m, 100.0)
        u = m._solve(m.control(b), 1, None, bm)      # solver coordinates (log z for the paper GSDE)
        assert torch.isfinite(u).all(), (kind, variant)


def test_gsde_paper_variant_keeps_the_state_positive_where_euler_in_z_would_not():
    """σ(t) = 3 on gaps h = 1/4 (σ√h = 1.5): the log-space solve stays positive; Euler–Maruyama in
    z, z (1 + γh + σΔW), with the same increments changes sign."""
    b = make_batch(B=5, T=30, irregular=False)
    b = IrregularBatch(b.values, b.times * (29 / 12), b.mask, labels=b.labels)   # gaps 1/4
    m = model("gsde", variant="paper", hidden_hidden_dim=8)
    _set_diffusion(m, 3.0)
    grid = m.control(b).grid
    bm = BrownianIncrements(grid.tolist(), (5, 4), generator=torch.Generator().manual_seed(3))
    _, z = m.latent(b, brownian=bm)
    assert torch.isfinite(z).all() and (z > 0).all()
    sde = _LatentSDE(m, m.control(b).path, 1)
    dws = bm.increments(grid.tolist())
    zz, neg = z[0], False
    for k in range(len(grid) - 1):
        t, h = grid[k], float(grid[k + 1] - grid[k])
        u = torch.log(zz.abs().clamp_min(1e-30))
        gamma = sde.f(t, u) + 0.5 * m.diffusion(t, u) ** 2
        zz = zz * (1 + gamma * h + m.diffusion(t, u) * dws[k])
        neg |= bool((zz < 0).any())
    assert neg


def test_gsde_log_space_matches_the_exact_geometric_solution():
    """With γ and σ frozen to constants, z(T) = z0 exp((γ - σ²/2) T + σ W_T) exactly (Itô)."""
    b = make_batch(B=3, T=12, irregular=False)
    m = model("gsde", variant="paper")
    with torch.no_grad():
        for p in m.drift.parameters():
            p.zero_()
        m.drift.body[-1].net[-1].bias.fill_(0.3)               # γ ≡ 0.3 (body = ReLU -> MLP)
        for p in m.diffusion.net.parameters():
            p.zero_()
        m.diffusion.net[-1].bias.fill_(0.8)
    gamma = 0.3
    sig = torch.sigmoid(m.diffusion.theta).item() * 0.8
    grid = m.control(b).grid.tolist()
    bm = BrownianIncrements(grid, (3, 4), generator=torch.Generator().manual_seed(4))
    _, z = m.latent(b, brownian=bm)
    W = bm.increments(grid).cumsum(0)
    T = torch.tensor(grid[1:]).sub(grid[0]).view(-1, 1, 1)
    exact = z[0] * torch.exp((gamma - sig ** 2 / 2) * T + sig * W)
    torch.testing.assert_close(z[1:], exact, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- masks and padding
@pytest.mark.parametrize("kind", KINDS)
def test_masked_entries_are_ignored_and_never_produce_nan(kind):
    b = make_batch()
    garbage = torch.where(b.mask, b.values, torch.full_like(b.values, 1e30))
    b2 = IrregularBatch(garbage, b.times, b.mask, labels=b.labels)
    m = model(kind)
    out1 = m(b, generator=torch.Generator().manual_seed(0))
    out2 = m(b2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out1).all()
    torch.testing.assert_close(out1, out2)


def test_fully_missing_channel_and_padding_give_the_solo_result():
    """A series padded to the batch length (times repeat the last time, mask False) is read out at
    its own last observation time: its logits equal those of solving it alone."""
    full = make_batch(B=2, T=12, irregular=False)
    T0 = 8
    v = full.values.clone()
    m = full.mask.clone()
    t = full.times.clone()
    t[1, T0:] = t[1, T0 - 1]
    m[1, T0:] = False
    v[1, T0:] = 0
    m[1, :, 1] = False                      # channel 1 of sample 1 never observed
    v[1, :, 1] = 0
    batch = IrregularBatch(v, t, m, labels=full.labels)
    alone = IrregularBatch(v[1:, :T0], t[1:, :T0], m[1:, :T0], labels=full.labels[1:])
    for kind in ("neural_ode", "neural_cde", "ode_rnn", "lnsde"):
        mdl = model(kind)
        if kind == "lnsde":
            with torch.no_grad():
                mdl.diffusion.theta.fill_(-50.0)   # noise off: compare the drift paths only
        out_b = mdl(batch)[0, 1]
        out_a = mdl(alone)[0, 0]
        assert torch.isfinite(out_b).all()
        torch.testing.assert_close(out_b, out_a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lnsde", "gsde", "neural_cde", "ode_rnn"])
def test_per_sample_grid_solves_each_series_on_its_own_times(kind):
    """Irregular batch (different times per series): with ``time_grid="per_sample"`` each series'
    result equals solving it alone (its own observation times are its grid), while the union grid
    of the batch takes up to ``batch · T`` steps."""
    b = make_batch(B=3, T=9, irregular=True, dtype=torch.float64)
    mdl = model(kind, time_grid="per_sample").double()
    if kind in ("lnsde", "gsde"):
        with torch.no_grad():
            mdl.diffusion.theta.fill_(-80.0)                     # noise off: deterministic comparison
    assert mdl.control(b).grid.shape == (3, 9)
    assert model(kind, time_grid="union").control(b).grid.shape == (27,)
    out = mdl(b)[0]
    for i in range(3):
        alone = b.index([i])
        torch.testing.assert_close(out[i], mdl(alone)[0, 0], rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", ["lnsde", "gsde", "neural_cde"])
def test_gradients_match_finite_differences(kind):
    b = make_batch(B=3, T=6, dtype=torch.float64)
    m = model(kind, hidden_dim=3, hidden_hidden_dim=4, num_layers=1, time_grid="union").double()
    grid = m.control(b).grid.tolist()
    bm = BrownianIncrements(grid, (3, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    params = dict(m.named_parameters())
    names = ["initial.weight", "readout.4.weight"]
    names.append("drift.ctrl.weight" if kind != "neural_cde" else "cde.net.net.0.weight")
    if kind != "neural_cde":
        names.append("diffusion.theta")

    def fn(*ps):
        over = dict(zip(names, ps))
        out = torch.func.functional_call(m, {**params, **over}, (b,), {"brownian": bm})
        return torch.nn.functional.cross_entropy(out[0], b.labels)

    assert torch.autograd.gradcheck(fn, tuple(params[n].detach().clone().requires_grad_() for n in names),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_every_parameter_receives_a_finite_gradient(kind, variant):
    b = make_batch()
    m = model(kind, variant=variant, diffusion_init=2.0).train()
    out = m.loss(b)
    assert torch.isfinite(out.total) and 0 <= float(out.terms["accuracy"]) <= 1
    out.total.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in m.parameters()) > 0


@pytest.mark.parametrize("irregular", [True, False])
@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_ode_rnn_direct_steps_equal_one_odeint_call_per_gap(irregular, solver):
    from sciflow.solvers.ode import odeint
    from sciflow.solvers.registry import SOLVERS

    b = make_batch(B=4, irregular=irregular, dtype=torch.float64)
    m = model("ode_rnn", ode_solver=solver).double()
    ctrl = m.control(b)
    z0 = m.initial(ctrl.x0)
    got = m._ode_rnn(ctrl, z0, ctrl.grid, SOLVERS[solver](), 1)
    h, ref = z0, []
    for k in range(ctrl.grid.shape[-1]):
        if k > 0:
            h = odeint(lambda t, z: m.odernn.flow(z), h, ctrl.grid[..., k - 1:k + 1], solver=SOLVERS[solver]())[-1]
        h = m.odernn.jump(h, ctrl.obs_values[:, k], ctrl.obs_mask[:, k].double())
        ref.append(h)
    torch.testing.assert_close(got, torch.stack(ref), rtol=1e-12, atol=1e-12)


def test_calibrated_batchnorm_readout_is_the_training_set_statistics_and_batch_independent():
    b = make_batch(B=6)
    m = model("lnsde", diffusion_init=-80.0)                    # noise off: deterministic latent
    m.calibrate(b)
    assert m.training is False                                  # mode restored
    bn = m.readout[1]
    with torch.no_grad():
        grid, z = m.latent(b)
        zT = z[m.control(b).last_index, torch.arange(6)]
        h = m.readout[0](zT)
    torch.testing.assert_close(bn.running_mean, h.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, h.var(0), rtol=1e-4, atol=1e-6)   # unbiased, as BatchNorm
    # in eval mode a series' prediction does not depend on the rest of its batch
    torch.testing.assert_close(m.predict(b)[:2], m.predict(b.index(slice(0, 2))), rtol=1e-5, atol=1e-6)
    # calibrating on two halves averages their statistics
    m.calibrate([b.index(slice(0, 3)), b.index(slice(3, 6))])
    halves = torch.stack([h[:3].mean(0), h[3:].mean(0)]).mean(0)
    torch.testing.assert_close(bn.running_mean, halves, rtol=1e-5, atol=1e-6)
    # a training batch of one series uses the running statistics instead of failing
    m.train()
    assert torch.isfinite(m.loss(b.index(slice(0, 1))).total)
    # without the normalisation calibrate is a no-op
    plain = model("lnsde", readout_norm="none")
    assert not any(isinstance(x, torch.nn.BatchNorm1d) for x in plain.modules())
    plain.calibrate(b)
    with pytest.raises(ValueError, match="readout_norm"):
        Config(n_classes=2, readout_norm="layer")


# ---------------------------------------------------------------- backends and methods
@pytest.mark.parametrize("kind", ["lsde", "lnsde", "gsde", "neural_sde"])
def test_sciflow_and_torchsde_backends_give_the_same_paths_for_the_same_brownian_motion(kind):
    b = make_batch(B=4, T=10, irregular=False, dtype=torch.float64)
    paths = []
    for backend in ("sciflow", "torchsde"):
        m = model(kind, solver_backend=backend, diffusion_init=2.0).double()
        grid = m.control(b).grid.tolist()
        bm = BrownianIncrements(grid, (4, 4), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        paths.append(m.latent(b, brownian=bm)[1])
    assert paths[0].std() > 0
    torch.testing.assert_close(paths[0], paths[1], rtol=1e-9, atol=1e-9)


def test_torchsde_backend_same_distribution_with_independent_noise():
    b = make_batch(B=1, T=8, irregular=False, dtype=torch.float64)
    finals = []
    for backend, seed in (("sciflow", 0), ("torchsde", 1)):
        m = model("lnsde", solver_backend=backend, diffusion_init=2.0).double()
        _, z = m.latent(b, 4000, generator=torch.Generator().manual_seed(seed))
        finals.append(z[-1])
    mean0, mean1 = finals[0].mean(0), finals[1].mean(0)
    se = (finals[0].var(0) / 4000 + finals[1].var(0) / 4000).sqrt()
    assert ((mean0 - mean1).abs() < 5 * se + 1e-12).all()
    torch.testing.assert_close(finals[0].std(0), finals[1].std(0), rtol=0.1, atol=1e-9)


def test_higher_order_methods_agree_with_euler_maruyama_as_steps_shrink():
    """Same Brownian path: EM, Milstein and SRI converge to the same strong solution of the LSDE."""
    b = make_batch(B=3, T=5, irregular=False, dtype=torch.float64)
    out = {}
    for method in ("euler", "milstein", "sri"):
        m = model("lsde", method=method, n_steps=150, diffusion_init=1.0).double()
        ctrl = m.control(b)
        sde_grid, _ = step_grid(ctrl.grid.tolist(), ctrl.dt)
        bm = BrownianIncrements(sde_grid, (3, 4), generator=torch.Generator().manual_seed(7), dtype=torch.float64,
                                levy_area=True)
        out[method] = m.latent(b, brownian=bm)[1]
    for method in ("milstein", "sri"):
        torch.testing.assert_close(out[method], out["euler"], rtol=0, atol=2e-2)
    assert (out["sri"] - out["euler"]).abs().max() > 0


def test_interpolation_and_intensity_options_change_the_control_path():
    b = make_batch()
    h = model("lnsde").control(b)
    n = model("lnsde", interpolation="natural").control(b)
    i = model("lnsde", intensity=True).control(b)
    assert h.path_channels == 3 and i.path_channels == 5
    t = torch.tensor(1.3)
    assert not torch.allclose(h.path.evaluate(t), n.path.evaluate(t))
    counts = i.path.evaluate(b.times[:, -1:])                    # (B, 1, 5): cumulative counts at the end
    want = b.mask.sum(1).to(counts.dtype) / b.values.shape[1]
    torch.testing.assert_close(counts[:, 0, 3:], want)


# ---------------------------------------------------------------- config and input errors
def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="kind"):
        Config(kind="lsdee")
    with pytest.raises(ValueError, match="n_classes"):
        Config(kind="lsde", task="classification", n_classes=None)
    with pytest.raises(ValueError, match="n_classes"):
        Config(kind="lsde", task="forecasting", n_classes=3)
    with pytest.raises(ValueError, match="torchsde"):
        Config(kind="neural_cde", n_classes=2, solver_backend="torchsde")
    with pytest.raises(ValueError, match="method"):
        Config(n_classes=2, method="rk45")
    with pytest.raises(ValueError, match="n_steps"):
        Config(n_classes=2, n_steps=0)
    with pytest.raises(ValueError, match="nonfinite"):
        Config(n_classes=2, nonfinite="ignore")
    with pytest.raises(ValueError, match="time_grid"):
        Config(n_classes=2, time_grid="shared")


def test_bad_inputs_raise_clear_errors():
    m = model("lnsde")
    b = make_batch()
    with pytest.raises(TypeError, match="IrregularBatch"):
        m.loss(object())
    with pytest.raises(ValueError, match="input_channels=3"):
        model("lnsde", input_channels=3).loss(b)
    with pytest.raises(ValueError, match="labels"):
        m.loss(make_batch(labels=False))
    bad = b.values.clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite at an observed entry"):
        m.loss(IrregularBatch(bad, b.times, b.mask, labels=b.labels))
    fc = model("lnsde", task="forecasting", n_classes=None)
    with pytest.raises(ValueError, match="targets"):
        fc.loss(b)
    with pytest.raises(ValueError, match="n_samples"):
        m.sample(b, 0)


def test_registered_and_buildable_from_config():
    assert MODELS["stable_sde"] is StableSDE
    m = MODELS["stable_sde"](StableSDE.config_class(kind="gsde", input_channels=2, n_classes=3))
    assert m(make_batch()).shape == (1, 6, 3)


def test_sample_is_random_for_sdes_and_copies_for_deterministic_kinds():
    b = make_batch()
    sde, cde = model("lnsde", diffusion_init=2.0), model("neural_cde")
    assert sde.stochastic and not cde.stochastic
    s = sde.sample(b, 3, generator=torch.Generator().manual_seed(0))
    c = cde.sample(b, 3)
    assert s.shape == c.shape == (3, 6, 2)
    assert (s[0] - s[1]).abs().max() > 1e-4
    assert torch.equal(c[0], c[2])
    # predict averages the class probabilities of n paths (log of the mean softmax)
    p = sde.predict(b, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.exp(), s.softmax(-1).mean(0))


def test_forecast_loss_ignores_masked_targets():
    b = make_batch(labels=False)
    tt = b.times[:, -1:] + torch.tensor([0.5, 1.0])
    y = torch.randn(6, 2, 2)
    tm = torch.rand(6, 2, 2, generator=torch.Generator().manual_seed(1)) > 0.5
    m = model("lnsde", task="forecasting", n_classes=None, diffusion_init=-80.0)   # noise off
    mk = lambda targets: IrregularBatch(b.values, b.times, b.mask, targets=targets, target_times=tt,  # noqa: E731
                                        target_mask=tm)
    garbage = torch.where(tm, y, torch.full_like(y, 1e6))
    l1, l2 = m.loss(mk(y)), m.loss(mk(garbage))
    torch.testing.assert_close(l1.total, l2.total)
    assert torch.isfinite(l1.total)
    samples = m.sample(mk(y), 5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 6, 2, 2) and torch.isfinite(samples).all()
