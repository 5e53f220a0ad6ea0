"""Adaptive SDE stepping on a virtual Brownian tree, and per-sample time grids (float64)."""

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.ode.controller import PIController
from sciflow.solvers.sde import (SRI, Additive, BrownianIncrements, BrownianPath, EulerMaruyama, General, Milstein,
                                 ReversibleHeun, StratonovichHeun, VirtualBrownianTree, sdeint)
from sciflow.solvers.sde.per_sample import PerSampleBrownianTree

DT = torch.float64
MU, SIG = 1.0, 1.0


def _gbm(solver, tol, tree, y0, save=(0.0, 0.5, 1.0)):
    return sdeint(lambda t, y: MU * y, lambda t, y: SIG * y, y0, list(save), solver=solver, brownian=tree,
                  controller=PIController(rtol=tol, atol=tol), return_stats=True)


def _gbm_exact(solver, y0, w):
    # Itô GBM: y0 exp((μ - σ²/2) t + σ W); the same coefficients read in Stratonovich: y0 exp(μ t + σ W)
    drift = MU - SIG**2 / 2 if solver.calculus == "ito" else MU
    return y0 * torch.exp(drift + SIG * w)


@pytest.mark.parametrize("solver", [Milstein(), StratonovichHeun()])
def test_strong_error_decreases_with_tol_and_matches_fixed_step(solver):
    torch.set_num_threads(1)
    B = 32
    y0 = torch.ones(B, 1, dtype=DT)
    tree = VirtualBrownianTree(0.0, 1.0, (B, 1), seed=3, dtype=DT)
    exact = _gbm_exact(solver, y0, tree.evaluate([1.0])[0])
    tols = [3e-2, 1e-2, 3e-3]
    errs, steps = [], []
    for tol in tols:
        ys, st = _gbm(solver, tol, tree, y0)
        err = (ys[-1] - exact).abs().mean().item()
        n = st["n_accepted"]
        # fixed-step run with the same number of steps on the same Brownian path
        ys_fixed = sdeint(lambda t, y: MU * y, lambda t, y: SIG * y, y0, [0.0, 0.5, 1.0], solver=solver,
                          brownian=tree, dt=1.0 / n)
        err_fixed = (ys_fixed[-1] - exact).abs().mean().item()
        assert err <= 1.6 * err_fixed, (tol, err, err_fixed)
        assert abs(sum(st["step_sizes"]) - 1.0) < 1e-12
        errs.append(err)
        steps.append(n)
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    assert 0.6 < slope < 1.5, (slope, errs)
    assert steps[0] < steps[1] < steps[2]
    # strong order 1 (both methods, commutative noise): error ∝ 1/steps
    order = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert 0.7 < order < 1.4, (order, errs, steps)


def test_adaptive_beats_fixed_steps_on_a_diffusion_spike():
    # Stratonovich dy = 0.5 y dt + σ(t) y ∘ dW with a narrow burst of noise at t = 0.5: adaptive
    # steps concentrate there. Reference: fixed Heun with 2^13 steps on the same tree path (its own
    # error ≈ 7e-4 vs 2^12 steps, well below the errors compared).
    sig = lambda t: 0.1 + 1.5 * torch.exp(-(((t - 0.5) / 0.03) ** 2))
    f, g = (lambda t, y: 0.5 * y), (lambda t, y: sig(t) * y)
    y0 = torch.ones(8, 1, dtype=DT)
    tree = VirtualBrownianTree(0.0, 1.0, (8, 1), seed=2, dtype=DT)
    ref = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=tree, dt=2.0**-13)[-1]
    ys, st = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=tree,
                    controller=PIController(rtol=1e-3, atol=1e-3), return_stats=True)
    attempts = st["n_accepted"] + st["n_rejected"]
    fixed = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=tree, dt=1.0 / attempts)[-1]
    err, err_fixed = (ys[-1] - ref).abs().mean().item(), (fixed - ref).abs().mean().item()
    assert err < 0.4 * err_fixed, (err, err_fixed, attempts)  # measured 3.8e-3 vs 1.7e-2 (165 attempts)
    hs = np.array(st["step_sizes"])
    mid = np.abs(np.cumsum(hs) - 0.5) < 0.05
    assert hs[mid].max() < 0.2 * hs.max()  # small steps in the burst, large ones outside


def test_reproducible_by_seed_and_rejections_reuse_the_path():
    y0 = torch.ones(8, 1, dtype=DT)

    def run(seed):
        return _gbm(Milstein(), 1e-2, VirtualBrownianTree(0.0, 1.0, (8, 1), seed=seed, dtype=DT), y0)

    a, sa = run(11)
    b, sb = run(11)
    c, _ = run(12)
    assert torch.equal(a, b) and sa == sb
    assert not torch.allclose(a, c)
    assert sa["n_rejected"] > 0  # rejections happened, and the result still matches the fixed path:
    tree = VirtualBrownianTree(0.0, 1.0, (8, 1), seed=11, dtype=DT)
    grid = np.concatenate([[0.0], np.cumsum(sa["step_sizes"])]).tolist()
    grid[-1] = 1.0
    ys_fixed = sdeint(lambda t, y: MU * y, lambda t, y: SIG * y, y0, grid, solver=Milstein(), brownian=tree)
    torch.testing.assert_close(ys_fixed[-1], a[-1], rtol=1e-12, atol=1e-12)


def test_gradients_and_generic_embedded_pair():
    # autograd through an adaptive solve equals autograd through the fixed solve on its accepted grid
    mu = torch.tensor(0.7, dtype=DT, requires_grad=True)
    y0 = torch.ones(6, 1, dtype=DT)
    tree = VirtualBrownianTree(0.0, 1.0, (6, 1), seed=9, dtype=DT)
    f, g = (lambda t, y: mu * y), (lambda t, y: 0.8 * y)
    ys, st = sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), brownian=tree,
                    controller=PIController(rtol=1e-2, atol=1e-2), return_stats=True)
    (grad,) = torch.autograd.grad(ys[-1].sum(), mu)
    grid = np.concatenate([[0.0], np.cumsum(st["step_sizes"])]).tolist()
    grid[-1] = 1.0
    (grad_fixed,) = torch.autograd.grad(sdeint(f, g, y0, grid, solver=Milstein(), brownian=tree)[-1].sum(), mu)
    torch.testing.assert_close(grad, grad_fixed, rtol=1e-12, atol=0)
    # SRI (generic pair: SRI minus Euler–Maruyama) is at least as accurate as Milstein at equal tol
    with torch.no_grad():
        exact = y0 * torch.exp(mu - 0.32 + 0.8 * tree.evaluate([1.0])[0])
        err = {}
        for solver in (Milstein(), SRI()):
            out = sdeint(f, g, y0, [0.0, 1.0], solver=solver, brownian=tree,
                         controller=PIController(rtol=1e-2, atol=1e-2))
            err[type(solver).__name__] = (out[-1] - exact).abs().mean().item()
    assert err["SRI"] <= err["Milstein"] < 0.05, err


def test_save_times_hit_exactly():
    # dy = dW (additive): y(t) = y0 + W(t) exactly, whatever the steps; drift sin(t) adds -cos(t) + 1
    save = [0.0, 0.3, 0.3001, 0.7, 1.0]
    tree = VirtualBrownianTree(0.0, 1.0, (4, 2), seed=5, dtype=DT)
    y0 = torch.zeros(4, 2, dtype=DT)
    ys, st = sdeint(lambda t, y: torch.zeros_like(y), lambda t, y: torch.full_like(y, 0.5), y0, save,
                    noise=Additive(), solver=StratonovichHeun(), brownian=tree, dt=0.05,
                    controller=PIController(rtol=1e-3, atol=1e-3), return_stats=True)
    w = torch.stack(tree.evaluate(save))
    torch.testing.assert_close(ys, 0.5 * w, rtol=0, atol=1e-13)
    ends = np.cumsum(st["step_sizes"])
    for s in save[1:]:
        assert np.min(np.abs(ends - s)) < 1e-13


def test_adaptive_refusals():
    y0 = torch.ones(4, 1, dtype=DT)
    f, g = (lambda t, y: y), (lambda t, y: 0.5 * y)
    inc = BrownianIncrements.uniform(0.0, 1.0, 10, (4, 1), dtype=DT)
    with pytest.raises(ValueError, match="VirtualBrownianTree.*BrownianIncrements|BrownianIncrements"):
        sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), brownian=inc, controller=PIController())
    with pytest.raises(ValueError, match="EulerMaruyama"):
        sdeint(f, g, y0, [0.0, 1.0], solver=EulerMaruyama(), controller=PIController())
    with pytest.raises(ValueError, match="ReversibleHeun"):
        sdeint(f, g, y0, [0.0, 1.0], solver=ReversibleHeun(), controller=PIController())
    with pytest.raises(ValueError, match="additive"):
        sdeint(f, lambda t, y: torch.ones_like(y), y0, [0.0, 1.0], noise=Additive(), solver=Milstein(),
               controller=PIController())
    with pytest.raises(RuntimeError, match="max_steps"):
        sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), controller=PIController(rtol=1e-8, atol=1e-8, max_steps=20),
               generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="underflow"):
        sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(),
               controller=PIController(rtol=1e-8, atol=1e-8, dtmin=1e-2, dt0=0.5),
               generator=torch.Generator().manual_seed(0))


def test_default_tree_from_generator_is_reproducible():
    y0 = torch.ones(4, 1, dtype=DT)
    run = lambda: sdeint(lambda t, y: y, lambda t, y: 0.5 * y, y0, [0.0, 1.0], solver=StratonovichHeun(),
                         controller=PIController(rtol=1e-2, atol=1e-2), generator=torch.Generator().manual_seed(4))
    assert torch.equal(run(), run())


# ---------------------------------------------------------------- per-sample time grids


class _SampleAlonePath(BrownianPath):
    """Sample ``b``'s Brownian motion in its own time: ``W_b(t) = Σ √c_k ΔW̃`` from the tree on the
    normalised clock (``s = k + (t - t_k) / c_k`` on save interval ``k``), with ``I_(1,0)`` scaled by
    ``c^{3/2}`` — built independently of the solver's time change."""

    has_levy_area = True

    def __init__(self, tree, b, t_b):
        self.tree, self.b, self.t_b = tree, b, [float(x) for x in t_b]
        self.t0, self.t1 = self.t_b[0], self.t_b[-1]
        self.shape = tree.shape[1:]
        self.dtype, self.device = tree.dtype, tree.device

    def _s(self, t):
        k = max(0, min(len(self.t_b) - 2, int(np.searchsorted(self.t_b, t, side="right")) - 1))
        c = self.t_b[k + 1] - self.t_b[k]
        return k + (t - self.t_b[k]) / c, c

    def increments(self, grid, levy_area=False, time_tol=None):
        grid = [float(x) for x in grid]
        dws, i10s = [], []
        for a, b in zip(grid[:-1], grid[1:]):
            sa, c = self._s(a)
            sb = sa + (b - a) / c
            dw, i10 = self.tree.increment(sa, min(sb, self.tree.t1), levy_area=True)
            dws.append(math.sqrt(c) * dw[self.b])
            i10s.append(c**1.5 * i10[self.b])
        return (torch.stack(dws), torch.stack(i10s)) if levy_area else torch.stack(dws)


def _per_sample_problem():
    t = torch.tensor([[0.0, 0.3, 0.5, 1.2], [0.1, 0.2, 0.9, 1.0], [-0.5, 0.0, 0.05, 0.4]], dtype=DT)
    y0 = torch.tensor([[1.0, 0.5], [0.8, 1.2], [1.5, 0.7]], dtype=DT)
    f = lambda t, y: (torch.sin(3 * t) - 0.5) * y
    return t, y0, f


@pytest.mark.parametrize("solver,noise", [(EulerMaruyama(), None), (Milstein(), None), (StratonovichHeun(), None),
                                          (SRI(), None), (EulerMaruyama(), General(3))])
def test_per_sample_grids_match_solving_each_sample_alone(solver, noise):
    t, y0, f = _per_sample_problem()
    if noise is None:
        g = lambda t, y: 0.4 * (1 + 0.5 * torch.cos(t)) * y
        inc = (3, 2)
    else:
        mix = torch.tensor([[0.3, -0.2, 0.1], [0.1, 0.4, -0.3]], dtype=DT)
        g = lambda t, y: (1 + 0.5 * torch.cos(t)).unsqueeze(-1) * y.unsqueeze(-1) * mix
        inc = (3, 3)
    dt = 0.05
    T = t.shape[1]
    tree = VirtualBrownianTree(0.0, T - 1.0, inc, seed=7, dtype=DT)
    seen = []

    def f_rec(tt, y):
        seen.append(tuple(tt.shape))
        return f(tt, y)

    ys, st = sdeint(f_rec, g, y0, t, noise=noise, solver=solver, dt=dt, brownian=tree, return_stats=True)
    assert ys.shape == (T, 3, 2)
    assert seen[0] == (3, 1)  # each sample sees its own time
    n_sub = np.ceil((t[:, 1:] - t[:, :-1]).amax(0).numpy() / dt - 1e-9).astype(int)
    assert st["n_steps"] == n_sub.sum()
    for b in range(3):
        tb = t[b].tolist()
        fine = [tb[0]]
        for k, n in enumerate(n_sub):
            fine += [tb[k] + j * (tb[k + 1] - tb[k]) / n for j in range(1, n)] + [tb[k + 1]]
        alone = sdeint(f, g, y0[b], fine, noise=noise, solver=solver, brownian=_SampleAlonePath(tree, b, tb))
        save_idx = np.concatenate([[0], np.cumsum(n_sub)])
        torch.testing.assert_close(ys[:, b], alone[save_idx], rtol=1e-10, atol=1e-12)
        # every save time hit: the last step of each interval ends exactly on t[b, k]
        assert np.allclose(np.array(fine)[save_idx], tb, rtol=0, atol=1e-15)


def test_per_sample_default_noise_and_weak_moment():
    # OU dy = -y dt + dW on per-sample horizons: E y(t) = y0 e^{-t}, Var = (1 - e^{-2t}) / 2
    n = 4000
    horizon = torch.linspace(0.2, 2.0, n, dtype=DT)
    t = torch.stack([torch.zeros(n, dtype=DT), horizon], 1)
    y0 = torch.ones(n, 1, dtype=DT)
    ys = sdeint(lambda t, y: -y, lambda t, y: torch.ones_like(y), y0, t, noise=Additive(), solver=StratonovichHeun(),
                dt=0.02, generator=torch.Generator().manual_seed(1))
    resid = ys[-1, :, 0] - torch.exp(-horizon)
    std = ((1 - torch.exp(-2 * horizon)) / 2).sqrt()
    z = resid / std
    assert abs(z.mean().item()) < 4 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 0.1


def test_per_sample_refusals():
    t, y0, f = _per_sample_problem()
    g = lambda t, y: 0.3 * y
    with pytest.raises(ValueError, match="y0 of shape"):
        sdeint(f, g, y0[:2], t, dt=0.1)
    bad = t.clone()
    bad[1, 2] = 0.15
    with pytest.raises(ValueError, match="strictly increasing.*sample \\(1,\\)"):
        sdeint(f, g, y0, bad, dt=0.1)
    with pytest.raises(ValueError, match="fixed steps only"):
        sdeint(f, g, y0, t, solver=Milstein(), controller=PIController())
    with pytest.raises(ValueError, match="ReversibleHeun"):
        sdeint(f, g, y0, t, solver=ReversibleHeun(), dt=0.1)
    nan_t = t.clone()
    nan_t[0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sdeint(f, g, y0, nan_t, dt=0.1)


# ---------------------------------------------------------------- per-trajectory error control


def test_per_sample_tree_law_levy_area_and_reproducibility():
    n = 3000
    tree = PerSampleBrownianTree(0.0, 2.0, (n, 2), seed=4, dtype=DT)
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, generator=g, dtype=DT) * 1.5
    t = s + torch.rand(n, generator=g, dtype=DT) * 0.5
    (ws, ks), (wt, kt) = tree.evaluate_at(s), tree.evaluate_at(t)
    # increments over per-sample intervals: N(0, t - s), independent across elements
    z = (wt - ws) / (t - s).sqrt().unsqueeze(-1)
    assert abs(z.mean().item()) < 4 / math.sqrt(2 * n) and abs(z.var().item() - 1) < 0.08
    assert abs(torch.corrcoef(z.T)[0, 1].item()) < 4 / math.sqrt(n)
    # I_(1,0) = K(t) - K(s) - W(s)(t - s): Var = h^3/3, Cov(ΔW, I) = h^2/2 (Kloeden & Platen 10.4)
    h = (t - s).unsqueeze(-1)
    i10 = kt - ks - ws * h
    assert abs((i10 / h**1.5).var().item() - 1 / 3) < 0.04
    assert abs((i10 * (wt - ws) / h**2).mean().item() - 0.5) < 0.05
    # each sample at its own time equals that sample evaluated with everyone at that time
    for b in (0, 17, n - 1):
        wb, kb = tree.evaluate_at(torch.full((n,), float(t[b]), dtype=DT))
        assert torch.equal(wt[b], wb[b]) and torch.equal(kt[b], kb[b])
    # K is the integral of W: trapezoid rule on a fine grid, for a few samples
    small = PerSampleBrownianTree(0.0, 1.0, (3, 1), seed=9, dtype=DT)
    grid = torch.linspace(0, 1, 513, dtype=DT)
    w = small.increments(grid).cumsum(0)
    trap = (w[-1] / 2 + w[:-1].sum(0)) / 512       # W(0) = 0
    k1 = small.evaluate_at(torch.ones(3, dtype=DT))[1]
    torch.testing.assert_close(trap, k1, rtol=0, atol=4e-3)   # trapezoid error ~ (1/512)^1.5
    # reproducible by seed, different seeds differ; out-of-range queries raise
    again = PerSampleBrownianTree(0.0, 2.0, (n, 2), seed=4, dtype=DT).evaluate_at(t)[0]
    assert torch.equal(again, wt)
    assert not torch.allclose(PerSampleBrownianTree(0.0, 2.0, (n, 2), seed=5, dtype=DT).evaluate_at(t)[0], wt)
    with pytest.raises(ValueError, match="covers"):
        tree.evaluate_at(t + 1.0)


def _gbm_hetero(B):
    """Itô GBM dy = μ y dt + σ_b y dW with σ_b spanning a decade: y = y0 exp((μ - σ²/2) t + σ W)."""
    sig = torch.where(torch.arange(B) % 2 == 0, 0.1, 1.0).to(DT).unsqueeze(-1)
    return (lambda t, y: MU * y), (lambda t, y: sig * y), sig


@pytest.mark.parametrize("solver", [Milstein(), StratonovichHeun(), SRI()], ids=lambda s: type(s).__name__)
def test_per_trajectory_steps_equal_solving_each_sample_on_its_own_grid(solver):
    B = 6
    f, g, sig = _gbm_hetero(B)
    y0 = torch.ones(B, 1, dtype=DT)
    tree = PerSampleBrownianTree(0.0, 1.0, (B, 1), seed=3, dtype=DT)
    ys, st = sdeint(f, g, y0, [0.0, 0.4, 1.0], solver=solver, brownian=tree,
                    controller=PIController(rtol=1e-2, atol=1e-2), return_stats=True)
    assert ys.shape == (3, B, 1) and st["n_accepted"].shape == (B,)
    # quiet samples (σ = 0.1) take far fewer steps than noisy ones (σ = 1): their own step sizes
    n = st["n_accepted"].double()
    assert n[0::2].max() < n[1::2].min() and n[0::2].sum() < 0.6 * n[1::2].sum(), n
    assert int(st["n_rejected"].sum()) > 0
    for b in range(B):
        hs = st["step_sizes"][b]
        assert abs(sum(hs) - 1.0) < 1e-12 and len(hs) == int(st["n_accepted"][b])
        grid = np.concatenate([[0.0], np.cumsum(hs)]).tolist()
        grid[-1] = 1.0
        ends = np.array(grid)
        assert np.min(np.abs(ends - 0.4)) < 1e-13  # the save time is a step end of every sample
        # fixed steps on sample b's accepted grid, same Brownian path: the same numbers
        fixed = sdeint(f, g, y0, grid, solver=solver, brownian=tree)
        torch.testing.assert_close(fixed[-1, b], ys[-1, b], rtol=1e-12, atol=1e-12)


def test_per_trajectory_error_control_strong_error_and_cost():
    """The strong error falls with the tolerance; quiet samples stop paying for noisy ones.

    (Measured, B = 32, Milstein: per-trajectory control needs about half the sample-steps of
    batch-norm control here, at a larger error for the same tol — each sample's error estimate
    rests on one Brownian increment, so it is noisier than a batch RMS; see docs/solvers.md.)"""
    B = 24
    f, g, sig = _gbm_hetero(B)
    y0 = torch.ones(B, 1, dtype=DT)
    tols = (3e-2, 1e-2, 3e-3)
    errs = []
    for tol in tols:
        tree = PerSampleBrownianTree(0.0, 1.0, (B, 1), seed=1, dtype=DT)
        ys, st = sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), brownian=tree,
                        controller=PIController(rtol=tol, atol=tol), return_stats=True)
        w1 = tree.evaluate_at(torch.ones(B, dtype=DT))[0]
        exact = y0 * torch.exp(MU - sig**2 / 2 + sig * w1)
        errs.append((ys[-1] - exact).abs().mean().item())
        if tol == 1e-2:
            work_quiet = int((st["n_accepted"] + st["n_rejected"])[0::2].sum())
    assert errs[0] > errs[1] > errs[2]
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    assert 0.3 < slope < 1.5, (slope, errs)   # measured 0.44 (batch norm on this problem: 0.88)
    # batch-norm control: one step sequence for all, set by the noisy half
    vtree = VirtualBrownianTree(0.0, 1.0, (B, 1), seed=1, dtype=DT)
    _, st = sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), brownian=vtree,
                   controller=PIController(rtol=1e-2, atol=1e-2), return_stats=True)
    work_quiet_bn = (B // 2) * (st["n_accepted"] + st["n_rejected"])
    assert work_quiet < 0.35 * work_quiet_bn, (work_quiet, work_quiet_bn)


def test_per_trajectory_save_times_exact_gradients_and_refusals():
    # dy = 0.5 dW: y_b(t) = 0.5 W_b(t) exactly at every save time, whatever the steps
    save = [0.0, 0.3, 0.3001, 0.7, 1.0]
    tree = PerSampleBrownianTree(0.0, 1.0, (4, 2), seed=5, dtype=DT)
    ys = sdeint(lambda t, y: torch.zeros_like(y), lambda t, y: torch.full_like(y, 0.5), torch.zeros(4, 2, dtype=DT),
                save, noise=Additive(), solver=StratonovichHeun(), brownian=tree, dt=0.05,
                controller=PIController(rtol=1e-3, atol=1e-3))
    w = torch.stack([tree.evaluate_at(torch.full((4,), s, dtype=DT))[0] for s in save])
    torch.testing.assert_close(ys, 0.5 * w, rtol=0, atol=1e-13)
    # fields see each sample's own time (*batch, 1): a time-dependent drift integrates exactly
    ys = sdeint(lambda t, y: torch.cos(t).expand_as(y), lambda t, y: torch.full_like(y, 0.5),
                torch.zeros(4, 2, dtype=DT), save, noise=Additive(), solver=StratonovichHeun(), brownian=tree,
                controller=PIController(rtol=1e-4, atol=1e-4))
    drift = torch.sin(torch.tensor(save, dtype=DT)).reshape(-1, 1, 1)
    assert (ys - 0.5 * w - drift).abs().max() < 1e-4   # measured 3.5e-5 (a shared clock: O(0.1))
    # autograd through the per-trajectory solve = autograd through fixed steps on sample b's grid
    mu = torch.tensor(0.7, dtype=DT, requires_grad=True)
    y0 = torch.ones(3, 1, dtype=DT)
    tr3 = PerSampleBrownianTree(0.0, 1.0, (3, 1), seed=9, dtype=DT)
    f, g = (lambda t, y: mu * y), (lambda t, y: 0.8 * y)
    ys, st = sdeint(f, g, y0, [0.0, 1.0], solver=Milstein(), brownian=tr3,
                    controller=PIController(rtol=1e-2, atol=1e-2), return_stats=True)
    for b in range(3):
        (grad,) = torch.autograd.grad(ys[-1, b].sum(), mu, retain_graph=True)
        grid = np.concatenate([[0.0], np.cumsum(st["step_sizes"][b])]).tolist()
        grid[-1] = 1.0
        (grad_fixed,) = torch.autograd.grad(sdeint(f, g, y0, grid, solver=Milstein(), brownian=tr3)[-1, b].sum(), mu)
        torch.testing.assert_close(grad, grad_fixed, rtol=1e-12, atol=0)
    # refusals name the problem
    y0 = torch.ones(4, 1, dtype=DT)
    with pytest.raises(ValueError, match="shape"):
        sdeint(f, g, torch.ones(5, 1, dtype=DT), [0.0, 1.0], solver=Milstein(), brownian=PerSampleBrownianTree(
            0.0, 1.0, (4, 1), seed=0, dtype=DT), controller=PIController())
    with pytest.raises(ValueError, match="covers"):
        sdeint(f, g, y0, [0.0, 2.0], solver=Milstein(), controller=PIController(),
               brownian=PerSampleBrownianTree(0.0, 1.0, (4, 1), seed=0, dtype=DT))
    with pytest.raises(ValueError, match="batch_ndim"):
        PerSampleBrownianTree(0.0, 1.0, (4, 1), seed=0, batch_ndim=3)
    with pytest.raises(RuntimeError, match="max_steps"):
        sdeint(lambda t, y: y, lambda t, y: 0.5 * y, y0, [0.0, 1.0], solver=Milstein(),
               controller=PIController(rtol=1e-8, atol=1e-8, max_steps=20),
               brownian=PerSampleBrownianTree(0.0, 1.0, (4, 1), seed=0, dtype=DT))


def test_dtmax_caps_adaptive_sde_steps():
    """``PIController(dtmax=...)`` on both adaptive SDE loops: no accepted step longer than the cap
    (the shared clock records its steps), and at least span / dtmax of them per sample."""
    f, g = (lambda t, y: -0.5 * y), (lambda t, y: 0.01 * torch.ones_like(y))
    y0 = torch.ones(4, 1, dtype=DT)
    tree = VirtualBrownianTree(0.0, 1.0, (4, 1), seed=0, dtype=DT)
    _, free = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=tree,
                     controller=PIController(rtol=1e-2, atol=1e-2), return_stats=True)
    _, st = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=tree,
                   controller=PIController(rtol=1e-2, atol=1e-2, dtmax=0.02), return_stats=True)
    assert max(free["step_sizes"]) > 0.1 and max(st["step_sizes"]) <= 0.02 + 1e-12
    ptree = PerSampleBrownianTree(0.0, 1.0, (4, 1), seed=0, dtype=DT)
    _, ps = sdeint(f, g, y0, [0.0, 1.0], solver=StratonovichHeun(), brownian=ptree,
                   controller=PIController(rtol=1e-2, atol=1e-2, dtmax=0.02), return_stats=True)
    assert int(ps["n_accepted"].min()) >= 50


def test_per_sample_gradients_stay_finite_after_a_rejected_step_overflows():
    """dy = -k y^7 dt + 1e-6 dW from y = 10 with a first step of 50: its stages overflow and it is
    rejected. The masked per-sample loop drops it with torch.where, but 0 * inf = nan in the
    drift's backward used to reach dy/dk; the attempt is now re-run for the graph with the
    rejected samples idle. Same path as without autograd; with noise this small the gradient is
    the ODE's, dy/dk = -t y^7 with y(t) = (y0^-6 + 6 k t)^(-1/6)."""
    def run(k):
        tree = PerSampleBrownianTree(0.0, 1.0, (2, 1), seed=4, dtype=DT)
        return sdeint(lambda t, y: -k.unsqueeze(-1) * y ** 7, lambda t, y: 1e-6 * torch.ones_like(y),
                      torch.full((2, 1), 10.0, dtype=DT), [0.0, 1.0], solver=SRI(), brownian=tree, dt=50.0,
                      controller=PIController(rtol=1e-3, atol=1e-5))[-1, :, 0]

    k = torch.tensor([1.0, 0.9], dtype=DT, requires_grad=True)
    y = run(k)
    dk = torch.autograd.grad(y.sum(), k)[0]
    with torch.no_grad():
        assert torch.equal(run(k.detach()), y.detach())
    exact = (1e-6 + 6 * k.detach()) ** (-1 / 6)
    torch.testing.assert_close(y.detach(), exact, rtol=1e-3, atol=0)
    torch.testing.assert_close(dk, -exact ** 7, rtol=1e-2, atol=0)
