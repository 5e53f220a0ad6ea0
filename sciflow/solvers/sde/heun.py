"""Stratonovich Heun (Rümelin 1982; Kloeden & Platen 1992, §15.1 for the weak version)."""

from __future__ import annotations

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive, Diagonal, General, Scalar


class StratonovichHeun(SDESolver):
    """Predictor–corrector trapezoid rule in the Stratonovich sense.

    .. math::
        \\tilde y = y + f(t, y) h + g(t, y) ΔW, \\qquad
        y' = y + \\tfrac12 (f(t, y) + f(t+h, \\tilde y)) h + \\tfrac12 (g(t, y) + g(t+h, \\tilde y)) ΔW

    Strong order 1.0 for commutative noise (scalar, additive, diagonal with ``g_i(y_i)``), 0.5 in
    general; weak order 1 (2 for additive noise). Two drift and two diffusion evaluations per step.
    """

    calculus = "stratonovich"
    strong_order = 1.0
    weak_order = 1.0
    supported_noise = (Diagonal, Scalar, General, Additive)

    def step(self, term, t, dt, y, dw, i10, state):
        f0 = term.f(t, y)
        g0dw = term.g_prod(term.g(t, y), dw)
        y_pred = y + f0 * dt + g0dw
        t1 = t + dt
        f1 = term.f(t1, y_pred)
        g1dw = term.g_prod(term.g(t1, y_pred), dw)
        return y + (0.5 * dt) * (f0 + f1) + 0.5 * (g0dw + g1dw), state
