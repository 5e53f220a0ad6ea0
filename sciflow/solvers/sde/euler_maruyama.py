"""Euler–Maruyama (Maruyama 1955; Kloeden & Platen 1992, eq. 9.1.1)."""

from __future__ import annotations

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive, Diagonal, General, Scalar


class EulerMaruyama(SDESolver):
    """Itô Euler–Maruyama: ``y' = y + f(t, y) h + g(t, y) ⊙ ΔW``.

    Strong order 0.5 (1.0 for additive noise), weak order 1. One drift and one diffusion
    evaluation per step. Any noise type.
    """

    calculus = "ito"
    strong_order = 0.5
    weak_order = 1.0
    supported_noise = (Diagonal, Scalar, General, Additive)

    def step(self, term, t, dt, y, dw, i10, state):
        return y + term.f(t, y) * dt + term.g_prod(term.g(t, y), dw), state
