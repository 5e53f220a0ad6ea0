"""Letters and aggregation populations: determinism, geometry, physics invariants, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciflow.data.batches import PopulationBatch
from sciflow.data.populations import (ALPHABET, aggregation_populations, aggregation_velocity,
                                      evolve_aggregation, letter_polygons, letter_split, letters,
                                      sample_letter)


def test_letters_deterministic_by_seed():
    a = letters("val", n_points=50, n_rotations=3, seed=7)
    b = letters("val", n_points=50, n_rotations=3, seed=7)
    c = letters("val", n_points=50, n_rotations=3, seed=8)
    assert isinstance(a, PopulationBatch)
    assert torch.equal(a.source, b.source) and torch.equal(a.target, b.target)
    assert not torch.allclose(a.target, c.target)
    # a population does not depend on which other letters share its split
    d = letters("test", n_points=50, n_rotations=3, seed=7, val_letters=("B",), test_letters=("X",))
    assert torch.equal(a.target, d.target)


def test_letters_split_by_letter_and_ids():
    sp = letter_split(("X",), ("Y",))
    assert set(sp["train"]) | {"X", "Y"} == set(ALPHABET) and "X" not in sp["train"]
    tr = letters("train", n_points=10, n_rotations=2)
    va, te = letters("val", n_points=10, n_rotations=2), letters("test", n_points=10, n_rotations=2)
    assert tr.source.shape == (48, 10, 2) and va.source.shape == (2, 10, 2)
    ids = torch.cat([tr.population_id, va.population_id, te.population_id])
    assert len(set(ids.tolist())) == len(ids) and int(ids.max()) < 26 * 2
    assert set(va.population_id.tolist()) == {ALPHABET.index("X") * 2, ALPHABET.index("X") * 2 + 1}


def test_letter_geometry_holes_and_extent():
    rng = np.random.default_rng(0)
    o = sample_letter("O", 4000, rng)
    # uniform inside the ring of an O: nothing near its centre, spans [-3, 3] on the long side
    assert np.linalg.norm(o, axis=1).min() > 0.8
    assert np.isclose(np.abs(o).max(), 3.0, atol=0.1)
    i = sample_letter("I", 4000, rng)
    assert np.ptp(i[:, 0]) < 1.0 and np.ptp(i[:, 1]) > 5.8  # a thin vertical bar
    # uniformity: the two halves of the I bar hold half the mass each (binomial sd ~ 0.008)
    assert abs((i[:, 1] > 0).mean() - 0.5) < 0.03
    assert len(letter_polygons("B")) == 3  # outline + two holes


def test_letters_noise_model():
    b = letters("train", n_points=400, n_rotations=1, source_noise_scale=0.5, seed=1)
    noise = (b.source - b.target).reshape(-1)
    assert abs(noise.std().item() - 0.5) < 0.01 and abs(noise.mean().item()) < 0.01
    # rotations differ between populations of the same letter
    c = letters("train", n_points=400, n_rotations=2, seed=1)
    a0, a1 = c.target[0], c.target[1]  # two rotations of "A"
    assert (a0.mean(0) - a1.mean(0)).norm() > 1e-2 or (a0.std(0) - a1.std(0)).norm() > 1e-2


def test_letters_errors():
    with pytest.raises(ValueError, match="split"):
        letters("training")
    with pytest.raises(ValueError, match="overlap"):
        letters("val", val_letters=("X",), test_letters=("X",))
    with pytest.raises(ValueError, match="capital"):
        letter_polygons("a")


def test_aggregation_velocity_matches_pairwise_sum():
    x = torch.randn(2, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = x[:, :, None] - x[:, None]
    r2 = (r**2).sum(-1, keepdim=True)
    ref = -(r - r / (r2 + 0.05**2)).mean(2)
    torch.testing.assert_close(aggregation_velocity(x, 0.05), ref)


def _energy(x, eps=0.05):
    r2 = ((x[:, :, None] - x[:, None]) ** 2).sum(-1)
    return (r2 / 2 - 0.5 * torch.log(r2 + eps**2)).mean((1, 2)) / 2


def test_aggregation_physics_invariants():
    b = aggregation_populations("train", n_populations=3, n_points=48, horizon=1.0, steps=50)
    x0, x1 = b.source.double(), b.target.double()
    # pairwise antisymmetric forces: the centre of mass does not move
    torch.testing.assert_close(x1.mean(1), x0.mean(1), atol=1e-5, rtol=0)
    # a gradient flow of the interaction energy: the energy decreases
    assert (_energy(x1) < _energy(x0)).all()
    # towards the equilibrium disk of radius 1: second moment -> 1/2 per population
    m0 = ((x0 - x0.mean(1, keepdim=True)) ** 2).sum(-1).mean(1)
    m1 = ((x1 - x1.mean(1, keepdim=True)) ** 2).sum(-1).mean(1)
    assert ((m1 - 0.5).abs() < (m0 - 0.5).abs()).all()


def test_aggregation_time_step_converged():
    """RK4 at the default dt = 0.01 agrees with dt = 0.005 (4th order: error ~ 16x smaller)."""
    x0 = aggregation_populations("val", n_populations=2, n_points=32).source.double()
    a = evolve_aggregation(x0, 1.0, steps=100)
    b = evolve_aggregation(x0, 1.0, steps=200)
    c = evolve_aggregation(x0, 1.0, steps=50)
    e_fine, e_coarse = (a - b).abs().max(), (c - b).abs().max()
    assert e_fine < 1e-6
    assert e_coarse / e_fine > 8  # close to the 2^4 of a 4th-order method


def test_aggregation_deterministic_and_splits_differ():
    a = aggregation_populations("test", n_populations=2, n_points=16, seed=3, steps=10)
    b = aggregation_populations("test", n_populations=2, n_points=16, seed=3, steps=10)
    c = aggregation_populations("train", n_populations=2, n_points=16, seed=3, steps=10)
    assert torch.equal(a.target, b.target) and not torch.allclose(a.source, c.source)
    with pytest.raises(ValueError, match="horizon"):
        aggregation_populations(horizon=0.0)


def test_letters_oracle_draw_is_the_same_distribution():
    """draw=1: same letter and rotation, fresh points. Its target is closer to the draw-0 target
    than the noisy source is, and covariances agree (same rotation) up to sampling error."""
    from sciflow.uq.distances import wasserstein_exact

    kw = dict(n_points=600, n_rotations=2, seed=3)
    a, o = letters("test", **kw), letters("test", draw=1, **kw)
    assert not torch.allclose(a.target, o.target) and torch.equal(a.population_id, o.population_id)
    for i in range(2):
        w_or = wasserstein_exact(a.target[i].double(), o.target[i].double(), p=2)
        w_id = wasserstein_exact(a.source[i].double(), a.target[i].double(), p=2)
        assert w_or < 0.75 * w_id  # 0.24 vs 0.39 at 600 points
        ca, co = torch.cov(a.target[i].T), torch.cov(o.target[i].T)
        assert (ca - co).abs().max() < 0.2 * ca.abs().max()  # sampling error of 600 points
    # the two rotations of Y differ by more than the two draws of one rotation
    c0, c1 = torch.cov(a.target[0].T), torch.cov(a.target[1].T)
    assert (c0 - c1).abs().max() > 2 * (c0 - torch.cov(o.target[0].T)).abs().max()
    with pytest.raises(ValueError, match="draw"):
        letters("test", n_points=10, n_rotations=1, draw=-1)


def test_aggregation_oracle_draw_shares_the_mixture():
    kw = dict(n_populations=3, n_points=400, steps=10, seed=1)
    a, o = aggregation_populations("val", **kw), aggregation_populations("val", draw=1, **kw)
    assert not torch.allclose(a.source, o.source)
    d_same = (a.source.mean(1) - o.source.mean(1)).norm(dim=-1)  # same mixture, fresh particles
    d_other = (a.source.mean(1) - o.source.mean(1).roll(1, 0)).norm(dim=-1)
    assert d_same.max() < 0.2 and d_same.max() < d_other.min()
    torch.testing.assert_close(a.target.mean(1), a.source.mean(1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="draw"):
        aggregation_populations(n_populations=1, n_points=4, draw=-1)
