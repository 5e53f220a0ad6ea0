"""SRI: Rößler's stochastic Runge–Kutta method for diagonal/scalar Itô SDEs, strong order 1.5."""

from __future__ import annotations

import math

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive, Diagonal, Scalar

# Rößler (2010) SRI tableau with deterministic order 3 and strong order 1.5 for commutative
# diagonal/scalar noise (the coefficients torchsde ships as ``srid2``); stage s uses columns j < s.
_C0 = (0.0, 1.0, 0.5, 0.0)
_C1 = (0.0, 0.25, 1.0, 0.25)
_A0 = ((), (1.0,), (0.25, 0.25), (0.0, 0.0, 0.0))
_A1 = ((), (0.25,), (1.0, 0.0), (0.0, 0.0, 0.25))
_B0 = ((), (0.0,), (1.0, 0.5), (0.0, 0.0, 0.0))
_B1 = ((), (-0.5,), (1.0, 0.0), (2.0, -1.0, 0.5))
_ALPHA = (1 / 6, 1 / 6, 2 / 3, 0.0)
_BETA1 = (-1.0, 4 / 3, 2 / 3, 0.0)
_BETA2 = (1.0, -4 / 3, 1 / 3, 0.0)
_BETA3 = (2.0, -4 / 3, -2 / 3, 0.0)
_BETA4 = (-2.0, 5 / 3, -2 / 3, 1.0)


class SRI(SDESolver):
    """Stochastic Runge–Kutta of SRI type (Rößler 2010, SIAM J. Numer. Anal. 48(3), eq. 5.1 with a
    four-stage tableau of deterministic order 3), strong order 1.5 for diagonal noise with
    ``g_i = g_i(t, y_i)`` and for scalar noise.

    With ``I = ΔW``, ``I_(1,1) = (ΔW² - h)/2``, ``I_(1,1,1) = (ΔW³ - 3hΔW)/6`` and
    ``I_(1,0) = ∫ (W_u - W_t) du``:

    .. math::
        H^{(0)}_i = y + \\sum_{j<i} A^{(0)}_{ij} f_j h + B^{(0)}_{ij} g_j I_{(1,0)}/h, \\quad
        H^{(1)}_i = y + \\sum_{j<i} A^{(1)}_{ij} f_j h + B^{(1)}_{ij} g_j \\sqrt h

        y' = y + \\sum_i α_i f_i h + \\sum_i g_i (β^{(1)}_i I + β^{(2)}_i I_{(1,1)}/\\sqrt h
             + β^{(3)}_i I_{(1,0)}/h + β^{(4)}_i I_{(1,1,1)}/h)

    with ``f_i = f(t + c^{(0)}_i h, H^{(0)}_i)``, ``g_i = g(t + c^{(1)}_i h, H^{(1)}_i)``. Every
    stage value is evaluated once: 3 drift + 4 diffusion evaluations per step (torchsde's ``srk``
    re-evaluates earlier stages inside its stage loop: 10 + 10). Needs a Brownian object with
    ``levy_area`` (``BrownianIncrements(levy_area=True)`` or ``VirtualBrownianTree``).
    """

    calculus = "ito"
    strong_order = 1.5
    weak_order = 2.0
    supported_noise = (Diagonal, Scalar, Additive)
    needs_levy_area = True

    def step(self, term, t, dt, y, dw, i10, state):
        sqrt_h = math.sqrt(dt)
        i10_h = i10 / dt
        i11 = (dw * dw - dt) * 0.5
        i111 = (dw * dw * dw - 3 * dt * dw) * (1 / 6)
        fs, gs = [], []
        y1 = y
        for s in range(4):
            h0, h1 = y, y
            for j in range(s):
                if _A0[s][j]:
                    h0 = h0 + (_A0[s][j] * dt) * fs[j]
                if _B0[s][j]:
                    h0 = h0 + _B0[s][j] * gs[j] * i10_h
                if _A1[s][j]:
                    h1 = h1 + (_A1[s][j] * dt) * fs[j]
                if _B1[s][j]:
                    h1 = h1 + (_B1[s][j] * sqrt_h) * gs[j]
            needs_f = _ALPHA[s] != 0 or any(_A0[k][s] or _A1[k][s] for k in range(s + 1, 4))
            f = term.f(t + _C0[s] * dt, h0) if needs_f else None
            g = term.g(t + _C1[s] * dt, h1)
            fs.append(f)
            gs.append(g)
            weight = _BETA1[s] * dw + (_BETA2[s] / sqrt_h) * i11 + _BETA3[s] * i10_h + (_BETA4[s] / dt) * i111
            if f is not None and _ALPHA[s]:
                y1 = y1 + (_ALPHA[s] * dt) * f
            y1 = y1 + g * weight
        return y1, state
