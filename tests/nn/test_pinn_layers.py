"""Modified MLP, Fourier features, periodic embeddings, random weight factorisation."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.nn import FactorizedLinear, FourierFeatures, MLP, ModifiedMLP, PeriodicEmbedding
from sciflow.nn.factorized import dense


def test_periodic_embedding_makes_network_exactly_periodic() -> None:
    g = torch.Generator().manual_seed(0)
    emb = PeriodicEmbedding(3, axes=[1, 2], periods=[2.0, 2 * math.pi], n_harmonics=3)
    net = torch.nn.Sequential(emb, ModifiedMLP(emb.out_features, 2, 32, 3, generator=g)).double()
    p = torch.rand(64, 3, generator=g, dtype=torch.float64)
    shifted = p + torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64) * torch.randint(-3, 4, (64, 1), generator=g)
    shifted2 = p + torch.tensor([0.0, 0.0, 2 * math.pi], dtype=torch.float64)
    ref = net(p)
    assert torch.allclose(net(shifted), ref, atol=1e-12, rtol=0)
    assert torch.allclose(net(shifted2), ref, atol=1e-12, rtol=0)
    # and not periodic in t (the passthrough axis)
    assert not torch.allclose(net(p + torch.tensor([2.0, 0, 0], dtype=torch.float64)), ref, atol=1e-3)


def test_periodic_embedding_features() -> None:
    emb = PeriodicEmbedding(2, axes=[1], periods=[2.0], n_harmonics=2)
    x = torch.tensor([[0.3, 0.25]])
    out = emb(x)
    w = math.pi
    expect = torch.tensor([[0.3, 1.0, math.cos(w * 0.25), math.cos(2 * w * 0.25),
                            math.sin(w * 0.25), math.sin(2 * w * 0.25)]])
    assert out.shape == (1, emb.out_features) == (1, 6)
    assert torch.allclose(out, expect, atol=1e-6)
    with pytest.raises(ValueError, match="period"):
        PeriodicEmbedding(2, axes=[1], periods=[0.0])
    with pytest.raises(ValueError, match="expects 2 features"):
        emb(torch.zeros(3, 5))


def test_fourier_features_shape_statistics_and_trainability() -> None:
    g = torch.Generator().manual_seed(1)
    ff = FourierFeatures(2, 4000, scale=3.0, generator=g)
    assert ff(torch.zeros(5, 2)).shape == (5, 8000)
    assert abs(ff.B.std().item() - 3.0) < 0.1 and abs(ff.B.mean().item()) < 0.1
    assert "B" in dict(ff.named_buffers()) and not list(ff.parameters())
    tr = FourierFeatures(2, 8, trainable=True, generator=g)
    tr(torch.rand(4, 2)).sum().backward()
    assert tr.B.grad is not None and tr.B.grad.abs().sum() > 0
    x = torch.rand(3, 2)
    z = x @ ff.B.T
    assert torch.allclose(ff(x), torch.cat([z.cos(), z.sin()], -1))


@pytest.mark.parametrize("factorized", [False, True])
def test_glorot_init_statistics(factorized: bool) -> None:
    g = torch.Generator().manual_seed(2)
    layer = dense(300, 500, factorized=factorized, generator=g)
    std = math.sqrt(2.0 / 800)
    w = layer.weight.detach()
    assert abs(w.std().item() / std - 1) < 0.02
    assert abs(w.mean().item()) < 0.05 * std
    assert torch.count_nonzero(layer.bias) == 0


def test_factorized_linear_is_exp_s_times_v() -> None:
    g = torch.Generator().manual_seed(3)
    lay = FactorizedLinear(4, 6, mean=1.0, std=0.1, generator=g)
    assert lay.s.shape == (6,) and lay.v.shape == (6, 4)
    assert abs(lay.s.mean().item() - 1.0) < 0.15
    x = torch.rand(5, 4)
    expect = x @ (torch.exp(lay.s)[:, None] * lay.v).T + lay.bias
    assert torch.allclose(lay(x), expect)
    lay(x).sum().backward()
    assert lay.s.grad.abs().sum() > 0 and lay.v.grad.abs().sum() > 0


def test_modified_mlp_gating_matches_formula_and_shapes() -> None:
    g = torch.Generator().manual_seed(4)
    net = ModifiedMLP(3, 2, width=16, depth=2, generator=g).double()
    x = torch.rand(7, 3, dtype=torch.float64)
    u = torch.tanh(net.encoder_u(x))
    v = torch.tanh(net.encoder_v(x))
    h = x
    for lay in net.hidden:
        z = torch.tanh(lay(h))
        h = z * u + (1 - z) * v
    assert torch.allclose(net(x), net.output(h))
    assert net(torch.rand(2, 5, 3, dtype=torch.float64)).shape == (2, 5, 2)
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(ValueError, match="depth"):
        ModifiedMLP(3, 2, depth=0)


def test_mlp_still_importable_alongside() -> None:
    assert MLP(2, 1)(torch.zeros(1, 2)).shape == (1, 1)
