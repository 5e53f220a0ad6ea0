"""Interpolation over per-sample irregular times with masks: exactness, scipy agreement, derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from sciflow.solvers import HermiteCubic, LinearInterpolation, NaturalCubicSpline

DT = torch.float64
KINDS = [LinearInterpolation, HermiteCubic, NaturalCubicSpline]


@pytest.fixture(scope="module")
def irregular():
    g = torch.Generator().manual_seed(0)
    B, T, C = 4, 15, 3
    times = torch.sort(torch.rand(B, T, generator=g, dtype=DT) * 10, dim=1).values
    values = torch.randn(B, T, C, generator=g, dtype=DT)
    mask = torch.rand(B, T, C, generator=g) > 0.3
    mask[:, 0, 0] = True
    mask[:, -1, 0] = True
    values = torch.where(mask, values, torch.zeros((), dtype=DT))
    return times, values, mask


def test_natural_spline_matches_scipy(irregular):
    times, values, mask = irregular
    spline = NaturalCubicSpline(times, values, mask)
    q = torch.linspace(0, 10, 97, dtype=DT)
    y, dy = spline.evaluate(q), spline.derivative(q)
    checked = 0
    for b in range(times.shape[0]):
        for c in range(values.shape[2]):
            m = mask[b, :, c].numpy()
            tt, vv = times[b].numpy()[m], values[b, :, c].numpy()[m]
            cs = CubicSpline(tt, vv, bc_type="natural")
            inside = (q.numpy() >= tt[0]) & (q.numpy() <= tt[-1])
            np.testing.assert_allclose(y[b, :, c].numpy()[inside], cs(q.numpy()[inside]), rtol=0, atol=1e-10)
            np.testing.assert_allclose(dy[b, :, c].numpy()[inside], cs(q.numpy()[inside], 1), rtol=0, atol=1e-9)
            checked += int(inside.sum())
    assert checked > 500


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_interpolates_observed_data_exactly(irregular, cls):
    times, values, mask = irregular
    path = cls(times, values, mask)
    at_knots = path.evaluate(times)  # (batch, time) per-sample query times
    assert at_knots.shape == values.shape
    err = torch.where(mask, at_knots - values, torch.zeros((), dtype=DT)).abs().max()
    assert err < 1e-12


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_derivative_matches_finite_differences(irregular, cls):
    times, values, mask = irregular
    path = cls(times, values, mask)
    # points strictly between knots of sample 0 so that the path is smooth there
    q = 0.5 * (times[0, 1:] + times[0, :-1])
    eps = 1e-6
    fd = (path.evaluate(q + eps) - path.evaluate(q - eps)) / (2 * eps)
    d = path.derivative(q)
    sl = torch.ones_like(d, dtype=torch.bool)
    assert (fd - d).abs()[sl].max() < 1e-5


def test_linear_interpolation_values():
    times = torch.tensor([0.0, 1.0, 3.0], dtype=DT)
    values = torch.tensor([[[0.0], [2.0], [0.0]]], dtype=DT)
    path = LinearInterpolation(times, values)
    torch.testing.assert_close(path.evaluate(torch.tensor([0.5, 2.0], dtype=DT))[0, :, 0],
                               torch.tensor([1.0, 1.0], dtype=DT))
    torch.testing.assert_close(path.derivative(torch.tensor([0.5, 2.0], dtype=DT))[0, :, 0],
                               torch.tensor([2.0, -1.0], dtype=DT))


def test_hermite_backward_differences_is_c1_and_causal():
    g = torch.Generator().manual_seed(3)
    times = torch.sort(torch.rand(1, 8, generator=g, dtype=DT) * 5, dim=1).values
    values = torch.randn(1, 8, 2, generator=g, dtype=DT)
    path = HermiteCubic(times, values)
    # slope at interior knot i equals the backward difference, from both sides (C^1)
    i = 4
    bd = (values[0, i] - values[0, i - 1]) / (times[0, i] - times[0, i - 1])
    for s in (-1e-9, 1e-9):
        torch.testing.assert_close(path.derivative(times[0, i] + s)[0], bd, rtol=1e-6, atol=1e-6)
    # causal: changing data after t_{i+1} leaves the path on [t_i, t_{i+1}] unchanged
    changed = values.clone()
    changed[0, i + 2:] += 10.0
    q = torch.linspace(times[0, i].item(), times[0, i + 1].item(), 7, dtype=DT)
    torch.testing.assert_close(HermiteCubic(times, changed).evaluate(q), path.evaluate(q))
    # ...whereas the natural spline is not causal
    spline_changed, spline = NaturalCubicSpline(times, changed), NaturalCubicSpline(times, values)
    assert (spline_changed.evaluate(q) - spline.evaluate(q)).abs().max() > 1e-3


def test_shapes_holds_and_missing_channels():
    times = torch.tensor([[0.0, 1.0, 2.0, 2.0], [0.0, 0.5, 1.5, 3.0]], dtype=DT)  # padding repeats last time
    values = torch.tensor([[[1.0, 5.0], [2.0, 0.0], [3.0, 0.0], [0.0, 0.0]],
                           [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]], dtype=DT)
    mask = torch.tensor([[[1, 1], [1, 0], [1, 0], [0, 0]], [[1, 0], [1, 0], [1, 0], [1, 0]]], dtype=torch.bool)
    path = NaturalCubicSpline(times, values, mask)
    assert path.evaluate(torch.tensor(0.5, dtype=DT)).shape == (2, 2)
    assert path.evaluate(torch.rand(7, dtype=DT)).shape == (2, 7, 2)
    late = path.evaluate(torch.tensor(9.0, dtype=DT))
    torch.testing.assert_close(late[0], torch.tensor([3.0, 5.0], dtype=DT))   # held after last observation
    torch.testing.assert_close(late[1], torch.tensor([1.0, 0.0], dtype=DT))   # fully missing channel -> 0
    assert path.derivative(torch.tensor(9.0, dtype=DT)).abs().max() == 0


def test_gradients_flow_to_values(irregular):
    times, values, mask = irregular
    v = values.clone().requires_grad_(True)
    q = torch.linspace(1, 9, 5, dtype=DT)
    NaturalCubicSpline(times, v, mask).derivative(q).sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    assert (v.grad[~mask] == 0).all()  # unobserved entries do not influence the path


def test_clear_errors():
    t = torch.tensor([0.0, 1.0, 2.0], dtype=DT)
    v = torch.zeros(1, 3, 2, dtype=DT)
    with pytest.raises(ValueError, match="unsorted"):
        NaturalCubicSpline(torch.tensor([0.0, 2.0, 1.0], dtype=DT), v)
    with pytest.raises(ValueError, match="duplicated observation time"):
        NaturalCubicSpline(torch.tensor([0.0, 1.0, 1.0], dtype=DT), v)
    with pytest.raises(ValueError, match="shape mismatch: mask"):
        LinearInterpolation(t, v, torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape mismatch: times"):
        HermiteCubic(torch.zeros(4, dtype=DT), v)
    bad = v.clone()
    bad[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite at sample 0, time index 1, channel 0"):
        NaturalCubicSpline(t, bad)
    with pytest.raises(ValueError, match="values must be"):
        NaturalCubicSpline(t, torch.zeros(3, 2, dtype=DT))
