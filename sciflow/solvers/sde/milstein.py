"""Derivative-free Itô Milstein (Platen's explicit order-1.0 scheme; Kloeden & Platen 1992, eq. 11.1.5)."""

from __future__ import annotations

import math

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive, Diagonal, Scalar


class Milstein(SDESolver):
    """Itô Milstein with the Jacobian–vector product ``(∂g/∂y) g`` replaced by a finite difference.

    .. math::
        \\bar y = y + f h + g \\sqrt{h}, \\qquad
        y' = y + f h + g\\,ΔW + \\frac{g(\\bar y) - g(y)}{2\\sqrt{h}} (ΔW^2 - h)

    (Kloeden & Platen 1992, eq. 11.1.5, applied componentwise). Strong order 1.0 for scalar noise,
    additive noise, and diagonal noise whose ``g_i`` depends on ``y_i`` only (commutative noise);
    with cross-dependent diagonal noise the correction is ``Σ_l g_l ∂_l g_i``, not ``g_i ∂_i g_i``,
    and the strong order drops to 0.5. Costs one drift and two diffusion evaluations per step.
    General (non-commutative) noise needs Lévy areas and is not supported.
    """

    calculus = "ito"
    strong_order = 1.0
    weak_order = 1.0
    supported_noise = (Diagonal, Scalar, Additive)

    def step(self, term, t, dt, y, dw, i10, state):
        f = term.f(t, y)
        g = term.g(t, y)
        y_em = y + f * dt
        if term.noise.additive:
            return y_em + term.g_prod(g, dw), state
        sqrt_h = math.sqrt(dt)
        g_bar = term.g(t, y_em + g * sqrt_h)
        return y_em + g * dw + (g_bar - g) * ((dw * dw - dt) * (0.5 / sqrt_h)), state
