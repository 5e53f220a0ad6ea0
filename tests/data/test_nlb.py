"""NLB tensor loader (nlb_tools HDF5 layout) on a generated fixture, and the NLB metrics on analytic cases."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from sciflow.data.nlb import bin_nwb_trials, load_nlb, write_nlb_fixture
from sciflow.models.langevin_flow.metrics import (bits_per_spike, evaluate_nlb, psth_r2, ridge_fit,
                                                  velocity_r2)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_nlb_fixture(tmp_path_factory.mktemp("nlb"), seed=0)


def test_loader_reads_the_nlb_layout(fixture):
    data = load_nlb(fixture["paths"], dataset=fixture["name"])
    n_in, n_out, T, F = fixture["n_heldin"], fixture["n_heldout"], fixture["n_time"], fixture["n_forward"]
    assert (data.n_heldin, data.n_heldout, data.n_forward) == (n_in, n_out, F)
    assert data.bin_width == 0.02  # "*_20" dataset
    counts = fixture["counts"].float()
    torch.testing.assert_close(data.train_spikes_heldin, counts[:24, :T, :n_in])
    torch.testing.assert_close(data.eval_spikes_heldout_forward, counts[24:, T:, n_in:])
    batch = data.train_batch()
    assert batch.values.shape == (24, T + F, n_in + n_out)
    torch.testing.assert_close(batch.values, counts[:24])
    assert float(batch.times[1] - batch.times[0]) == pytest.approx(0.02)
    assert data.eval_batch(heldout=False, forward=False).values.shape == (12, T, n_in)
    torch.testing.assert_close(data.eval_batch().values, counts[24:])
    # conditions as stored (2-D, padded with -1) round-trip to the evaluation trials of each condition
    cond = fixture["conditions"][24:]
    for c, idx in enumerate(data.eval_cond_idx):
        assert idx.tolist() == torch.nonzero(cond == c).flatten().tolist()
    assert data.psth.shape == (3, T, n_in + n_out) and data.train_decode_mask.dtype == torch.bool
    # the input files alone: no targets, eval held-out spikes absent
    inputs = load_nlb(fixture["paths"][:2])
    assert inputs.eval_spikes_heldout is None and inputs.psth is None and inputs.bin_width is None
    with pytest.raises(ValueError, match="heldout=False"):
        inputs.eval_batch()


def test_loader_errors(fixture, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_nlb(tmp_path / "missing.h5")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_nlb(bad)
    with pytest.raises(ValueError, match="train_spikes_heldin"):
        load_nlb(fixture["paths"][1])  # eval input only
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f["train_spikes_heldin"] = np.ones((4, 6, 3))
        f["train_spikes_heldout"] = np.ones((4, 5, 2))
    with pytest.raises(ValueError, match="share \\(trial, time\\)"):
        load_nlb(wrong)
    neg = tmp_path / "neg.h5"
    with h5py.File(neg, "w") as f:
        f["train_spikes_heldin"] = -np.ones((4, 6, 3))
        f["train_spikes_heldout"] = np.ones((4, 6, 2))
    with pytest.raises(ValueError, match="non-negative integer"):
        load_nlb(neg)


# ----------------------------------------------------------------------------- metrics


def test_bits_per_spike_true_rates_match_expectation_and_null_is_zero():
    """For Poisson counts of known rates λ_{tn}, bits/spike of the true rates converges to
    Σ [λ log(λ/λ̄_n) − (λ − λ̄_n)] / (Σ λ · ln 2) (λ̄_n: neuron n's mean rate); the mean-rate null
    model scores exactly 0 and a shuffled model scores below 0."""
    g = torch.Generator().manual_seed(0)
    lam = 0.5 * torch.exp(torch.sin(torch.linspace(0, 6, 50))[:, None] * torch.linspace(-1, 1, 6))
    lam = lam.expand(4000, 50, 6).double()
    counts = torch.poisson(lam, generator=g)
    mean = lam.mean((0, 1), keepdim=True)
    expected = (lam * (lam / mean).log() - (lam - mean)).sum() / (lam.sum() * math.log(2))
    got = bits_per_spike(lam, counts)
    assert float(got) == pytest.approx(float(expected), rel=0.02)
    null = counts.mean((0, 1), keepdim=True).expand_as(counts)
    assert float(bits_per_spike(null, counts)) == pytest.approx(0.0, abs=1e-9)
    assert float(bits_per_spike(lam.flip(1), counts)) < 0


def test_bits_per_spike_skips_nan_padding():
    g = torch.Generator().manual_seed(1)
    rates = torch.rand(6, 10, 4, generator=g, dtype=torch.float64) + 0.2
    counts = torch.poisson(rates, generator=g)
    padded_counts = torch.cat([counts, torch.full((6, 3, 4), float("nan"), dtype=torch.float64)], 1)
    padded_rates = torch.cat([rates, torch.full((6, 3, 4), float("nan"), dtype=torch.float64)], 1)
    torch.testing.assert_close(bits_per_spike(padded_rates, padded_counts), bits_per_spike(rates, counts))
    with pytest.raises(ValueError, match="where counts is observed"):
        bits_per_spike(padded_rates, torch.cat([counts, torch.zeros(6, 3, 4, dtype=torch.float64)], 1))


def test_ridge_matches_normal_equations_and_velocity_r2_recovers_linear_behaviour():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    w_true = torch.randn(5, 2, generator=g, dtype=torch.float64)
    y = x @ w_true + 3.0
    w, b = ridge_fit(x, y, 0.0)
    torch.testing.assert_close(w, w_true)
    torch.testing.assert_close(b, torch.full((2,), 3.0, dtype=torch.float64))
    # α > 0: the centred normal equations (X_cᵀX_c + αI) W = X_cᵀ y_c
    w1, _ = ridge_fit(x, y, 10.0)
    xc = x - x.mean(0)
    torch.testing.assert_close((xc.T @ xc + 10 * torch.eye(5, dtype=torch.float64)) @ w1, xc.T @ (y - y.mean(0)))
    # behaviour exactly linear in the features: vel R² = 1; unrelated noise: vel R² <= ~0
    feats = torch.randn(30, 20, 5, generator=g, dtype=torch.float64)
    beh = feats @ w_true
    assert float(velocity_r2(feats[:20], beh[:20], feats[20:], beh[20:])) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(30, 20, 2, generator=g, dtype=torch.float64)
    assert float(velocity_r2(feats[:20], noise[:20], feats[20:], noise[20:])) < 0.05


def test_psth_r2_exact_for_condition_means_and_zero_for_grand_mean():
    g = torch.Generator().manual_seed(3)
    rates = torch.rand(12, 8, 5, generator=g, dtype=torch.float64)
    idx = [torch.arange(0, 12, 3), torch.arange(1, 12, 3), torch.arange(2, 12, 3)]
    psth = torch.stack([rates[i].mean(0) for i in idx])
    assert float(psth_r2(psth, rates, idx)) == pytest.approx(1.0)
    # predicting each neuron's mean over all conditions and times has R² exactly 0
    const = psth.mean((0, 1), keepdim=True).expand(12, 8, 5)
    assert float(psth_r2(psth, const, idx)) == pytest.approx(0.0, abs=1e-12)
    psth_nan = psth.clone()
    psth_nan[:, :2] = float("nan")
    assert float(psth_r2(psth_nan, rates, idx)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="conditions"):
        psth_r2(psth, rates, idx[:2])


def test_evaluate_nlb_on_the_fixture(fixture):
    data = load_nlb(fixture["paths"], dataset=fixture["name"])
    T = fixture["n_time"]
    tr, ev = fixture["train_rates"].float(), fixture["eval_rates"].float()
    true = evaluate_nlb(data, tr[:, :T], ev[:, :T], ev[:, T:])
    assert set(true) == {"co-bps", "vel R2", "psth R2", "fp-bps"}
    assert true["co-bps"] == pytest.approx(float(bits_per_spike(ev[:, :T, data.n_heldin:],
                                                                data.eval_spikes_heldout)))
    assert true["co-bps"] > 0.1 and true["fp-bps"] > 0.1
    assert true["psth R2"] > 0.8 and true["vel R2"] > 0.5
    # the mean-rate null model: co-bps 0 (its mean is taken on the scored spikes, as NLB does)
    null = data.eval_spikes_heldout.mean((0, 1), keepdim=True).expand_as(data.eval_spikes_heldout)
    flat = torch.cat([ev[:, :T, : data.n_heldin], null], -1)
    assert evaluate_nlb(data, tr[:, :T], flat)["co-bps"] == pytest.approx(0.0, abs=1e-6)



def test_bin_nwb_trials_counts_known_spikes(tmp_path):
    """Hand-placed spikes in the NWB units/trials layout land in the expected 20 ms bins."""
    path = tmp_path / "tiny.nwb"
    unit0 = [0.001, 0.019, 0.021, 1.005]  # trial 0: bins 0, 0, 1; trial 1 (starts 1.0): bin 0
    unit1 = [0.050, 1.079, 1.081, 2.5]    # trial 0: bin 2; trial 1: after its stop (NaN); 2.5: no trial
    with h5py.File(path, "w") as f:
        f["units/spike_times"] = np.array(unit0 + unit1)
        f["units/spike_times_index"] = np.array([4, 8])
        f["units/id"] = np.array([7, 9])
        f["units/heldout"] = np.array([False, True])
        f["intervals/trials/start_time"] = np.array([0.0, 1.0])
        f["intervals/trials/stop_time"] = np.array([0.1, 1.06])
    out = bin_nwb_trials(path, 0.02, duration=0.1)
    c = out["counts"]
    assert c.shape == (2, 5, 2)
    assert c[0, :, 0].tolist() == [2, 1, 0, 0, 0] and c[0, :, 1].tolist() == [0, 0, 1, 0, 0]
    assert c[1, :3, 0].tolist() == [1, 0, 0] and c[1, :3, 1].tolist() == [0, 0, 0]
    assert bool(torch.isnan(c[1, 3:]).all())  # trial 1 stops at 1.06: padded with NaN like NLB
    assert out["unit_ids"].tolist() == [7, 9] and out["heldout"].tolist() == [False, True]
    assert bin_nwb_trials(path, 0.02)["counts"].shape == (2, 3, 2)  # default: the shortest trial
    with pytest.raises(ValueError, match="spike_times_index"):
        with h5py.File(path, "a") as f:
            f["units/spike_times_index"][...] = np.array([5, 4])
        bin_nwb_trials(path, 0.02)


def test_eval_input_batch_hides_the_targets(fixture):
    data = load_nlb(fixture["paths"], dataset=fixture["name"])
    T, n_in = fixture["n_time"], fixture["n_heldin"]
    x = data.eval_input_batch().values
    assert x.shape == (12, T + fixture["n_forward"], n_in + fixture["n_heldout"])
    torch.testing.assert_close(x[:, :T, :n_in], data.eval_spikes_heldin)
    assert float(x[:, :, n_in:].abs().sum()) == 0 and float(x[:, T:].abs().sum()) == 0
