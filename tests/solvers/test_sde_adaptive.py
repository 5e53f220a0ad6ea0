"""Adaptive SDE stepping on a virtual Brownian tree, and per-sample time grids (float64)."""

import math

import numpy as np
import pytest
import torch

from sciflow.solvers.ode.controller import PIController
from sciflow.solvers.sde import (SRI, Additive, BrownianIncrements, BrownianPath, EulerMaruyama, General, Milstein,
                                 ReversibleHeun, StratonovichHeun, VirtualBrownianTree, sdeint)

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
