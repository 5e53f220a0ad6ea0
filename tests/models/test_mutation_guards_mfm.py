"""Mutation-audit guards for meta flow matching and its GNN (session 11 audit): properties the other
tests left unchecked. Each docstring names the mutants it kills.

Hand evaluations of Atanackovic et al. (ICLR 2025) eq. 12 with stand-in fields, the scale-free
entropic plan of :func:`sinkhorn_plan`, row sampling of :func:`sinkhorn_pairing` against the plan
itself, the GCN stack of Kipf & Welling and the transformer time embedding (Vaswani et al. 2017).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciflow.data.batches import PopulationBatch
from sciflow.models.meta_flow_matching import Config, MetaFlowMatching, sinkhorn_pairing, sinkhorn_plan
from sciflow.models.meta_flow_matching.field import sinusoidal_time_embedding
from sciflow.nn.gnn import GCN, knn_graph

SMALL = dict(knn_k=4, gnn_hidden=8, embedding_dim=8, field_width=16, field_depth=2, time_embedding_dim=8,
             fourier_features=8)


class _Field(nn.Module):
    """``v(t, x) = a x + b`` (no condition): the loss is then a known function of the draws."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, t, x, c):
        return self.a * x + self.b


@pytest.mark.parametrize("a, b", [(0.0, 0.0), (1.0, 0.5)])
def test_flow_matching_loss_is_the_per_point_squared_error_summed_over_dim(a, b):
    """``L = mean_{b,i} Σ_d (v_t(x_t) - (x1 - x0))²`` with ``x_t = (1 - t) x0 + t x1`` and
    ``t ~ U[0, 1]`` per point (replayed from the generator). Kills a mean over ``dim`` (the loss
    divided by ``dim``) and a reversed interpolant ``x_t = t x0 + (1 - t) x1``."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)
    x1 = x0 + torch.randn(2, 7, 3, generator=g, dtype=torch.float64) + 1.0
    model = MetaFlowMatching(Config(dim=3, conditioning="none", **SMALL)).double()
    model.field = _Field(a, b)
    out = model.loss(PopulationBatch(source=x0, target=x1), generator=torch.Generator().manual_seed(4))
    t = torch.rand(2, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)[..., None]
    xt = (1 - t) * x0 + t * x1
    expected = ((a * xt + b - (x1 - x0)) ** 2).sum(-1).mean()
    torch.testing.assert_close(out.total, expected, rtol=1e-12, atol=1e-12)


def test_sinkhorn_plan_is_computed_per_population_at_its_own_scale():
    """``ε`` is relative to each population's own mean squared cost, so a population's plan does
    not depend on which other populations share the batch, nor on a common rescaling of its points.
    Kills ``ε`` relative to the whole batch's mean cost."""
    g = torch.Generator().manual_seed(2)
    a0, a1 = torch.randn(2, 1, 6, 2, generator=g, dtype=torch.float64)
    b0, b1 = torch.randn(2, 1, 6, 2, generator=g, dtype=torch.float64)
    alone = sinkhorn_plan(a0, a1, 0.1, 300)
    both = sinkhorn_plan(torch.cat([a0, 50 * b0]), torch.cat([a1, 50 * b1]), 0.1, 300)
    torch.testing.assert_close(both[:1], alone, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(both[1:], sinkhorn_plan(b0, b1, 0.1, 300), rtol=1e-9, atol=1e-12)


def test_sinkhorn_pairing_draws_each_partner_from_its_row_of_the_plan():
    """``x1_out[b, i] ~ plan[b, i, :] / Σ_j plan[b, i, j]``: on a 3 x 4 (non-square) problem the
    empirical partner frequencies of 3000 independent draws match the normalised rows of the plan.
    Kills sampling from the plan's columns."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 3, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(1, 4, 2, generator=g, dtype=torch.float64)
    plan = sinkhorn_plan(x0, x1, 0.5, 500)[0]
    rows = plan / plan.sum(1, keepdim=True)
    reps = 3000
    out = sinkhorn_pairing(x0.expand(reps, -1, -1), x1.expand(reps, -1, -1), epsilon=0.5, iterations=500,
                           generator=torch.Generator().manual_seed(1))
    idx = (out[:, :, None, :] - x1[:, None, :, :]).abs().sum(-1).argmin(-1)  # (reps, 3): partner index
    freq = torch.stack([torch.bincount(idx[:, i], minlength=4) for i in range(3)]).double() / reps
    assert torch.allclose(rows.sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(freq, rows, rtol=0, atol=0.04)


def test_gcn_applies_relu_between_layers_but_not_after_the_last():
    """``GCN = conv_L ∘ relu ∘ … ∘ relu ∘ conv_1`` (Kipf & Welling's model extended in depth): the
    embedding keeps negative entries. Kills a ReLU after the last layer."""
    torch.manual_seed(0)
    gcn = GCN(2, 8, 5, depth=3).double()
    h = torch.randn(2, 12, 2, dtype=torch.float64)
    nb = knn_graph(h, 3)
    c = gcn.convs
    expected = c[2](torch.relu(c[1](torch.relu(c[0](h, nb)), nb)), nb)
    out = gcn(h, nb)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert (out < 0).any()


def test_time_embedding_frequencies_run_from_one_to_one_over_max_period():
    """``γ(t) = [sin(t w_i), cos(t w_i)]``, ``w_i = P^{-i/(d/2 - 1)}``, ``i = 0 … d/2 - 1``: the first
    frequency is 1 and the last exactly ``1/P``. Kills the exponent ``i/(d/2)``."""
    t = torch.tensor([0.0, 0.3, 1.0, 7.5], dtype=torch.float64)
    dim, period = 10, 10000.0
    w = torch.tensor([period ** (-i / (dim // 2 - 1)) for i in range(dim // 2)], dtype=torch.float64)
    assert w[0] == 1 and math.isclose(float(w[-1]), 1 / period, rel_tol=1e-12)
    expected = torch.cat([torch.sin(t[:, None] * w), torch.cos(t[:, None] * w)], -1)
    torch.testing.assert_close(sinusoidal_time_embedding(t, dim, period), expected, rtol=1e-12, atol=1e-12)
