"""Causal-PINN problem set-ups against the paper's official settings, the NS reference, and the
training loop's stopping rules."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.data.pdes.kuramoto_sivashinsky import REGIMES
from sciflow.models.causal_pinn import CausalPINN, Config, train
from sciflow.models.causal_pinn.evaluate import navier_stokes_reference, reference
from sciflow.models.causal_pinn.problems import (NS_MODES, fourier_mode_ic, kuramoto_sivashinsky,
                                                 navier_stokes)


# ------------------------------------------------------------------ Kuramoto–Sivashinsky set-up
def test_ks_regimes_match_official_code() -> None:
    # KS/regular_KS.py: u_t + 5 u u_x + 0.5 u_xx + 0.005 u_xxxx on x in [-1, 1] (L = 2),
    # ks_simple.mat: u0 = -sin(pi x); KS/chaotic_KS.py: 100/16, 100/16^2, 100/16^4 on [0, 2 pi],
    # ks_chaotic.mat: u0 = cos x (1 + sin x)
    reg, cha = kuramoto_sivashinsky("regular"), kuramoto_sivashinsky("chaotic")
    assert reg.space_bounds == ((-1.0, 1.0),) and reg.t_span == (0.0, 1.0)
    assert cha.space_bounds == ((0.0, 2 * math.pi),)
    assert {k: reg.parameters[k] for k in ("alpha", "beta", "gamma")} == {"alpha": 5.0, "beta": 0.5, "gamma": 0.005}
    assert cha.parameters["gamma"] == pytest.approx(100 / 16 ** 4, rel=1e-15)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    assert torch.allclose(reg.initial_condition(x), -torch.sin(math.pi * x), atol=0)
    y = torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64)[:, None]
    assert torch.allclose(cha.initial_condition(y), torch.cos(y) * (1 + torch.sin(y)), atol=0)
    assert set(REGIMES) == {"regular", "chaotic"}


def test_ks_regular_reference_on_its_domain() -> None:
    p = kuramoto_sivashinsky("regular", t_final=0.05)
    ref = reference(p, nx=64, nt=6)
    x = ref.space[0]
    assert x[0] == -1.0 and x[-1] < 1.0 and torch.allclose(x[1] - x[0], torch.tensor(2 / 64, dtype=x.dtype))
    assert torch.allclose(ref.values[0, :, 0], -torch.sin(math.pi * x), atol=1e-12)
    # mean conserved; the solution moves (the regular regime is not a steady state)
    assert ref.values[:, :, 0].mean(1).abs().max() < 1e-12
    assert (ref.values[-1] - ref.values[0]).abs().max() > 1e-2
    # the PINN network gets the exact period-2 embedding
    net = CausalPINN(Config(problem="kuramoto_sivashinsky", width=8, depth=1, n_interior=64), p).net
    pts = torch.tensor([[0.01, -0.7], [0.01, 1.3]])
    out = net(pts)
    assert torch.allclose(out[0], out[1], atol=1e-6)


# ------------------------------------------------------------------------ Navier–Stokes modes IC
def test_fourier_mode_ic_is_consistent_and_divergence_free() -> None:
    ic = fourier_mode_ic(NS_MODES)
    p = (2 * math.pi * torch.rand(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    p.requires_grad_(True)
    u, v, w = ic(p).unbind(1)
    gu = torch.autograd.grad(u.sum(), p, create_graph=True)[0]
    gv = torch.autograd.grad(v.sum(), p, create_graph=True)[0]
    assert (gu[:, 0] + gv[:, 1]).abs().max() < 1e-12          # u_x + v_y = 0
    assert (w - (gv[:, 0] - gu[:, 1])).abs().max() < 1e-12    # w = v_x - u_y
    with pytest.raises(ValueError, match="0, 0"):
        fourier_mode_ic(((1.0, 0, 0, 0.0),))


def test_navier_stokes_reference_starts_at_ic_and_matches_taylor_green() -> None:
    p = navier_stokes(modes=NS_MODES, t_final=0.2)
    ref = navier_stokes_reference(p, n=32, nt=3)
    pts = ref.points()[: 32 * 32, 1:]
    assert torch.allclose(ref.values[0].reshape(-1, 3), p.initial_condition(pts), atol=1e-12)
    # Taylor–Green alone: the spectral reference is the exact exp(-2 nu t) decay
    tg = navier_stokes(modes=((2.0, 1, 1, 0.0),), t_final=0.5, nu=0.05)
    r = navier_stokes_reference(tg, n=16, nt=3)
    assert torch.allclose(r.values[-1], r.values[0] * math.exp(-2 * 0.05 * 0.5), atol=1e-9)


# ------------------------------------------------------------------------------- training loop
def test_callback_stops_training_and_cpu_time_is_logged() -> None:
    cfg = Config(problem="allen_cahn", width=8, depth=1, steps=50, n_interior=64, n_chunks=8,
                 n_initial=16, check_every=5, balance=False)
    model = CausalPINN(cfg)
    hist = train(model, callback=lambda step, m, h: step >= 10)
    assert hist.step == [0, 5, 10]
    assert len(hist.cpu_s) == 3 and all(b >= a for a, b in zip(hist.cpu_s, hist.cpu_s[1:]))
    hist = train(CausalPINN(cfg), time_budget_s=0.0)  # budget in CPU seconds: stops at the first log
    assert hist.step == [0]
