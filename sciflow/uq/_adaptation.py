r"""Warm-up adaptation of HMC (Stan's windowed scheme), per chain and on the device.

- :class:`DualAveraging`: step size by dual averaging towards a target acceptance statistic
  (Hoffman & Gelman 2014, Alg. 5, eq. 6: :math:`\gamma=0.05, t_0=10, \kappa=0.75`,
  :math:`\mu=\log 10\varepsilon_0`); after warm-up the averaged :math:`\bar\varepsilon` is used.
- :func:`warmup_windows`: Stan's schedule of an initial fast buffer (75 transitions), doubling
  slow windows (first 25) that estimate the mass matrix, and a terminal fast buffer (50),
  scaled down proportionally for short warm-ups.

The mass matrix each slow window estimates is :mod:`sciflow.uq._mass`'s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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

