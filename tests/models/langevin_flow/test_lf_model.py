"""LangevinFlow / GRU sequential VAE / latent ODE: force closed form, gradients, training, metrics, errors."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.data.pdes.lorenz import generate_lorenz_spiking
from sciflow.models.langevin_flow import (Config, CoupledOscillatorPotential, GRUSequentialVAE, LangevinFlow,
                                          LatentODE,
                                          LangevinLatent, MLPPotential, bits_per_spike, co_smoothing,
                                          forward_prediction_bps, rate_r2)
from sciflow.solvers.langevin import BAOAB, LangevinFlowEuler

SMALL = dict(obs_dim=10, latent_dim=8, n_channels=2, encoder_hidden=16, d_model=16, n_heads=2, ff_dim=32,
             generator_hidden=16, kl_ramp_steps=10)


def _counts(B=4, T=12, N=10, seed=0) -> TrajectoryBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((B, T, N), 1.5), generator=g)
    return TrajectoryBatch(values=x, times=torch.arange(T, dtype=torch.float32))


# ----------------------------------------------------------------------------- potential


@pytest.mark.parametrize("channels,length,k", [(1, 8, 3), (2, 5, 3), (3, 4, 5), (2, 1, 3)])
def test_closed_form_force_equals_autograd(channels, length, k):
    torch.manual_seed(0)
    pot = CoupledOscillatorPotential(channels * length, channels, k).double()
    with torch.no_grad():
        pot.kernel.normal_()  # a generic, non-symmetric coupling
    z = torch.randn(6, 3, channels * length, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(pot.energy(z).sum(), z)
    torch.testing.assert_close(pot.force(z), -g, rtol=1e-12, atol=1e-12)
    # the energy is a quadratic form: U(2z) = 4 U(z)
    torch.testing.assert_close(pot.energy(2 * z), 4 * pot.energy(z))


def test_mlp_potential_force_is_minus_gradient():
    torch.manual_seed(0)
    pot = MLPPotential(4, width=8).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    h = 1e-6
    fd = torch.stack([(pot.energy(z + h * e) - pot.energy(z - h * e)) / (2 * h) for e in torch.eye(4).double()], -1)
    torch.testing.assert_close(pot.force(z), -fd, rtol=1e-6, atol=1e-7)


def test_uncoupled_oscillators_rollout_is_harmonic():
    """K = 0, γ = T = 0: each unit oscillates at ω; BAOAB (velocity Verlet) error is O(dt²)."""
    pot = CoupledOscillatorPotential(4, 2, 3, stiffness=4.0).double()  # ω = 2
    with torch.no_grad():
        pot.kernel.zero_()
    errs = []
    for dt in (0.02, 0.01):
        dyn = LangevinLatent(pot, BAOAB(), dt=dt, gamma=0.0, temperature=0.0)
        n = int(round(1.0 / dt)) + 1
        z, _ = dyn(torch.ones(1, 4, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64), n)
        t = dt * torch.arange(n, dtype=torch.float64)
        errs.append(float((z[0, :, 0].detach() - torch.cos(2 * t)).abs().max()))
    assert errs[1] < 1e-3
    assert math.log2(errs[0] / errs[1]) == pytest.approx(2.0, abs=0.2)


def test_closed_form_and_autograd_rollouts_agree():
    torch.manual_seed(0)
    pot = CoupledOscillatorPotential(6, 2, 3).double()
    z0, v0 = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    out = []
    for closed in (True, False):
        dyn = LangevinLatent(pot, LangevinFlowEuler(), dt=0.1, gamma=0.2, temperature=0.5, closed_form=closed)
        out.append(dyn(z0, v0, 15, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("cls,kw", [
    (LangevinFlow, {}),
    (LangevinFlow, {"potential": "mlp", "scheme": "baoab", "external_force": True}),
    (LangevinFlow, {"likelihood": "gaussian", "scheme": "obabo", "input_dim": 6, "n_forward": 2}),
    (LangevinFlow, {"learn_friction": True, "learn_temperature": True}),
    (LangevinFlow, {"learn_friction": True, "learn_temperature": True, "scheme": "baoab", "gamma": 1.0,
                    "external_force": True, "likelihood": "gaussian", "observation_std": "channel"}),
    (GRUSequentialVAE, {}),
    (GRUSequentialVAE, {"likelihood": "gaussian"}),
    (LatentODE, {"likelihood": "gaussian", "ode_substeps": 2}),
])
def test_every_parameter_gets_gradient(cls, kw):
    torch.manual_seed(0)
    cfg = Config(**{**SMALL, **kw})
    model = cls(cfg)
    batch = _counts() if cfg.likelihood == "poisson" else TrajectoryBatch(
        values=torch.randn(4, 12, 10), times=torch.arange(12.0))
    out = model.loss(batch)
    assert torch.isfinite(out.total)
    out.total.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert not missing, missing


def test_sample_shapes_reproducible_and_stochastic():
    torch.manual_seed(0)
    model = LangevinFlow(Config(**SMALL)).eval()
    batch = _counts()
    s1 = model.sample_means(batch, 5, generator=torch.Generator().manual_seed(1))
    s2 = model.sample_means(batch, 5, generator=torch.Generator().manual_seed(1))
    assert s1.shape == (5, 4, 12, 10)
    assert bool((s1 > 0).all())
    torch.testing.assert_close(s1, s2)
    assert float((s1[0] - s1[1]).abs().max()) > 1e-4  # posterior samples differ
    counts = model.sample(batch, 5, generator=torch.Generator().manual_seed(1))  # predictive: Poisson counts
    assert counts.shape == (5, 4, 12, 10) and bool((counts == counts.round()).all() and (counts >= 0).all())
    torch.testing.assert_close(counts, model.sample(batch, 5, generator=torch.Generator().manual_seed(1)))
    assert model.posterior_mean(batch, 3).shape == (4, 12, 10)
    assert model.latents(batch).shape == (4, 12, 8)


def test_kl_ramp_is_linear():
    model = LangevinFlow(Config(**{**SMALL, "kl_ramp_steps": 4, "kl_weight": 2.0}))
    betas = [float(model.loss(_counts()).terms["beta"]) for _ in range(6)]
    assert betas == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0])


def test_training_learns_lorenz_rates():
    """A tiny LangevinFlow fitted to Lorenz spikes: loss falls and the inferred rates carry the
    truth (R² vs true rates and bits/spike clearly above the mean-rate model's 0)."""
    torch.manual_seed(0)
    ds = generate_lorenz_spiking(n=6, n_trials=8, n_neurons=10, n_bins=30, latent_dt=0.02, base_rate=40.0,
                                 rtol=1e-7, atol=1e-7, seed=1)
    counts = torch.tensor(ds["counts"].values, dtype=torch.float32)
    true = torch.tensor(ds["rates"].values, dtype=torch.float32) * float(ds.attrs["bin_width"])
    data = TrajectoryBatch(values=counts, times=torch.tensor(ds["time"].values, dtype=torch.float32))
    model = LangevinFlow(Config(**{**SMALL, "coordinated_dropout": 0.2, "kl_ramp_steps": 50}))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    nll = []
    for _ in range(100):
        out = model.loss(data.index(torch.randint(len(data), (12,), generator=g)))
        opt.zero_grad()
        out.total.backward()
        opt.step()
        nll.append(float(out.terms["nll"]))
    model.eval()
    rates = model.posterior_mean(data, 4, generator=torch.Generator().manual_seed(0))
    print("nll first/last", sum(nll[:10]) / 10, sum(nll[-10:]) / 10, "r2", float(rate_r2(rates, true)),
          "bps", float(bits_per_spike(rates, counts)), "true bps", float(bits_per_spike(true, counts)))
    assert sum(nll[-10:]) / 10 < 0.85 * sum(nll[:10]) / 10
    assert float(rate_r2(rates, true)) > 0.4
    assert float(bits_per_spike(rates, counts)) > 0.2


def test_clear_errors():
    model = LangevinFlow(Config(**SMALL))
    with pytest.raises(ValueError, match="values"):
        model.loss(TrajectoryBatch(values=torch.ones(2, 12, 7), times=torch.arange(12.0)))
    with pytest.raises(ValueError, match="non-negative integer"):
        model.loss(TrajectoryBatch(values=torch.full((2, 12, 10), 0.5), times=torch.arange(12.0)))
    with pytest.raises(ValueError, match="non-negative integer"):
        model.loss(TrajectoryBatch(values=-torch.ones(2, 12, 10), times=torch.arange(12.0)))
    with pytest.raises(TypeError, match="TrajectoryBatch"):
        model.loss(torch.ones(2, 12, 10))
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(_counts(), 0)
    with pytest.raises(ValueError, match="divisible"):
        Config(latent_dim=7, n_channels=2)
    with pytest.raises(ValueError, match="odd"):
        Config(kernel_size=4)
    with pytest.raises(ValueError, match="per-step gamma"):
        Config(scheme="official", gamma=2.0)
    with pytest.raises(ValueError, match="learn_friction"):
        Config(scheme="official", gamma=0.0, learn_friction=True)
    with pytest.raises(ValueError, match="learn_temperature"):
        Config(temperature=0.0, learn_temperature=True)
    with pytest.raises(ValueError, match="observation_std"):
        Config(observation_std="per_bin")
    with pytest.raises(ValueError, match="'gaussian' only"):
        model.observation_std(torch.zeros(1, 2, 10))
    with pytest.raises(ValueError, match="input_dim"):
        Config(obs_dim=5, input_dim=6)
    with pytest.raises(ValueError, match="n_forward"):
        LangevinFlow(Config(**{**SMALL, "n_forward": 11})).loss(_counts())
    with pytest.raises(TypeError, match="Config"):
        LangevinFlow({"obs_dim": 3})


# ----------------------------------------------------------------------------- metrics


def test_bits_per_spike_of_truth_positive_and_of_mean_rate_zero():
    g = torch.Generator().manual_seed(0)
    rates = torch.exp(torch.randn(50, 20, 8, generator=g))
    counts = torch.poisson(rates, generator=g)
    assert float(bits_per_spike(rates, counts)) > 0.1
    mean = counts.mean((0, 1), keepdim=True).expand_as(counts)
    assert float(bits_per_spike(mean, counts)) == pytest.approx(0.0, abs=1e-6)
    # a wrong model scores below the mean-rate model
    assert float(bits_per_spike(rates.flip(0), counts)) < 0


def test_rate_r2_and_co_smoothing():
    g = torch.Generator().manual_seed(0)
    true = torch.rand(10, 6, 4, generator=g) + 0.5
    assert float(rate_r2(true, true)) == pytest.approx(1.0)
    assert float(rate_r2(true.mean((0, 1), keepdim=True).expand_as(true), true)) == pytest.approx(0.0, abs=1e-6)
    counts = torch.poisson(true * 5, generator=g)
    out = co_smoothing(true * 5, counts, [2, 3])
    torch.testing.assert_close(out["co_bps"], bits_per_spike(true[..., 2:] * 5, counts[..., 2:]))
    torch.testing.assert_close(out["heldin_bps"], bits_per_spike(true[..., :2] * 5, counts[..., :2]))
    torch.testing.assert_close(forward_prediction_bps(true * 5, counts, 2),
                               bits_per_spike(true[:, 4:] * 5, counts[:, 4:]))
    with pytest.raises(ValueError, match="heldout"):
        co_smoothing(true, counts, [4])
    with pytest.raises(ValueError, match="same shape"):
        bits_per_spike(true[..., :3], counts)
    with pytest.raises(ValueError, match="without spikes"):
        bits_per_spike(true, torch.zeros_like(counts))
    with pytest.raises(ValueError, match="NaN"):
        rate_r2(true * float("nan"), true)


def test_gaussian_forecast_beats_climatology_crps():
    """Gaussian likelihood on noisy, partially observed Lorenz-63 (encoder sees x, y; z is decoded
    only; the last 8 bins are hidden): the posterior forecast's CRPS against the clean state is
    lower than that of climatology samples."""
    from sciflow.data.pdes.lorenz import generate_lorenz63
    from sciflow.uq.scores import crps_ensemble

    ds = generate_lorenz63(40, n_time=40, dt=0.02, noise_std=0.1, spinup=3.0, rtol=1e-6, atol=1e-6, seed=2)
    mean = torch.tensor(ds.attrs["state_mean"], dtype=torch.float32)
    std = torch.tensor(ds.attrs["state_std"], dtype=torch.float32)
    obs = (torch.tensor(ds["observed"].values, dtype=torch.float32) - mean) / std
    clean = (torch.tensor(ds["state"].values, dtype=torch.float32) - mean) / std
    times = torch.tensor(ds["time"].values, dtype=torch.float32)
    train, test = TrajectoryBatch(values=obs[:32], times=times), TrajectoryBatch(values=obs[32:], times=times)
    torch.manual_seed(0)
    cfg = Config(**{**SMALL, "obs_dim": 3, "input_dim": 2, "n_forward": 8, "likelihood": "gaussian",
                    "coordinated_dropout": 0.0, "kl_ramp_steps": 30})
    model = LangevinFlow(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        out = model.loss(train.index(torch.randint(32, (16,), generator=g)))
        opt.zero_grad()
        out.total.backward()
        opt.step()
    model.eval()
    fc = model.sample_means(test, 16, generator=torch.Generator().manual_seed(0))[:, :, -8:]
    truth = clean[32:, -8:]
    clim = clean[:32].reshape(-1, 3)[torch.randint(32 * 40, (16,), generator=g)]
    clim = clim[:, None, None, :].expand(16, *truth.shape)
    crps_model = float(crps_ensemble(fc, truth))
    crps_clim = float(crps_ensemble(clim, truth))
    print("crps model", crps_model, "climatology", crps_clim)
    assert crps_model < 0.8 * crps_clim
    draws = model.sample(test, 4, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4, 8, 40, 3) and bool(torch.isfinite(draws).all())


def test_plots_draw_the_given_data():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sciflow.models.langevin_flow.plots import plot_latents_3d, plot_raster, plot_rates

    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, 9, 4, generator=g)
    fig = plot_latents_3d(lat, dims=(0, 2, 3))
    x, y, z = fig.axes[0].lines[1].get_data_3d()
    for got, d in ((x, 0), (y, 2), (z, 3)):
        assert list(got) == pytest.approx(lat[1, :, d].tolist())
    rates = torch.rand(2, 9, 5, generator=g)
    fig2 = plot_rates(rates, rates * 2, trial=1, neurons=(3,))
    assert fig2.axes[0].lines[1].get_ydata().tolist() == pytest.approx((2 * rates[1, :, 3]).tolist())
    counts = torch.poisson(rates, generator=g)
    fig3 = plot_raster(counts, rates)
    assert len(fig3.axes[0].collections[0].get_offsets()) == int((counts[0] > 0).sum())
    with pytest.raises(ValueError, match="latent>=3"):
        plot_latents_3d(lat[..., :2])
    plt.close("all")


def test_bf16_autocast_rolls_the_latents_out_in_the_data_dtype():
    """``train.precision=bf16``: the encoder's bf16 mean and log-variance used to make ``s_0``, its
    noise draws and the whole Langevin rollout bf16; now the rollout keeps the data's float32 and
    only the networks run in bf16 (the loss at the same weights within bf16 rounding of fp32)."""
    torch.manual_seed(0)
    model = LangevinFlow(Config(**SMALL))
    seen = []
    rollout = model.rollout

    def spy(h, s0, generator=None):
        z, v = rollout(h, s0, generator)
        seen.append((s0.dtype, z.dtype, v.dtype))
        return z, v

    model.rollout = spy
    losses = []
    for autocast in (False, True):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses.append(float(model.loss(_counts()).total.detach()))
    assert seen[1] == (torch.float32,) * 3, seen
    assert abs(losses[1] - losses[0]) < 1e-2 * abs(losses[0]), losses
