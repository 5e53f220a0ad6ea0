r"""Warm-up adaptation of HMC (Stan's windowed scheme), per chain and on the device.

- :class:`DualAveraging`: step size by dual averaging towards a target acceptance statistic
  (Hoffman & Gelman 2014, Alg. 5, eq. 6: :math:`\gamma=0.05, t_0=10, \kappa=0.75`,
  :math:`\mu=\log 10\varepsilon_0`); after warm-up the averaged :math:`\bar\varepsilon` is used.
- :func:`warmup_windows`: Stan's schedule of an initial fast buffer (75 transitions), doubling
  slow windows (first 25) that estimate the mass matrix, and a terminal fast buffer (50),
  scaled down proportionally for short warm-ups.

- :data:`MASS_MATRICES`: what each slow window estimates, by ``run(mass_matrix=...)``'s name:
  Stan's variance estimates (``"diag"``, ``"dense"``, :mod:`sciflow.uq._mass`) or the Fisher-divergence
  minimisers (``"fisher_diag"``, ``"low_rank"``, :mod:`sciflow.uq._fisher_mass`).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from sciflow.uq import _mass
from sciflow.uq._fisher_mass import fisher_diagonal, fisher_low_rank
from sciflow.uq._mass import DenseMass, DiagonalMass, LowRankMass, Mass


class MassAdaptation(NamedTuple):
    """A mass matrix's start (from the initial weights) and its estimate from one slow window's
    draws and (where ``needs_gradients``; else ``None``) the gradients at them, both
    ``(chains, n, D)``: the sampler keeps the window's gradients only for the estimators that
    read them."""

    identity: Callable[[Tensor], Mass]
    estimate: Callable[[Tensor, "Tensor | None"], Mass]
    needs_gradients: bool


MASS_MATRICES = {
    "diag": MassAdaptation(DiagonalMass.identity, DiagonalMass.from_window, False),
    "dense": MassAdaptation(DenseMass.identity, DenseMass.from_window, False),
    "fisher_diag": MassAdaptation(DiagonalMass.identity, fisher_diagonal, True),
    "low_rank": MassAdaptation(LowRankMass.identity, fisher_low_rank, True),
}


def check_mass_matrix(kind: str, dim: int) -> None:
    """A clear error for an unknown kind or a dense matrix too large to hold."""
    if kind not in MASS_MATRICES:
        raise ValueError(f"mass_matrix must be one of {sorted(MASS_MATRICES)}, got {kind!r}")
    if kind == "dense" and dim > _mass.DENSE_MAX_DIM:
        raise ValueError(f"mass_matrix='dense' over D = {dim:,} weights needs D x D = {dim * dim:,} numbers per "
                         f"chain (limit D = {_mass.DENSE_MAX_DIM:,}), and far more warm-up draws than weights to "
                         "estimate; use mass_matrix='low_rank' or 'diag'")


class DualAveraging:
    """Per-chain dual averaging of :math:`\\log\\varepsilon` (``eps0``: ``(chains,)``)."""

    gamma, t0, kappa = 0.05, 10.0, 0.75

    def __init__(self, eps0: Tensor, target: float) -> None:
        self.target = target
        self.mu = torch.log(10 * eps0)
        self.hbar = torch.zeros_like(eps0)
        self.log_eps_bar = torch.zeros_like(eps0)
        self.t = 0

    def update(self, accept_stat: Tensor) -> Tensor:
        """Feed one transition's acceptance statistic; return the next step size."""
        self.t += 1
        t = self.t
        self.hbar = (1 - 1 / (t + self.t0)) * self.hbar + (self.target - accept_stat) / (t + self.t0)
        log_eps = self.mu - math.sqrt(t) / self.gamma * self.hbar
        w = t ** (-self.kappa)
        self.log_eps_bar = w * log_eps + (1 - w) * self.log_eps_bar
        return log_eps.exp()

    @property
    def final(self) -> Tensor:
        """The averaged step size :math:`\\bar\\varepsilon` to sample with after warm-up."""
        return self.log_eps_bar.exp()


def warmup_windows(n_warmup: int) -> tuple[int, int, list[int]]:
    """``(initial buffer, terminal buffer, ends of the slow windows)`` of Stan's schedule."""
    if n_warmup < 20:
        return n_warmup, 0, []
    init, term, base = 75, 50, 25
    if n_warmup < init + term + base:
        init, term = int(0.15 * n_warmup), int(0.1 * n_warmup)
        base = n_warmup - init - term
    ends, start, w = [], init, base
    while start < n_warmup - term:
        end = start + w
        if end + 2 * w > n_warmup - term:  # last window absorbs the remainder
            end = n_warmup - term
        ends.append(end)
        start, w = end, 2 * w
    return init, term, ends

