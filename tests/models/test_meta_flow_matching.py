"""Meta flow matching: exact loss values, gradients, training, transport, couplings, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.data.batches import PopulationBatch
from sciflow.models.base import LossOutput
from sciflow.models.meta_flow_matching import (Config, MetaFlowMatching, exact_ot_pairing,
                                               sinkhorn_pairing, sinkhorn_plan)
from sciflow.uq.distances import wasserstein_exact

SMALL = dict(knn_k=8, gnn_hidden=16, embedding_dim=16, field_width=32, field_depth=2,
             time_embedding_dim=16, fourier_features=16)


def _batch(B=3, n=40, dim=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, n, dim, generator=g, dtype=dtype)
    x1 = x0 + 0.3 * torch.randn(B, n, dim, generator=g, dtype=dtype)
    return PopulationBatch(source=x0, target=x1, population_id=torch.arange(B))


class _LinearPathField(nn.Module):
    """The exact velocity of straight paths x_t = ((1-t) I + t A_b) x0 of population b:
    u = (A_b - I) x0 = (A_b - I) ((1-t) I + t A_b)^{-1} x_t."""

    def __init__(self, A):
        super().__init__()
        self.A = A

    def forward(self, t, x, c):
        eye = torch.eye(x.shape[-1], dtype=x.dtype)
        M = (1 - t)[..., None, None] * eye + t[..., None, None] * self.A[:, None]  # (B, n, d, d)
        x0 = torch.linalg.solve(M, x.unsqueeze(-1)).squeeze(-1)
        return ((self.A[:, None] - eye) @ x0.unsqueeze(-1)).squeeze(-1)


class _ZeroField(nn.Module):
    def forward(self, t, x, c):
        return torch.zeros_like(x)


@pytest.mark.parametrize("conditioning", ["population", "none", "population_id"])
def test_loss_is_zero_for_the_exact_straight_path_field(conditioning):
    g = torch.Generator().manual_seed(1)
    B, n = 3, 50
    A = torch.eye(2, dtype=torch.float64) + 0.3 * torch.randn(B, 2, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, n, 2, generator=g, dtype=torch.float64)
    x1 = (A[:, None] @ x0.unsqueeze(-1)).squeeze(-1)
    batch = PopulationBatch(source=x0, target=x1, population_id=torch.arange(B))
    model = MetaFlowMatching(Config(conditioning=conditioning, num_populations=B, **SMALL)).double()
    model.field = _LinearPathField(A)
    out = model.loss(batch, generator=g)
    assert isinstance(out, LossOutput)
    assert out.total.item() < 1e-20
    # a zero field pays exactly the mean squared path speed
    model.field = _ZeroField()
    expected = ((x1 - x0) ** 2).sum(-1).mean()
    torch.testing.assert_close(model.loss(batch, generator=g).total, expected)


@pytest.mark.parametrize("conditioning", ["population", "none", "population_id"])
def test_every_parameter_gets_gradient(conditioning):
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(conditioning=conditioning, num_populations=3, **SMALL))
    model.loss(_batch()).total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if conditioning == "population":
        assert any(n.startswith("conditioner.gcn") for n, _ in model.named_parameters())


def test_cgfm_unseen_population_ids_never_receive_gradient():
    """Why CGFM cannot generalise: the one-hot columns of held-out ids stay at initialisation."""
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(conditioning="population_id", num_populations=5, **SMALL))
    model.loss(_batch(B=3)).total.backward()  # ids 0, 1, 2 only
    w = model.field.mlp.net[0].weight.grad  # (width, inputs); condition comes first
    assert w[:, :3].abs().sum(0).min() > 0
    assert torch.equal(w[:, 3:5], torch.zeros_like(w[:, 3:5]))


def test_population_embedding_is_permutation_invariant():
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(**SMALL)).double()
    b = _batch(dtype=torch.float64)
    perm = torch.randperm(b.source.shape[1], generator=torch.Generator().manual_seed(3))
    bp = PopulationBatch(source=b.source[:, perm], target=b.target[:, perm])
    torch.testing.assert_close(model.condition(b), model.condition(bp))
    torch.testing.assert_close(model.condition(b).norm(dim=-1), torch.ones(3, dtype=torch.float64))


def _two_populations(n=64, seed=0):
    """Same source blob, two different targets: population 0 moves right and contracts,
    population 1 moves up. Only the source shape tells them apart (stretched along x vs y)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, n, 2, generator=g)
    x0 = z * torch.tensor([[[1.0, 0.3]], [[0.3, 1.0]]])
    x1 = torch.stack([0.5 * x0[0] + torch.tensor([2.0, 0.0]), x0[1] + torch.tensor([0.0, 2.0])])
    return PopulationBatch(source=x0, target=x1, population_id=torch.arange(2))


def test_training_decreases_loss_and_moves_source_toward_target():
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(solver="rk4", nfe=40, **SMALL))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(250):
        batch = _two_populations(seed=step % 8)
        out = model.loss(batch, generator=g)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(out.total.item())
    assert sum(losses[-20:]) / 20 < 0.2 * sum(losses[:20]) / 20
    test = _two_populations(n=128, seed=100)  # fresh draws
    pred = model.sample(test, 2)
    assert pred.shape == (2, 2, 128, 2)
    for b in range(2):
        w_src = wasserstein_exact(test.source[b], test.target[b], p=2)
        w_pred = wasserstein_exact(pred[0, b], test.target[b], p=2)
        assert w_pred < 0.25 * w_src, (b, float(w_pred), float(w_src))


def test_fixed_step_and_adaptive_transport_agree():
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(**SMALL)).double()
    b = _batch(dtype=torch.float64)
    x_ad, st_ad = model.transport(b, solver="dopri5", rtol=1e-8, atol=1e-8)
    x_rk, st_rk = model.transport(b, solver="rk4", nfe=400)
    x_eu, _ = model.transport(b, solver="euler", nfe=400)
    assert st_rk["nfe"] <= 400 and st_ad["nfe"] > 0
    err_rk, err_eu = (x_rk - x_ad).abs().max(), (x_eu - x_ad).abs().max()
    assert err_rk < 1e-6 < err_eu
    # trajectory output at requested times starts at the source
    xs, _ = model.transport(b, solver="rk4", nfe=40, times=torch.linspace(0, 1, 3))
    assert xs.shape == (3, 3, 40, 2) and torch.equal(xs[0], b.source)


def test_transport_with_a_given_condition():
    """``condition=`` replaces the embedding: its own embedding reproduces the default, another
    population's changes the prediction (the shuffled-embedding ablation), a bad shape is named."""
    torch.manual_seed(0)
    model = MetaFlowMatching(Config(solver="rk4", nfe=8, **SMALL)).double()
    b = _batch(dtype=torch.float64)
    x, _ = model.transport(b)
    c = model.condition(b)
    torch.testing.assert_close(model.transport(b, condition=c)[0], x, rtol=0, atol=0)
    x_sh, _ = model.transport(b, condition=c[[1, 2, 0]])
    assert (x_sh - x).abs().max() > 1e-6
    with pytest.raises(ValueError, match="condition must be"):
        model.transport(b, condition=c[:, :3])


def test_exact_ot_pairing_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 30, 2, generator=g, dtype=torch.float64)
    perm = torch.randperm(30, generator=g)
    x1 = x0[:, perm] + 1e-3 * torch.randn(2, 30, 2, generator=g, dtype=torch.float64)
    paired = exact_ot_pairing(x0, x1)
    assert (paired - x0).abs().max() < 1e-2
    assert sorted(paired[0, :, 0].tolist()) == sorted(x1[0, :, 0].tolist())


def test_sinkhorn_plan_marginals_and_small_epsilon_limit():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 25, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(2, 25, 2, generator=g, dtype=torch.float64) + 1.0
    plan = sinkhorn_plan(x0, x1, epsilon=0.05, iterations=300)
    torch.testing.assert_close(plan.sum(2), torch.full((2, 25), 1 / 25, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((2, 25), 1 / 25, dtype=torch.float64), atol=1e-9, rtol=0)
    # the entropic cost approaches the exact OT cost as epsilon -> 0, and never undercuts it
    cost = ((x0[:, :, None] - x1[:, None]) ** 2).sum(-1)
    exact = ((x0 - exact_ot_pairing(x0, x1)) ** 2).sum(-1).mean(1)
    ent = (plan * cost).sum((1, 2))
    sharp = (sinkhorn_plan(x0, x1, epsilon=0.002, iterations=2000) * cost).sum((1, 2))
    assert (ent >= exact - 1e-9).all() and ((sharp - exact) < 0.25 * (ent - exact) + 1e-6).all()
    paired = sinkhorn_pairing(x0, x1, epsilon=0.002, iterations=2000, generator=g)
    assert paired.shape == x1.shape


@pytest.mark.parametrize("coupling", ["exact", "sinkhorn"])
def test_ot_coupling_in_loss_lowers_path_cost(coupling):
    torch.manual_seed(0)
    b = _batch(n=30)
    shuffled = PopulationBatch(source=b.source, target=b.target[:, torch.randperm(30)])
    model = MetaFlowMatching(Config(coupling=coupling, sinkhorn_epsilon=0.01,
                                    sinkhorn_iterations=300, **SMALL))
    model.field = _ZeroField()  # loss = mean squared path length
    ot = model.loss(shuffled, generator=torch.Generator().manual_seed(0)).total
    plain = ((shuffled.target - shuffled.source) ** 2).sum(-1).mean()
    assert ot < 0.5 * plain


def test_clear_errors():
    model = MetaFlowMatching(Config(**SMALL))
    with pytest.raises(ValueError, match="dim 3"):
        model.loss(_batch(dim=3))
    with pytest.raises(ValueError, match="needs PopulationBatch.target"):
        model.loss(PopulationBatch(source=torch.randn(2, 10, 2)))
    with pytest.raises(ValueError, match="must match source"):
        model.loss(PopulationBatch(source=torch.randn(2, 10, 2), target=torch.randn(2, 12, 2)))
    with pytest.raises(TypeError, match="PopulationBatch"):
        model.loss(torch.randn(2, 10, 2))
    with pytest.raises(ValueError, match=">= 2 points"):
        model.sample(PopulationBatch(source=torch.randn(2, 1, 2)))
    cgfm = MetaFlowMatching(Config(conditioning="population_id", num_populations=2, **SMALL))
    with pytest.raises(ValueError, match="population_id"):
        cgfm.loss(PopulationBatch(source=torch.randn(2, 10, 2), target=torch.randn(2, 10, 2)))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cgfm.loss(_batch(B=3))
    with pytest.raises(ValueError, match="conditioning"):
        Config(conditioning="gnn")
    with pytest.raises(ValueError, match="num_populations"):
        Config(conditioning="population_id")
    with pytest.raises(ValueError, match="solver"):
        Config(solver="rk45")


@pytest.mark.parametrize("name", ["mfm_letters.yaml", "mfm_aggregation.yaml"])
def test_packaged_configs_build_all_three_methods(name):
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "sciflow" / "configs" / name
    section = yaml.safe_load(path.read_text())["model"]
    for conditioning in ("population", "none", "population_id"):
        cfg = Config(**section, conditioning=conditioning, num_populations=4)
        model = MetaFlowMatching(cfg)
        out = model.loss(_batch(B=2, n=24))
        assert torch.isfinite(out.total)
    assert MetaFlowMatching.config_class is Config


def test_docs_results_tables_are_the_committed_json():
    """The docs page quotes the tables that ``benchmarks/_mfm.py`` generates from the results."""
    import json
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "benchmarks"))
    try:
        from _mfm import markdown_tables
    finally:
        sys.path.remove(str(repo / "benchmarks"))
    page = (repo / "docs" / "models" / "meta_flow_matching.md").read_text()
    for name in ("mfm_letters", "mfm_letters_scale4", "mfm_aggregation"):
        doc = json.loads((repo / "benchmarks" / "results" / f"{name}.json").read_text())
        assert markdown_tables(doc) in page, name
