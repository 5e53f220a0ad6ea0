r"""Mass matrices of HMC: the kinetic energy :math:`K(p)=\tfrac12 p^\top M^{-1}p`, momentum draws
:math:`p\sim\mathcal N(0,M)` and their warm-up estimates, batched over chains.

Both estimate :math:`M^{-1}` from the draws of one slow warm-up window, as Stan does
(Stan Reference Manual, "HMC algorithm parameters: Euclidean metric"; Betancourt 2017, Sec. 4.2):

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

    kind = "diag"

    def __init__(self, inverse: Tensor) -> None:
        self.inverse = inverse

    @classmethod
    def identity(cls, theta: Tensor) -> "DiagonalMass":
        return cls(torch.ones_like(theta))

    @classmethod
    def from_window(cls, draws: Tensor) -> "DiagonalMass":
        """From one slow window's draws ``(chains, n, D)``."""
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

    kind = "dense"

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
    def from_window(cls, draws: Tensor) -> "DenseMass":
        """From one slow window's draws ``(chains, n, D)``."""
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


Mass = DiagonalMass | DenseMass
MASS_MATRICES = {"diag": DiagonalMass, "dense": DenseMass}
#: Largest D for a dense matrix: chains x D^2 numbers (4 chains, D = 20000: 12.8 GB in float64).
DENSE_MAX_DIM = 20_000


def check_mass_matrix(kind: str, dim: int) -> None:
    """A clear error for an unknown kind or a dense matrix too large to hold."""
    if kind not in MASS_MATRICES:
        raise ValueError(f"mass_matrix must be one of {sorted(MASS_MATRICES)}, got {kind!r}")
    if kind == "dense" and dim > DENSE_MAX_DIM:
        raise ValueError(f"mass_matrix='dense' over D = {dim:,} weights needs D x D = {dim * dim:,} numbers per "
                         f"chain (limit D = {DENSE_MAX_DIM:,}), and far more warm-up draws than weights to "
                         "estimate; use mass_matrix='diag'")
