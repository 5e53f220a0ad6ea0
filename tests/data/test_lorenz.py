"""Lorenz-63/96 generators, irregular observation, spiking population (sciflow.data.pdes.lorenz)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import solve_ivp

from sciflow.data.batches import IrregularBatch, TrajectoryBatch
from sciflow.data.pdes import lorenz
from sciflow.data.schema import validate


def _l63(t, y, s=10.0, r=28.0, b=8.0 / 3.0):
    return [s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - b * y[2]]


def _l96(t, y, F=8.0):
    return (np.roll(y, -1) - np.roll(y, 2)) * np.roll(y, 1) - y + F


@pytest.fixture(scope="module")
def l63():
    return lorenz.generate_lorenz63(3, n_time=201, dt=0.01, spinup=2.0, seed=7)


def test_lorenz63_matches_scipy_dop853(l63):
    """Trajectories from their own initial state agree with DOP853 at rtol 1e-12 (chaos: ~e^{0.9 t})."""
    t = l63["time"].values
    for i in range(l63.sizes["sample"]):
        y = l63["state"].values[i]
        ref = solve_ivp(_l63, (t[0], t[-1]), y[0], method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t).y.T
        assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-7


def test_lorenz63_on_attractor_and_schema(l63):
    validate(l63)
    assert json.loads(l63.attrs["parameters"]) == {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
    z = l63["state"].sel(channel="z").values
    # spun-up states lie in the attractor's slab (z roughly in (0, 50), |x| < 25)
    assert z.min() > 0 and z.max() < 50 and np.abs(l63["state"].sel(channel="x").values).max() < 25
    assert (l63["observed"] == l63["state"]).all() and bool(l63["mask"].all())


def test_lorenz63_deterministic_for_seed():
    a = lorenz.generate_lorenz63(2, n_time=20, spinup=0.5, seed=3, rtol=1e-6, atol=1e-6)
    b = lorenz.generate_lorenz63(2, n_time=20, spinup=0.5, seed=3, rtol=1e-6, atol=1e-6)
    c = lorenz.generate_lorenz63(2, n_time=20, spinup=0.5, seed=4, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a["state"].values, b["state"].values)
    assert not np.allclose(a["state"].values, c["state"].values)


def test_lorenz96_matches_scipy_and_energy_budget():
    """Against DOP853, and E = ½Σx²: dE/dt = −2E + FΣx (advection conserves energy)."""
    ds = lorenz.generate_lorenz96(2, n_sites=10, n_time=101, dt=0.01, spinup=2.0, seed=1)
    x, t = ds["state"].values, ds["time"].values
    ref = solve_ivp(_l96, (t[0], t[-1]), x[0, 0], method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t).y.T
    assert np.abs(x[0] - ref).max() / np.abs(ref).max() < 1e-8
    E = 0.5 * (x**2).sum(-1)
    dEdt = -2 * E + 8.0 * x.sum(-1)
    # Simpson over [t0, t_end] of the budget equals E(t_end) − E(t0)
    from scipy.integrate import simpson

    budget = simpson(dEdt, x=t, axis=-1)
    scale = simpson(np.abs(dEdt), x=t, axis=-1)  # the budget is a difference of O(scale) terms
    assert (np.abs(E[:, -1] - E[:, 0] - budget) < 1e-7 * scale).all()
    # a wrong advection stencil would break the budget: sanity of the check itself
    assert np.abs(lorenz.lorenz96_rhs(torch.from_numpy(x[0, :1])).numpy() - _l96(0, x[0, 0])).max() < 1e-12


def test_lorenz96_climatology_k40_f8():
    """Lorenz & Emanuel (1998): K = 40, F = 8 has site mean ≈ 2.35, std ≈ 3.6."""
    ds = lorenz.generate_lorenz96(8, n_time=400, dt=0.05, spinup=10.0, seed=0, rtol=1e-6, atol=1e-6)
    x = ds["state"].values
    assert abs(x.mean() - lorenz.LORENZ96_F8_MEAN) < 0.15
    assert abs(x.std() - lorenz.LORENZ96_F8_STD) < 0.15


def test_lorenz96_short_run_statistics():
    """Coarse check in the default run: 4 samples × 10 time units at K = 40, F = 8."""
    ds = lorenz.generate_lorenz96(4, n_time=100, dt=0.1, spinup=5.0, seed=0, rtol=1e-5, atol=1e-5)
    x = ds["state"].values
    assert abs(x.mean() - 2.35) < 0.5 and abs(x.std() - 3.6) < 0.5


def test_irregular_masks_noise_and_batches():
    rates = [0.0, 0.3, 0.7]
    ds = lorenz.generate_lorenz63(6, n_time=100, dt=0.02, spinup=1.0, n_obs=40, missing_rate=rates,
                                  noise_std=0.1, seed=2, rtol=1e-6, atol=1e-6)
    validate(ds)
    m = ds["mask"].values
    # exactly round(rate · n_obs) values removed from each channel of each sample
    for c, r in enumerate(rates):
        assert (m[:, :, c].sum(1) == 40 - round(r * 40)).all()
    obs_t = ds["obs_time"].values
    assert obs_t.shape == (6, 40) and (np.diff(obs_t, axis=1) > 0).all()
    assert not np.allclose(obs_t[0], obs_t[1])  # per-sample times
    grid = 0.02 * np.arange(100)
    assert np.isin(np.round(obs_t / 0.02), np.arange(100)).all() and obs_t.max() <= grid[-1] + 1e-12
    obs, clean = ds["observed"].values, ds["state"].values
    assert (obs[~m] == 0).all()
    resid = (obs - clean)[m].reshape(-1)
    # noise: 0.1 × channel std, mean zero
    std = np.asarray(ds.attrs["state_std"])
    z = ((obs - clean) / std)[m]
    assert abs(z.std() - 0.1) < 0.02 and abs(z.mean()) < 0.02 and resid.size > 100

    b = lorenz.to_irregular_batch(ds)
    assert isinstance(b, IrregularBatch) and b.values.shape == (6, 40, 3)
    torch.testing.assert_close(b.times, torch.as_tensor(obs_t, dtype=torch.float32))
    f = lorenz.to_irregular_batch(ds, n_target=5)
    assert f.values.shape == (6, 35, 3) and f.targets.shape == (6, 5, 3)
    assert (f.target_times.min(1).values > f.times.max(1).values).all()
    tb = lorenz.to_trajectory_batch(ds)
    assert isinstance(tb, TrajectoryBatch) and tb.times.shape == (6, 40)


def test_continuous_observation_times_match_scipy():
    """on_grid=False: each sample integrated to its own uniform random times, checked by DOP853."""
    ds = lorenz.generate_lorenz63(3, n_time=101, dt=0.02, spinup=1.0, n_obs=15, on_grid=False,
                                  missing_rate=0.2, seed=4)
    validate(ds)
    t = ds["obs_time"].values
    assert (np.diff(t, axis=1) > 0).all() and t.min() > 0 and t.max() <= 2.0
    assert not np.allclose(np.round(t / 0.02), t / 0.02)  # off the grid
    assert ds.attrs["sampling"].startswith("uniform")
    # the same seed draws the same spun-up initial states: read them off the on-grid dataset at t = 0
    grid = lorenz.generate_lorenz63(3, n_time=101, dt=0.02, spinup=1.0, seed=4)
    for i in range(3):
        y0 = grid["state"].values[i, 0]
        ref = solve_ivp(_l63, (0.0, t[i, -1]), y0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t[i]).y.T
        assert np.abs(ds["state"].values[i] - ref).max() / np.abs(ref).max() < 1e-7


def test_missing_rate_bernoulli_free_at_scale():
    """Whole-dataset missing fraction equals the requested rate for every channel."""
    st = torch.randn(20, 50, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    _, _, _, mask = lorenz.observe_irregular(st, n_obs=None, missing_rate=[0.1, 0.25, 0.5, 0.9], generator=g)
    np.testing.assert_allclose(1 - mask.double().mean((0, 1)).numpy(), [0.1, 0.24, 0.5, 0.9])


def test_bad_arguments_raise():
    st = torch.randn(2, 10, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="missing_rate"):
        lorenz.observe_irregular(st, n_obs=None, missing_rate=1.0, generator=g)
    with pytest.raises(ValueError, match="one entry per channel"):
        lorenz.observe_irregular(st, n_obs=None, missing_rate=[0.1, 0.2], generator=g)
    with pytest.raises(ValueError, match="n_obs"):
        lorenz.observe_irregular(st, n_obs=11, generator=g)
    with pytest.raises(ValueError, match="seed"):
        lorenz.generate_lorenz63(2, seed=None)
    with pytest.raises(ValueError, match="n_sites"):
        lorenz.generate_lorenz96(2, n_sites=3)


@pytest.fixture(scope="module")
def spikes():
    return lorenz.generate_lorenz_spiking(3, n_trials=200, n_neurons=12, n_bins=50, bin_width=0.01,
                                          base_rate=20.0, spinup=2.0, seed=5, rtol=1e-6, atol=1e-6)


def test_spiking_rates_match_readout(spikes):
    validate(spikes)
    zhat = spikes["latents"].values
    W, b = spikes["readout_weight"].values, spikes["readout_bias"].values
    np.testing.assert_allclose(spikes["rates"].values, np.exp(zhat @ W.T + b), rtol=1e-12)
    # latents are standardised Lorenz states and identical over trials of one condition
    flat = zhat.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(flat.std(0), 1, rtol=2e-2)
    c0 = spikes.where(spikes["condition"] == 0, drop=True)
    assert np.ptp(c0["latents"].values, axis=0).max() == 0
    np.testing.assert_allclose(b, np.log(20.0))


def test_spiking_counts_are_poisson(spikes):
    """Across the 200 trials of a condition: mean count = λΔ, Fano factor = 1."""
    lam = spikes["rates"].values * spikes.attrs["bin_width"]
    counts = spikes["counts"].values.astype(np.float64)
    cond = spikes["condition"].values
    m_all, v_all, l_all = [], [], []
    for c in np.unique(cond):
        k = counts[cond == c]
        m_all.append(k.mean(0)), v_all.append(k.var(0, ddof=1)), l_all.append(lam[cond == c][0])
    m, v, lam_c = (np.concatenate([a.ravel() for a in x]) for x in (m_all, v_all, l_all))
    # pooled z-score of the sample means against λΔ (σ = sqrt(λΔ / n_trials))
    z = (m - lam_c) / np.sqrt(lam_c / 200)
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.1
    # Poisson: variance equals mean (pooled Fano factor)
    assert abs(v.sum() / m.sum() - 1) < 0.03
    # chi-square of trial counts for a high-rate cell is consistent with Poisson
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_spiking_batch_conversion(spikes):
    tb = lorenz.to_trajectory_batch(spikes, "counts")
    assert tb.values.shape == (600, 50, 12) and tb.times.shape == (50,)


@pytest.mark.gpu
def test_lorenz63_on_cuda_matches_cpu():
    kw = dict(n_time=101, dt=0.01, spinup=1.0, n_obs=50, missing_rate=0.3, noise_std=0.1, seed=11)
    a = lorenz.generate_lorenz63(64, **kw)
    b = lorenz.generate_lorenz63(64, device="cuda", **kw)
    np.testing.assert_array_equal(a["mask"].values, b["mask"].values)
    np.testing.assert_allclose(b["state"].values, a["state"].values, rtol=0,
                               atol=1e-8 * np.abs(a["state"].values).max())


REGISTRY_SMALL = {
    "lorenz63": dict(n_time=8, spinup=0.2, n_obs=5, missing_rate=0.2, noise_std=0.1, rtol=1e-6, atol=1e-6),
    "lorenz96": dict(n_sites=6, n_time=8, spinup=0.2, rtol=1e-6, atol=1e-6),
    "lorenz-spiking": dict(n_trials=2, n_neurons=3, n_bins=6, spinup=0.2, rtol=1e-6, atol=1e-6),
}


@pytest.mark.parametrize("name", sorted(REGISTRY_SMALL))
def test_registry_entries_valid_deterministic_and_storable(name, tmp_path):
    from sciflow.data import io
    from sciflow.data.registry import GENERATORS

    a = GENERATORS[name](n=2, seed=3, **REGISTRY_SMALL[name])
    b = GENERATORS[name](n=2, seed=3, **REGISTRY_SMALL[name])
    validate(a)
    assert a.attrs["seed"] == 3 and io.checksum(a) == io.checksum(b)
    back = io.read(io.write(a, tmp_path / f"{name}.nc"))
    for v in list(a.data_vars) + [c for c in a.coords if a[c].ndim > 1]:
        np.testing.assert_array_equal(back[v].values, a[v].values)
