"""Brownian motion objects: law of increments, additivity, reproducibility, Lévy-area aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.solvers.sde import BrownianIncrements, VirtualBrownianTree

DT = torch.float64
M = 20_000  # samples; the standard error of a variance estimate is var * sqrt(2 / M) ≈ 1 %


def _close_var(x, var, sigmas=5):
    se = var * math.sqrt(2 / x.numel())
    assert abs(float(x.var()) - var) < sigmas * se, f"variance {float(x.var()):.5f}, expected {var:.5f}"


def test_tree_increment_variance_and_independence():
    bm = VirtualBrownianTree(0.0, 1.0, (M,), seed=3, dtype=DT)
    a = bm.increment(0.1, 0.35)
    b = bm.increment(0.35, 0.9)
    _close_var(a, 0.25)
    _close_var(b, 0.55)
    assert abs(float(a.mean())) < 5 * math.sqrt(0.25 / M)
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert abs(corr) < 5 / math.sqrt(M)


def test_tree_additive_and_query_order_free():
    bm = VirtualBrownianTree(0.0, 2.0, (5, 3), seed=11, dtype=DT)
    whole = bm.increment(0.2, 1.7)
    parts = bm.increment(0.2, 0.61) + bm.increment(0.61, 1.3) + bm.increment(1.3, 1.7)
    torch.testing.assert_close(whole, parts, rtol=0, atol=1e-12)
    # a fresh tree with the same seed queried in another order gives the same values
    other = VirtualBrownianTree(0.0, 2.0, (5, 3), seed=11, dtype=DT)
    w = other.evaluate([1.7, 0.2])
    torch.testing.assert_close(w[0] - w[1], whole, rtol=0, atol=1e-12)
    # the stacked grid query agrees with single queries
    inc = bm.increments([0.2, 0.61, 1.3, 1.7])
    torch.testing.assert_close(inc.sum(0), whole, rtol=0, atol=1e-12)


def test_tree_seed_reproducible_and_distinct():
    a = VirtualBrownianTree(0.0, 1.0, (100,), seed=5, dtype=DT).increment(0.0, 0.3)
    b = VirtualBrownianTree(0.0, 1.0, (100,), seed=5, dtype=DT).increment(0.0, 0.3)
    c = VirtualBrownianTree(0.0, 1.0, (100,), seed=6, dtype=DT).increment(0.0, 0.3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_tree_brownian_bridge_covariance():
    # Cov(W(s), W(t)) = min(s, t) for points that sit deep in the tree
    bm = VirtualBrownianTree(0.0, 1.0, (M,), seed=9, dtype=DT)
    ws, wt = bm.evaluate([0.3141, 0.7071])
    cov = float((ws * wt).mean())
    assert abs(cov - 0.3141) < 5 * math.sqrt((0.3141 * 0.7071 + 0.3141**2) / M)


def test_tree_space_time_levy_area_law_and_additivity():
    # I = ∫_s^t (W_u - W_s) du: Var = h³/3, Cov(ΔW, I) = h²/2, at coarse and sub-leaf-free fine scales
    bm = VirtualBrownianTree(0.0, 1.0, (M,), seed=4, dtype=DT)
    for s, t in ((0.1, 0.6), (0.3, 0.3001)):
        h = t - s
        dw, i10 = bm.increment(s, t, levy_area=True)
        _close_var(dw, h)
        _close_var(i10, h**3 / 3)
        cov = float((dw * i10).mean())
        assert abs(cov - h**2 / 2) < 5 * math.sqrt((h * h**3 / 3 + (h**2 / 2) ** 2) / M)
    # I over [a, c] = I[a, b] + I[b, c] + ΔW[a, b] (c - b), exactly
    d1, i1 = bm.increment(0.1, 0.37, levy_area=True)
    d2, i2 = bm.increment(0.37, 0.8, levy_area=True)
    d, i = bm.increment(0.1, 0.8, levy_area=True)
    torch.testing.assert_close(i, i1 + i2 + d1 * 0.43, rtol=0, atol=1e-12)
    torch.testing.assert_close(d, d1 + d2, rtol=0, atol=1e-12)


def test_tree_rejects_out_of_range():
    bm = VirtualBrownianTree(0.0, 1.0, (2,), seed=0)
    with pytest.raises(ValueError, match="covers"):
        bm.increment(0.5, 1.5)
    with pytest.raises(ValueError, match="t0 < t1"):
        VirtualBrownianTree(1.0, 1.0, (2,), seed=0)


def test_increments_coarsen_exactly_with_levy_area_law():
    gen = torch.Generator().manual_seed(0)
    bm = BrownianIncrements.uniform(0.0, 1.0, 64, (M,), generator=gen, dtype=DT, levy_area=True)
    dw, i10 = bm.increments([0.0, 0.25, 1.0], levy_area=True)
    torch.testing.assert_close(dw[0], bm.dw[:16].sum(0), rtol=0, atol=1e-12)
    h = 0.75
    _close_var(dw[1], h)
    _close_var(i10[1], h**3 / 3)  # Var ∫(W_u - W_s) du = h³/3
    cov = float((dw[1] * i10[1]).mean())
    assert abs(cov - h**2 / 2) < 5 * math.sqrt((h * h**3 / 3 + (h**2 / 2) ** 2) / M)


def test_increments_reproducible_and_grid_checked():
    a = BrownianIncrements.uniform(0.0, 1.0, 10, (3,), generator=torch.Generator().manual_seed(2))
    b = BrownianIncrements.uniform(0.0, 1.0, 10, (3,), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.dw, b.dw)
    with pytest.raises(ValueError, match="not on the pre-sampled Brownian grid"):
        a.increment(0.0, 0.55)
    with pytest.raises(ValueError, match="strictly increasing"):
        BrownianIncrements([0.0, 0.5, 0.5, 1.0], (3,))
    with pytest.raises(ValueError, match="levy_area=True"):
        a.increments([0.0, 1.0], levy_area=True)
