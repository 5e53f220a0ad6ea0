r"""Mass matrices of HMC: the kinetic energy :math:`K(p)=\tfrac12 p^\top M^{-1}p`, momentum draws
:math:`p\sim\mathcal N(0,M)` and their warm-up estimates, batched over chains.

Three representations: diagonal, dense and low-rank plus diagonal (:class:`LowRankMass`, estimated
by :mod:`sciflow.uq._fisher_mass`). The first two also carry Stan's estimators, which read
:math:`M^{-1}` off the draws of one slow warm-up window (Stan Reference Manual, "HMC algorithm
parameters: Euclidean metric"; Betancourt 2017, Sec. 4.2); every ``from_window`` takes the window's
draws and the gradients at them, which Stan's estimators ignore:

- :class:`DiagonalMass` (Stan's ``diag_e``): the per-parameter sample variances, shrunk towards
  :math:`10^{-3}`: :math:`\tfrac{n}{n+5}\hat\sigma^2_i + 10^{-3}\tfrac{5}{n+5}`. Evens out scales, not
  correlations.
- :class:`DenseMass` (``dense_e``): the sample covariance shrunk the same way,
  :math:`\tfrac{n}{n+5}\hat\Sigma + 10^{-3}\tfrac{5}{n+5}I`, kept as its Cholesky factor
  :math:`L` (:math:`M^{-1}=LL^\top`, :math:`p=L^{-\top}z`). Also removes linear correlations,
  at :math:`O(D^2)` per leapfrog step and :math:`O(D^3)` per window. It needs windows of many
  more draws than parameters: with :math:`n\le D` the estimate is singular up to the shrinkage
  (its unseen directions get variance :math:`\approx 10^{-3}\cdot 5/(n+5)`), which forces tiny steps.

Every tensor carries the chains as its leading dimension; :meth:`chain` gives one chain's matrix
(the same operations without that dimension, for NUTS).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Stan's regularisation: ``n / (n + SHRINK_N)`` of the estimate plus ``SHRINK_TO * SHRINK_N / (n + SHRINK_N)``.
SHRINK_N, SHRINK_TO = 5.0, 1e-3


class DiagonalMass:
    """:math:`M^{-1}=\\operatorname{diag}(v)`, ``inverse`` = :math:`v`: ``(chains, D)``."""

    def __init__(self, inverse: Tensor) -> None:
        self.inverse = inverse

    @classmethod
    def identity(cls, theta: Tensor) -> "DiagonalMass":
        return cls(torch.ones_like(theta))

    @classmethod
    def from_window(cls, draws: Tensor, grads: Tensor | None = None) -> "DiagonalMass":
        """Stan's estimate from one slow window's draws ``(chains, n, D)``."""
        n = draws.shape[1]
        var = draws.var(1) if n > 1 else torch.ones_like(draws[:, 0])
        return cls((n / (n + SHRINK_N)) * var + SHRINK_TO * (SHRINK_N / (n + SHRINK_N)))

    def chain(self, c: int) -> "DiagonalMass":
        return DiagonalMass(self.inverse[c])

    def velocity(self, p: Tensor) -> Tensor:
        """:math:`M^{-1}p`, the position's rate of change."""
        return self.inverse * p

    def drift(self, theta: Tensor, eps: Tensor | float, p: Tensor) -> Tensor:
        """The leapfrog position update :math:`\theta+\varepsilon M^{-1}p` (``eps`` broadcast)."""
        return theta + eps * self.inverse * p

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p * p * self.inverse).sum(-1)

    def momentum(self, z: Tensor) -> Tensor:
        """:math:`p\\sim\\mathcal N(0, M)` from standard normal ``z``."""
        return z / self.inverse.sqrt()


class DenseMass:
    """:math:`M^{-1}=\\Sigma=LL^\\top`; ``inverse`` = :math:`\\Sigma`: ``(chains, D, D)``."""

    def __init__(self, inverse: Tensor, cholesky: Tensor | None = None) -> None:
        self.inverse = inverse
        # in float64: a float32 covariance of eigenvalues 1e-5..1e2 is at the edge of its Cholesky
        self.cholesky = torch.linalg.cholesky(inverse.to(torch.float64)).to(inverse.dtype) \
            if cholesky is None else cholesky

    @classmethod
    def identity(cls, theta: Tensor) -> "DenseMass":
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        return cls(eye.expand(*theta.shape[:-1], -1, -1).clone())

    @classmethod
    def from_window(cls, draws: Tensor, grads: Tensor | None = None) -> "DenseMass":
        """Stan's estimate from one slow window's draws ``(chains, n, D)``."""
        n, D = draws.shape[1], draws.shape[2]
        eye = torch.eye(D, dtype=draws.dtype, device=draws.device)
        if n > 1:
            dev = draws - draws.mean(1, keepdim=True)
            cov = dev.transpose(1, 2) @ dev / (n - 1)
        else:
            cov = eye.expand(draws.shape[0], D, D)
        return cls((n / (n + SHRINK_N)) * cov + SHRINK_TO * (SHRINK_N / (n + SHRINK_N)) * eye)

    def chain(self, c: int) -> "DenseMass":
        return DenseMass(self.inverse[c], self.cholesky[c])  # no refactorisation per NUTS transition

    def velocity(self, p: Tensor) -> Tensor:
        return (self.inverse @ p.unsqueeze(-1)).squeeze(-1)

    def drift(self, theta: Tensor, eps: Tensor | float, p: Tensor) -> Tensor:
        return theta + eps * self.velocity(p)

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p * self.velocity(p)).sum(-1)

    def momentum(self, z: Tensor) -> Tensor:
        # p = L^{-T} z has covariance L^{-T} L^{-1} = Sigma^{-1} = M
        return torch.linalg.solve_triangular(self.cholesky.transpose(-1, -2), z.unsqueeze(-1), upper=True).squeeze(-1)


class LowRankMass:
    r""":math:`M^{-1}=\operatorname{diag}(\sigma)\,(I+U(\Lambda-I)U^\top)\,\operatorname{diag}(\sigma)`:
    per-weight scales ``scale`` :math:`\sigma` ``(chains, D)``, orthonormal directions ``basis``
    :math:`U` ``(chains, D, K)`` of the scaled space and their variances ``eigenvalues``
    :math:`\Lambda` ``(chains, K)`` (a direction with :math:`\lambda=1` is inert: chains pad with
    those). Every operation costs :math:`O(DK)`; :math:`M=\operatorname{diag}(\sigma^{-1})
    (I+U(\Lambda^{-1}-I)U^\top)\operatorname{diag}(\sigma^{-1})` and, :math:`U` being orthonormal,
    :math:`(I+U(\Lambda^{-1/2}-I)U^\top)^2=I+U(\Lambda^{-1}-I)U^\top` gives its square root."""

    def __init__(self, scale: Tensor, basis: Tensor, eigenvalues: Tensor) -> None:
        self.scale, self.basis, self.eigenvalues = scale, basis, eigenvalues

    @classmethod
    def identity(cls, theta: Tensor) -> "LowRankMass":
        return cls(torch.ones_like(theta), theta.new_zeros(*theta.shape, 0), theta.new_ones(*theta.shape[:-1], 0))

    def chain(self, c: int) -> "LowRankMass":
        return LowRankMass(self.scale[c], self.basis[c], self.eigenvalues[c])

    def _low_rank(self, y: Tensor, power: float) -> Tensor:
        r""":math:`(I+U(\Lambda^{p}-I)U^\top)y`."""
        coef = (y.unsqueeze(-2) @ self.basis).squeeze(-2) * (self.eigenvalues**power - 1)  # 2x einsum's speed
        return y + (self.basis @ coef.unsqueeze(-1)).squeeze(-1)

    @property
    def inverse(self) -> Tensor:
        """The diagonal of :math:`M^{-1}`, ``(chains, D)``."""
        return self.scale**2 * (1 + (self.basis**2 * (self.eigenvalues - 1).unsqueeze(-2)).sum(-1))

    def velocity(self, p: Tensor) -> Tensor:
        return self.scale * self._low_rank(self.scale * p, 1.0)

    def drift(self, theta: Tensor, eps: Tensor | float, p: Tensor) -> Tensor:
        return theta + eps * self.velocity(p)

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p * self.velocity(p)).sum(-1)

    def momentum(self, z: Tensor) -> Tensor:
        return self._low_rank(z, -0.5) / self.scale


Mass = DiagonalMass | DenseMass | LowRankMass
#: Largest D for a dense matrix: chains x D^2 numbers (4 chains, D = 20000: 12.8 GB in float64).
DENSE_MAX_DIM = 20_000
