r"""The No-U-Turn Sampler (Hoffman & Gelman 2014, Alg. 3 with the dual-averaging statistics of
Alg. 6) over network weights, reusing :class:`~sciflow.uq.hmc.HMC`'s target, warm-up (dual
averaging + windowed diagonal or dense mass adaptation), diagnostics (weight space in the result,
function space with :meth:`~sciflow.uq.hmc.HMC.function_diagnostics`, the ones to read for a
network) and posterior predictive.

NUTS removes the trajectory-length parameter: each transition doubles a leapfrog trajectory
forwards or backwards at random until the ends start to turn back,
:math:`(\theta^+-\theta^-)\cdot M^{-1}r^- < 0` or :math:`(\theta^+-\theta^-)\cdot M^{-1}r^+ < 0`
(the paper's criterion with the velocity :math:`M^{-1}r` for a mass matrix :math:`M`), or until ``max_tree_depth``
doublings, and samples a state from the trajectory with the slice variable :math:`u`. The
adaptation statistic for dual averaging is the mean acceptance probability over the tree.

A trajectory stopped by ``max_tree_depth`` rather than by a U-turn is cut short: after ``run``,
``max_depth_fraction`` is the share of post-warm-up transitions that reached the limit, and any
such transition gives a ``RuntimeWarning`` (Stan's "maximum treedepth" message: an efficiency
problem, typically scales or correlations in the posterior that the mass matrix does not even out;
a ``mass_matrix="dense"`` run may need far shorter trees).

Deviation from :class:`HMC`: the tree is built per chain with Python recursion (its shape is
data dependent), so chains run one after another and each leapfrog step synchronises with the
host; use it for small networks and for validating :class:`HMC` settings.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from sciflow.uq._mass import Mass
from sciflow.uq.hmc import HMC

_DELTA_MAX = 1000.0


class NUTS(HMC):
    """NUTS with the same constructor as :class:`HMC`; ``run(..., max_tree_depth=10)``
    (``n_leapfrog`` is ignored and ``length_jitter`` refused; ``step_jitter`` defaults to 0, as in
    Stan's NUTS: the trajectory length adapts itself, so there are no periodic orbits to break).
    ``tree_depths`` of the last run (warm-up included, chain after chain per transition) and
    ``max_depth_fraction`` are kept for inspection."""

    max_tree_depth: int = 10
    max_depth_fraction: float = math.nan

    def run(self, *args: Any, max_tree_depth: int = 10, **kwargs: Any):
        if max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be >= 1, got {max_tree_depth}")
        self.max_tree_depth = max_tree_depth
        self.tree_depths: list[int] = []
        kwargs.setdefault("step_jitter", 0.0)
        if kwargs.setdefault("length_jitter", 0.0):
            raise ValueError("NUTS chooses each trajectory's length itself: length_jitter does not apply")
        result = super().run(*args, **kwargs)
        chains, kept = result.samples.shape[:2]
        sampled = self.tree_depths[-chains * kept * kwargs.get("thin", 1):]
        hits = sum(d >= max_tree_depth for d in sampled)
        self.max_depth_fraction = hits / len(sampled)
        if hits:
            warnings.warn(f"NUTS: {hits} of {len(sampled)} post-warm-up transitions ({self.max_depth_fraction:.0%}) "
                          f"reached max_tree_depth={max_tree_depth}: trajectories cut short explore slowly; "
                          "raise max_tree_depth or reparametrise", RuntimeWarning, stacklevel=2)
        return result

    # one chain at a time: theta (D,), r (D,), g (D,), eps float, mass of one chain
    def _leap1(self, theta: Tensor, r: Tensor, g: Tensor, eps: float, mass: Mass):
        r = r + 0.5 * eps * g
        theta = mass.drift(theta, eps, r)
        lp, g = self._grad(theta.unsqueeze(0))
        r = r + 0.5 * eps * g[0]
        return theta, r, lp[0], g[0]

    def _build(self, theta, r, g, logu, v, j, eps, mass, joint0, gen):
        if j == 0:
            th, rr, lp, gg = self._leap1(theta, r, g, v * eps, mass)
            joint = float(lp - mass.kinetic(rr))
            if not math.isfinite(joint):
                joint = -math.inf
            n = int(logu <= joint)
            s = logu < joint + _DELTA_MAX
            if not s:
                self._diverged = True
            a = min(1.0, math.exp(min(0.0, joint - joint0)))
            return th, rr, gg, th, rr, gg, th, lp, gg, n, s, a, 1
        (tm, rm, gm, tp, rp, gp, t1, lp1, g1, n1, s1, a1, na1) = self._build(
            theta, r, g, logu, v, j - 1, eps, mass, joint0, gen)
        if s1:
            if v < 0:
                tm, rm, gm, _, _, _, t2, lp2, g2, n2, s2, a2, na2 = self._build(
                    tm, rm, gm, logu, v, j - 1, eps, mass, joint0, gen)
            else:
                _, _, _, tp, rp, gp, t2, lp2, g2, n2, s2, a2, na2 = self._build(
                    tp, rp, gp, logu, v, j - 1, eps, mass, joint0, gen)
            if n1 + n2 > 0 and float(torch.rand((), generator=gen, device=gen.device)) < n2 / (n1 + n2):
                t1, lp1, g1 = t2, lp2, g2
            a1, na1 = a1 + a2, na1 + na2
            s1 = s2 and self._no_uturn(tm, tp, rm, rp, mass)
            n1 = n1 + n2
        return tm, rm, gm, tp, rp, gp, t1, lp1, g1, n1, s1, a1, na1

    @staticmethod
    def _no_uturn(tm: Tensor, tp: Tensor, rm: Tensor, rp: Tensor, mass: Mass) -> bool:
        d = tp - tm
        return bool((d * mass.velocity(rm)).sum() >= 0) and bool((d * mass.velocity(rp)).sum() >= 0)

    def _one_chain(self, theta, lp, g, eps, mass, gen):
        self._diverged = False
        z = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=gen.device).to(theta.device)
        r0 = mass.momentum(z)
        joint0 = float(lp - mass.kinetic(r0))
        logu = joint0 + math.log(max(float(torch.rand((), generator=gen, device=gen.device)), 1e-300))
        tm = tp = theta
        rm = rp = r0
        gm = gp = g
        new_theta, new_lp, new_g = theta, lp, g
        n, s, j, a, na = 1, True, 0, 0.0, 0
        while s and j < self.max_tree_depth:
            v = 1 if float(torch.rand((), generator=gen, device=gen.device)) < 0.5 else -1
            if v < 0:
                tm, rm, gm, _, _, _, t1, lp1, g1, n1, s1, a1, na1 = self._build(
                    tm, rm, gm, logu, v, j, eps, mass, joint0, gen)
            else:
                _, _, _, tp, rp, gp, t1, lp1, g1, n1, s1, a1, na1 = self._build(
                    tp, rp, gp, logu, v, j, eps, mass, joint0, gen)
            if s1 and float(torch.rand((), generator=gen, device=gen.device)) < n1 / n:
                new_theta, new_lp, new_g = t1, lp1, g1
            n, a, na = n + n1, a + a1, na + na1
            s = s1 and self._no_uturn(tm, tp, rm, rp, mass)
            j += 1
        self.tree_depths.append(j)
        moved = not torch.equal(new_theta, theta)
        return new_theta, new_lp, new_g, a / max(na, 1), moved, self._diverged

    def _transition(self, theta, lp, g, eps, mass, n_leapfrog, generator):
        gen = generator if generator is not None else torch.Generator().manual_seed(
            int(torch.randint(0, 2**31 - 1, ()).item()))
        outs = [self._one_chain(theta[c], lp[c], g[c], float(eps[c]), mass.chain(c), gen)
                for c in range(theta.shape[0])]
        th = torch.stack([o[0] for o in outs])
        new_lp = torch.stack([torch.as_tensor(o[1]) for o in outs]).to(lp)
        new_g = torch.stack([o[2] for o in outs])
        acc = torch.tensor([o[3] for o in outs], dtype=theta.dtype, device=theta.device)
        moved = torch.tensor([o[4] for o in outs], device=theta.device)
        div = torch.tensor([o[5] for o in outs], device=theta.device)
        return th, new_lp, new_g, acc, moved, div
