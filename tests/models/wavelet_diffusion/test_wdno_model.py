"""WDNO model: replacement conditioning, training signal, NFE budget, guidance, input errors."""

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.registry import MODELS
from sciflow.models.wavelet_diffusion import WDNO, Config, ControlObjective
from sciflow.models.wavelet_diffusion._common import on_denoised, replacement_sample
from sciflow.solvers.generative import DDIM
from tests.models.wavelet_diffusion._fit import fit

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, num_heads=2)


def _smooth_batch(B=4, T=9, X=17, seed=0):
    """Smooth travelling bumps with a forcing: a tiny learnable data set."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T)
    x = torch.linspace(0, 1, X)
    c = 0.3 + 0.4 * torch.rand(B, 1, 1, generator=g)
    a = 0.5 + torch.rand(B, 1, 1, generator=g)
    u = a * torch.exp(-((x - c - 0.2 * t[:, None]) ** 2) / 0.02) * torch.sin(torch.pi * x)
    f = 0.3 * a * torch.cos(torch.pi * t[:, None]) * torch.sin(torch.pi * x)
    return TrajectoryBatch(u, t, f)


@pytest.mark.parametrize("replacement", ["clean", "noised"])
@pytest.mark.parametrize("space", ["wavelet", "physical"])
def test_replacement_keeps_known_channels_exactly(replacement, space):
    torch.manual_seed(0)
    m = WDNO(Config(space=space, replacement=replacement, n_initial=2, **SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    u, f = b.values.unsqueeze(1), b.condition.unsqueeze(1)
    shape = tuple(u.shape[2:])
    known = m.known_mask(shape)
    u_known = torch.zeros_like(u)
    u_known[:, :, :2] = u[:, :, :2]
    z_known = m.encode(u_known, f)
    g = torch.Generator().manual_seed(1)
    z = replacement_sample(m.denoiser, m.schedule, known, z_known, replacement=replacement, sampler="ddim", nfe=4,
                           t_min=m.cfg.t_min, generator=g)
    assert torch.equal(torch.where(known, z, 0.0), torch.where(known, z_known, 0.0))
    assert (z[~known.expand_as(z)] != z_known[~known.expand_as(z)]).float().mean() > 0.99
    # decoding the generated coefficients gives back the given forcing (exact inverse of the known bands)
    _, f_dec = m.decode(z, shape)
    assert torch.allclose(f_dec, f, atol=1e-5)
    out = m.generate(b, 2, nfe=3, generator=g)
    assert out.state.shape == (2, *b.values.shape)
    assert torch.equal(out.state[:, :, :2], b.values[None, :, :2].expand(2, -1, -1, -1))
    assert torch.equal(out.forcing, b.condition.expand(2, -1, -1, -1))


def test_control_task_generates_forcing_and_keeps_endpoints():
    m = WDNO(Config(task="control", **SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    g = torch.Generator().manual_seed(0)
    no_forcing = TrajectoryBatch(b.values, b.times)  # the forcing is what control generates
    f = m.sample(no_forcing, 3, nfe=3, generator=g)
    assert f.shape == (3, *b.values.shape) and torch.isfinite(f).all()
    out = m.generate(no_forcing, 1, nfe=3, generator=g)
    assert torch.equal(out.state[0, :, 0], b.values[:, 0]) and torch.equal(out.state[0, :, -1], b.values[:, -1])


@pytest.mark.parametrize("space", ["wavelet", "physical"])
def test_tiny_wdno_overfits_tiny_dataset(space):
    torch.manual_seed(0)
    m = WDNO(Config(space=space, prediction="eps", **SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    g = torch.Generator().manual_seed(0)

    def held_out_loss():
        gg = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(float(m.loss(b, generator=gg).total) for _ in range(8)) / 8

    first = held_out_loss()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for step in range(80):
        loss = m.loss(b, generator=g).total
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
            assert not missing, f"parameters without gradient: {missing}"
        opt.step()
    last = held_out_loss()
    assert first > 0.8  # an untrained denoiser predicts ε no better than zero
    assert last < first / 2.0, (first, last)


@pytest.mark.parametrize("sampler,nfe", [("ddim", 7), ("dpm++", 5), ("ddpm", 4), (DDIM(0.5), 6)])
def test_nfe_budget_is_respected(sampler, nfe):
    m = WDNO(Config(**SMALL))
    b = _smooth_batch(B=2)
    m.fit_scaler(b)
    calls = []
    orig = m.denoiser.forward

    def counting(x, t):
        calls.append(x.shape[0])
        return orig(x, t)

    m.denoiser.forward = counting
    m.sample(b, 3, sampler=sampler, nfe=nfe, generator=torch.Generator().manual_seed(0))
    assert len(calls) == nfe and set(calls) == {6}  # n_samples x batch evaluated together


def test_guidance_reduces_control_objective():
    torch.manual_seed(0)
    m = WDNO(Config(task="control", **SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    target = b.values[:, -1].unsqueeze(1) * 0.5  # (B, C, X): a final state the data do not reach
    J = ControlObjective(target, weight=0.5)
    batch = TrajectoryBatch(b.values, b.times)

    def cost(scale):
        out = m.generate(batch, 4, nfe=10, guidance=J, guidance_scale=scale, exact_known=False,
                         generator=torch.Generator().manual_seed(3))
        # the model's own trajectory (final frame not overwritten) and forcing
        return J(out.state.flatten(0, 1).unsqueeze(1), out.forcing.flatten(0, 1).unsqueeze(1)).mean()

    base, steered = cost(0.0), cost(300.0)
    assert steered < 0.5 * base, (float(base), float(steered))


def test_control_objective_values_and_gradient():
    target = torch.zeros(2, 1, 5)
    J = ControlObjective(target, weight=2.0)
    u = torch.ones(4, 1, 3, 5, requires_grad=True)  # n=2 samples x B=2
    f = torch.full((4, 1, 3, 5), 0.5, requires_grad=True)
    j = J(u, f)
    assert torch.allclose(j, torch.full((4,), 1.0 + 2.0 * 0.25))
    j.sum().backward()
    assert torch.allclose(u.grad[:, :, -1], torch.full((4, 1, 5), 2.0 / 5)) and (u.grad[:, :, :-1] == 0).all()
    assert torch.allclose(f.grad, torch.full_like(f, 2.0 * 2 * 0.5 / 15))


def test_bad_inputs_raise_clear_errors():
    m = WDNO(Config(**SMALL))
    b = _smooth_batch()
    with pytest.raises(RuntimeError, match="fit_scaler"):
        m.sample(b, 1, nfe=2)
    m.fit_scaler(b)
    with pytest.raises(ValueError, match="batch, time"):
        m.loss(TrajectoryBatch(b.values.unsqueeze(2).expand(-1, -1, 2, -1), b.times, b.condition))
    bad = b.values.clone()
    bad[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.sample(TrajectoryBatch(bad, b.times, b.condition), 1, nfe=2)
    with pytest.raises(ValueError, match="NaN"):
        m.fit_scaler(TrajectoryBatch(bad, b.times, b.condition))
    assert not torch.isfinite(m.loss(TrajectoryBatch(bad, b.times, b.condition)).total)  # reaches the loss
    with pytest.raises(ValueError, match="condition"):
        m.sample(TrajectoryBatch(b.values, b.times), 1, nfe=2)
    with pytest.raises(ValueError, match="forcing grid"):
        m.loss(TrajectoryBatch(b.values, b.times, b.condition[:, :, :-1]))
    with pytest.raises(ValueError, match="sampler"):
        m.sample(b, 1, sampler="euler", nfe=2)
    with pytest.raises(ValueError, match="n_samples"):
        m.sample(b, 0, nfe=2)
    with pytest.raises(TypeError, match="TrajectoryBatch"):
        m.loss(b.values)
    with pytest.raises(ValueError, match="space"):
        Config(space="fourier")
    with pytest.raises(ValueError, match="control"):
        Config(task="control", forcing_channels=0)
    with pytest.raises(ValueError, match="dim"):
        Config(dim=3)
    with pytest.raises(ValueError, match="scaling"):
        Config(scaling="band")


def test_registered_and_protocol_attributes():
    assert MODELS["wdno"] is WDNO
    assert WDNO.stochastic and WDNO.batch_type is TrajectoryBatch and WDNO.config_class is Config


def test_two_dimensional_unforced_simulation_shapes():
    """The 2-D PDE layout (3-D U-Net over (t, x, y)), several given frames, no forcing."""
    m = WDNO(Config(dim=2, forcing_channels=0, n_initial=2, **SMALL))
    g = torch.Generator().manual_seed(0)
    vals = torch.randn(2, 6, 8, 7, generator=g)
    b = TrajectoryBatch(vals, torch.linspace(0, 1, 6))
    m.fit_scaler(b)
    m.loss(b).total.backward()
    out = m.sample(b, 3, nfe=2, generator=g)
    assert out.shape == (3, 2, 6, 8, 7) and torch.equal(out[:, :, :2], vals[None, :, :2].expand(3, -1, -1, -1, -1))


def test_denoised_clipping_bounds_the_sample():
    """Clipping the denoised estimate keeps an untrained ε-predicting denoiser's sample near the
    training range (without it the first step amplifies the network error by 1/alpha_max ~ 100)."""
    b = _smooth_batch()
    outs = {}
    for clip in (None, 1.0):
        torch.manual_seed(0)
        m = WDNO(Config(clip_denoised=clip, prediction="eps", **SMALL))
        m.fit_scaler(b)
        u = m.generate(b, 2, nfe=4, exact_known=False, generator=torch.Generator().manual_seed(0)).state
        z = m.encode(u.flatten(0, 1).unsqueeze(1), b.condition.repeat(2, 1, 1).unsqueeze(1))
        bound = m.scaler.bound.reshape(1, -1, 1, 1)
        outs[clip] = float((z[:, : m.n_u].abs() / bound[:, : m.n_u]).amax())
    assert outs[1.0] < 10.0 and outs[None] > 10 * outs[1.0], outs


def test_v_prediction_converts_to_the_exact_noise():
    """``ε̂ = σ_t x_t + α_t v̂``: with the exact velocity ``v = α_t ε - σ_t x_0`` it returns ``ε`` exactly."""
    from sciflow.models.wavelet_diffusion._common import Denoiser
    from sciflow.solvers.generative import CosineVP

    sched = CosineVP()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.5, 0.99], dtype=torch.float64)
    a, s = sched.alpha(t)[:, None, None, None], sched.sigma(t)[:, None, None, None]
    xt = a * x0 + s * eps

    class Oracle(torch.nn.Module):
        def forward(self, x, tt):
            return a * eps - s * x0

    den = Denoiser(Oracle(), sched, "v")
    assert torch.allclose(den(xt, t), eps, atol=1e-12)


@pytest.mark.parametrize("prediction", ["v"])
def test_trained_tiny_wdno_reproduces_its_training_trajectories(prediction):
    """End to end: 150 Adam steps on 8 smooth trajectories, then DDIM samples conditioned on their
    (u0, f) match them to a small fraction of the data variance (eps-prediction at this budget
    gives samples 100x worse: its denoised estimate at high noise is divided by alpha ~ 0.01)."""
    torch.manual_seed(0)
    b = _smooth_batch(B=8)
    m = WDNO(Config(prediction=prediction, **SMALL))
    m.fit_scaler(b)
    fit(m, b, 150)
    s = m.sample(b, 4, nfe=20, generator=torch.Generator().manual_seed(1))
    mse = float((s - b.values)[:, :, 1:].pow(2).mean())
    assert mse < 0.15 * float(b.values.var()), (mse, float(b.values.var()))


def test_on_denoised_rederives_the_noise_of_the_mapped_estimate():
    """ε̃ = (x - α fn(x̂_0))/σ: the identity map changes nothing; the estimate implied by ε̃ is fn(x̂_0)."""
    m = WDNO(Config(**SMALL))
    x = torch.randn(3, m.n_total, 6, 10, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)

    def den(x, t):
        return torch.tanh(x) * t.reshape(-1, 1, 1, 1)

    a, s = (v(t).reshape(-1, 1, 1, 1) for v in (m.schedule.alpha, m.schedule.sigma))
    assert torch.allclose(on_denoised(den, m.schedule, lambda z: z)(x, t), den(x, t), atol=1e-12)
    e = on_denoised(den, m.schedule, lambda z: 2 * z + 1)(x, t)
    assert torch.allclose((x - s * e) / a, 2 * (x - s * den(x, t)) / a + 1, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_project_boundary_zeroes_the_edges_and_keeps_the_interior(dim):
    torch.manual_seed(0)
    m = WDNO(Config(dim=dim, zero_boundary=True, forcing_channels=1 if dim == 1 else 0, **SMALL))
    T, S = 9, (17,) * dim
    u = torch.randn(3, T, *S)
    b = TrajectoryBatch(u, torch.linspace(0, 1, T), torch.randn(3, T, *S) if dim == 1 else None)
    m.fit_scaler(b)
    z = m.encode(torch.randn(3, 1, T, *S), None if dim == 2 else torch.randn(3, 1, T, *S))
    z = z + 0.1 * torch.randn_like(z)  # off the range of the transform too
    shape = (T, *S)
    before, f_before = m.decode(z, shape)
    zp = m.project_boundary(z, shape)
    after, f_after = m.decode(zp, shape)
    inner = (slice(None), slice(None), slice(None)) + (slice(1, -1),) * dim
    for axis in range(3, 3 + dim):
        assert after.narrow(axis, 0, 1).abs().max() < 1e-5 and after.narrow(axis, S[0] - 1, 1).abs().max() < 1e-5
    assert torch.allclose(after[inner], before[inner], atol=1e-5)
    assert torch.equal(zp[:, m.n_u:], z[:, m.n_u:])  # forcing and condition groups untouched
    assert (f_before is None) or torch.equal(f_after, f_before)
    assert torch.allclose(m.project_boundary(zp, shape), zp, atol=1e-5)  # a projection


@pytest.mark.parametrize("space", ["wavelet", "physical"])
def test_zero_boundary_samples_vanish_on_the_edges(space):
    torch.manual_seed(0)
    m = WDNO(Config(space=space, zero_boundary=True, **SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    shape = tuple(b.values.shape[1:])
    known = m.known_mask(shape)[0, 0]
    if space == "physical":  # the edges are known entries: replaced when sampling, out of the loss
        assert known[: shape[0], 0].all() and known[: shape[0], shape[1] - 1].all()
        assert not known[1: shape[0], 1: shape[1] - 1].any()
    else:
        assert not known[: 5, : 9].any()
    out = m.generate(b, 2, nfe=4, generator=torch.Generator().manual_seed(0))
    edges = out.state[:, :, 1:][..., [0, -1]]  # generated frames; the given first one is carried as it is
    assert torch.equal(edges, torch.zeros_like(edges))
    assert torch.equal(out.state[:, :, 0], b.values[None, :, 0].expand(2, -1, -1))
    free = WDNO(Config(space=space, **SMALL))
    free.load_state_dict(m.state_dict())
    loose = free.generate(b, 2, nfe=4, generator=torch.Generator().manual_seed(0)).state
    assert loose[:, :, 1:][..., [0, -1]].abs().max() > 1e-2  # the untrained net does not vanish there itself


@pytest.mark.parametrize("residual", [True, False])
def test_zero_boundary_guidance_sees_states_that_satisfy_it(residual):
    """Every denoised estimate the guidance cost reads (decoded with the known entries the sampler
    holds, incl. the residual layout's W c) vanishes on the edges, and the guidance step does not move
    them in the sample."""
    torch.manual_seed(0)
    b = _smooth_batch()
    m = WDNO(Config(zero_boundary=True, residual=residual, **SMALL))
    m.fit_scaler(b)
    fit(m, b, 20)
    seen = []

    def cost(u, f):
        seen.append(u[..., [0, -1]].detach().abs().max())
        return u[:, :, -1].pow(2).mean((1, 2))

    out = m.generate(b, 2, nfe=5, guidance=cost, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 5 and max(seen) < 1e-5, seen
    edges = out.state[:, :, 1:][..., [0, -1]]
    assert torch.equal(edges, torch.zeros_like(edges))


def test_bf16_autocast_runs_only_the_network_in_bf16():
    """``train.precision=bf16``: the wavelet coefficients, the noise and the loss stay float32 (the
    same noise draws as fp32), so the loss at the same weights moves by bf16 rounding in the U-Net
    alone. Before the transform left autocast the coefficients were bf16, the noise was drawn in
    bf16 (other numbers) and the loss was 11 % off on the Navier-Stokes experiment."""
    m = WDNO(Config(**SMALL))
    b = _smooth_batch()
    m.fit_scaler(b)
    losses = []
    for autocast in (False, True):
        g = torch.Generator().manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = m.loss(b, generator=g).total
        assert loss.dtype == torch.float32
        losses.append(float(loss))
    assert abs(losses[1] - losses[0]) < 1e-2 * losses[0], losses
