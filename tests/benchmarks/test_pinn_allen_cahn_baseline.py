"""The Allen–Cahn benchmark's ``raissi`` baseline builds the network and loss it claims: a plain
tanh MLP without embeddings, soft periodic BC + IC losses with unit weights, no causal weighting
(equivalently: causal weights all 1); ``causal_mlp`` differs from it only by the causal weights."""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import pinn_allen_cahn as bench  # noqa: E402

from sciflow.models.causal_pinn import CausalPINN, Config  # noqa: E402
from sciflow.nn.mlp import MLP  # noqa: E402

# the cpu scale's points / optimiser with a small network so that the test is fast
BASE = replace(bench.SCALES["cpu"], n_interior=256, n_chunks=32, n_initial=64, n_boundary=64)


def _small(cfg: Config) -> Config:
    return replace(cfg, width=16, depth=2)


def _batch(model: CausalPINN, seed: int = 0):
    c = model.cfg
    return model.problem.sample(c.n_interior, c.n_initial, c.n_boundary,
                                generator=torch.Generator().manual_seed(seed))


def _diff(a: Config, b: Config) -> set[str]:
    da, db = asdict(a), asdict(b)
    return {k for k in da if da[k] != db[k]}


def test_raissi_network_is_a_plain_tanh_mlp_without_embeddings() -> None:
    cfg = bench.mode_config(BASE, "raissi")
    assert (cfg.architecture, cfg.width, cfg.depth) == ("mlp", bench.RAISSI_WIDTH, bench.RAISSI_DEPTH)
    assert not cfg.causal and not cfg.balance and cfg.fourier_features == 0
    assert (cfg.lambda_ic, cfg.lambda_bc, cfg.lambda_res) == (1.0, 1.0, 1.0)
    model = CausalPINN(cfg)
    assert len(model.net.embedding) == 0  # no periodic embedding, no Fourier features
    assert isinstance(model.net.trunk, MLP)
    assert model.net.trunk.net[0].in_features == 2  # raw (t, x)
    assert model.periodic_loss_axes == ((1, -1.0, 1.0),)
    # the same points and optimiser as the scale's causal run
    keep = {"steps", "lr", "decay_rate", "decay_steps", "n_interior", "n_initial", "n_boundary",
            "n_chunks", "epsilon", "seed", "dtype", "problem"}
    assert not keep & _diff(cfg, bench.mode_config(BASE, "causal"))
    # the paired runs differ only in the causal weights
    assert _diff(cfg, bench.mode_config(BASE, "causal_mlp")) == {"causal"}
    assert _diff(bench.mode_config(BASE, "causal"), bench.mode_config(BASE, "plain")) == {"causal"}
    assert _diff(cfg, bench.mode_config(BASE, "raissi_balanced")) == {"balance"}
    with pytest.raises(ValueError, match="unknown run mode"):
        bench.mode_config(BASE, "nope")


def test_raissi_loss_is_ic_plus_periodic_bc_plus_mean_residual() -> None:
    model = CausalPINN(_small(bench.mode_config(BASE, "raissi")))
    batch = _batch(model)
    out = model.loss(batch)
    with torch.no_grad():
        l_ic = (model.net(batch.initial) - batch.initial_values).pow(2).mean()
    r2 = model.residual(batch.interior).pow(2).sum(1).detach()
    l_bc = model.periodic_bc_loss(batch.interior).detach()
    assert float(l_bc) > 0 and float(l_ic) > 0
    torch.testing.assert_close(out.total.detach(), l_ic + l_bc + r2.mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.terms["bc"], l_bc)
    assert model.last_weights is None and "w_min" not in out.terms
    # every term carries gradient to the network
    ic, bc, res = model.loss_parts()
    for term in (ic, bc, res):
        g = torch.autograd.grad(term, list(model.parameters()), retain_graph=True, allow_unused=True)
        assert sum(float(x.abs().sum()) for x in g if x is not None) > 0


def test_raissi_loss_equals_causal_loss_with_all_weights_one() -> None:
    """eps = 0 makes every causal weight exp(0) = 1: the causal loss then *is* the plain one."""
    plain = CausalPINN(_small(bench.mode_config(BASE, "raissi")))
    causal = CausalPINN(_small(bench.mode_config(BASE, "causal_mlp")))
    causal.load_state_dict(plain.state_dict())
    batch = _batch(plain, seed=3)
    causal.epsilon = 0.0
    a, b = plain.loss(batch).total, causal.loss(batch).total
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert torch.equal(causal.last_weights, torch.ones_like(causal.last_weights))
    causal.epsilon = 1.0  # and the causal run does weight (so the comparison can fail)
    assert float(causal.loss(batch).total.detach()) < float(a.detach())
    assert float(causal.last_weights.min()) < 1.0


class _Field(nn.Module):
    """u(t, x) = f(x) + t, a fixed function for exact periodic-loss values."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, p):
        return self.f(p[:, 1:2]) + p[:, :1] + 0 * self.dummy


@pytest.mark.parametrize("f, expected", [
    (lambda x: x, 4.0),                                   # u jumps by 2, u_x continuous
    (lambda x: x ** 2, 16.0),                             # u continuous, u_x jumps -2 -> 2
    (lambda x: torch.sin(torch.pi * x), 0.0),             # periodic: no penalty
    (lambda x: x ** 2 * torch.cos(torch.pi * x), 16.0),   # the AC initial state: u_x = -2 vs 2
])
def test_periodic_bc_loss_exact_values(f, expected) -> None:
    cfg = replace(_small(bench.mode_config(BASE, "raissi")), derivative_engine="autograd",
                  dtype="float64")
    model = CausalPINN(cfg)
    model.net = _Field(f).double()
    pts = model.problem.sample(256, generator=torch.Generator().manual_seed(1), dtype=torch.float64).interior
    torch.testing.assert_close(float(model.periodic_bc_loss(pts).detach()), expected, rtol=1e-9, atol=1e-9)


def test_periodic_bc_loss_option_is_validated() -> None:
    with pytest.raises(ValueError, match="periodic_bc_loss needs periodic_embedding=False"):
        Config(problem="allen_cahn", periodic_bc_loss=True)
    with pytest.raises(ValueError, match="periodic_bc_loss=True"):
        CausalPINN(Config(problem="allen_cahn", periodic_embedding=False, width=8, depth=1,
                          n_interior=64, n_chunks=8))
