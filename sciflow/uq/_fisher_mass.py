r"""Mass matrices that minimise the Fisher divergence (Seyboldt, Carlson & Carpenter 2026,
"Preconditioning Hamiltonian Monte Carlo by minimizing Fisher divergence", arXiv:2603.18845; the
estimators of nutpie / nuts-rs).

HMC with mass matrix :math:`M` samples :math:`y=A^{-1}(x-\mu)` with the identity mass, where
:math:`AA^\top=M^{-1}`; it works best when :math:`y` is close to a standard normal. These
estimators choose :math:`A` from a warm-up window's draws :math:`x_i` **and** the scores
:math:`\alpha_i=\nabla\log\pi(x_i)` at them by minimising the sample Fisher divergence
:math:`\frac1n\sum_i\lVert A^\top\alpha_i+A^{-1}(x_i-\mu)\rVert^2` between the transformed density
and :math:`\mathcal N(0,I)`. Scores carry curvature that draws alone reveal only slowly, so these
converge in far fewer draws than Stan's variance estimates (:mod:`sciflow.uq._mass`):

- :func:`fisher_diagonal` (diagonal :math:`A`): :math:`\sigma_i^2=\sqrt{\operatorname{var}(x_i)
  /\operatorname{var}(\alpha_i)}`. For a Gaussian target this is the exact variance
  :math:`\Sigma_{ii}` whatever the number of draws, if the target's covariance is diagonal.
- :func:`fisher_low_rank` (the paper's Algorithm 1): the diagonal above, then, in the scaled space,
  the dense minimiser restricted to the span of the centred draws and scores: the matrix with
  :math:`\Sigma\,C_\alpha\,\Sigma=C_x` (the geometric mean of :math:`C_x` and :math:`C_\alpha^{-1}`,
  both covariances regularised by :math:`n\gamma I`, :math:`\gamma=10^{-5}`); eigen-directions
  with variance in :math:`[1/c, c]`, :math:`c=2`, are dropped (left at the diagonal), the rest
  kept up to ``MAX_RANK``. For a Gaussian target with :math:`n>D` draws the unregularised
  minimiser is its covariance exactly. It needs no more draws than weights: with :math:`n\ll D`
  it recovers the :math:`O(n)` directions the window explored, at :math:`O(DK)` per leapfrog step.

Deviations from nutpie: Stan's window schedule (:mod:`sciflow.uq._adaptation`) instead of nutpie's
overlapping windows; the translation :math:`\mu` is not used (a mass matrix has none); the kept
rank is capped at ``MAX_RANK`` (nutpie keeps every direction outside :math:`[1/c, c]`); a weight
whose draws or scores did not vary in the window keeps unit scale. All linear algebra in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.uq._mass import DiagonalMass, LowRankMass

#: Regularisation of the projected covariances (:math:`n\gamma I`) and the eigenvalue cut-off
#: :math:`c` (nutpie's defaults), and the most directions kept per chain.
GAMMA, CUTOFF, MAX_RANK = 1e-5, 2.0, 100
#: Fewest draws a window needs for an estimate; shorter windows give the identity.
MIN_DRAWS = 3


def _scales(draws: Tensor, grads: Tensor) -> Tensor:
    r""":math:`\sigma_i=(\operatorname{var}x_i/\operatorname{var}\alpha_i)^{1/4}` per chain, ``(chains, D)``
    (population variances; a weight whose draws or scores did not vary keeps 1)."""
    ratio = draws.var(1, correction=0) / grads.var(1, correction=0)
    ok = torch.isfinite(ratio) & (ratio > 0)
    return torch.where(ok, ratio, torch.ones_like(ratio)).clamp(1e-20, 1e20) ** 0.25


def fisher_diagonal(draws: Tensor, grads: Tensor) -> DiagonalMass:
    """Diagonal Fisher-divergence minimiser from one window's draws and scores ``(chains, n, D)``."""
    if draws.shape[1] < MIN_DRAWS:
        return DiagonalMass.identity(draws[:, 0])
    return DiagonalMass((_scales(draws.double(), grads.double()) ** 2).to(draws.dtype))


def _sym_power(a: Tensor, power: float) -> Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(-2) ** power) @ v.mT


def spd_mean(a: Tensor, b: Tensor) -> Tensor:
    r"""The solution :math:`\Sigma` of :math:`\Sigma B\Sigma=A` for SPD ``a``, ``b`` (batched):
    :math:`B^{-1/2}(B^{1/2}AB^{1/2})^{1/2}B^{-1/2}`, the geometric mean of :math:`A` and :math:`B^{-1}`."""
    root = _sym_power(b, 0.5)
    inv_root = _sym_power(b, -0.5)
    return inv_root @ _sym_power(root @ a @ root, 0.5) @ inv_root


def fisher_low_rank(draws: Tensor, grads: Tensor) -> LowRankMass:
    """Low-rank-plus-diagonal Fisher-divergence minimiser (Algorithm 1 of Seyboldt et al. 2026)
    from one window's draws and scores ``(chains, n, D)``."""
    chains, n, D = draws.shape
    if n < MIN_DRAWS:
        return LowRankMass.identity(draws[:, 0])
    x, g = draws.double(), grads.double()
    sigma = _scales(x, g)
    xs = (x - x.mean(1, keepdim=True)) / sigma.unsqueeze(1)  # the scaled, centred draws and scores
    gs = (g - g.mean(1, keepdim=True)) * sigma.unsqueeze(1)
    q, _ = torch.linalg.qr(torch.cat([xs, gs], 1).transpose(1, 2))  # (chains, D, m): their joint span
    xp, gp = xs @ q, gs @ q
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    cov_x = xp.transpose(1, 2) @ xp / n + n * GAMMA * eye
    cov_g = gp.transpose(1, 2) @ gp / n + n * GAMMA * eye
    lam, vec = torch.linalg.eigh(spd_mean(cov_x, cov_g))
    # keep the directions outside [1/c, c], most extreme first; the others become inert (lambda = 1)
    strength = lam.log().abs()
    keep = strength > math.log(CUTOFF)
    k = min(MAX_RANK, int(keep.sum(-1).max()))
    order = torch.argsort(torch.where(keep, strength, torch.zeros_like(strength)), dim=-1, descending=True)[:, :k]
    lam = torch.where(keep, lam, torch.ones_like(lam)).gather(1, order)
    basis = (q @ vec).gather(2, order.unsqueeze(1).expand(chains, D, k))
    return LowRankMass(sigma.to(draws.dtype), basis.to(draws.dtype), lam.to(draws.dtype))
