"""SRA1: Rößler's stochastic Runge–Kutta method for additive noise, strong order 1.5."""

from __future__ import annotations

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive


class SRA1(SDESolver):
    """Rößler (2010), "Runge–Kutta methods for the strong approximation of solutions of SDEs",
    SIAM J. Numer. Anal. 48(3), scheme SRA1 (Table 6.1): two stages, strong order 1.5 and
    deterministic order 2 for additive noise ``dy = f(t, y) dt + g(t) dW``.

    With ``ΔW`` and ``I = I_(1,0) = ∫_t^{t+h} (W_u - W_t) du``:

    .. math::
        H_2 = y + \\tfrac34 f(t, y) h + \\tfrac32 g(t + h) I / h

        y' = y + (\\tfrac13 f(t, y) + \\tfrac23 f(t + \\tfrac34 h, H_2)) h
             + g(t) I / h + g(t + h) (ΔW - I / h)

    Needs a Brownian object with ``levy_area`` (``BrownianIncrements(levy_area=True)`` or
    ``VirtualBrownianTree``).
    Two drift and two diffusion evaluations per step (one if ``g`` is constant in time and
    ``cache_constant_diffusion=True``).
    """

    calculus = "ito"  # = Stratonovich for additive noise
    strong_order = 1.5
    weak_order = 2.0
    supported_noise = (Additive,)
    needs_levy_area = True

    def __init__(self, cache_constant_diffusion: bool = False) -> None:
        self.cache_constant_diffusion = cache_constant_diffusion

    def step(self, term, t, dt, y, dw, i10, state):
        i_h = i10 / dt
        f0 = term.f(t, y)
        t1 = t + dt
        g0 = term.g(t, y)
        g1 = g0 if self.cache_constant_diffusion else term.g(t1, y)
        h2 = y + (0.75 * dt) * f0 + 1.5 * term.g_prod(g1, i_h)
        f1 = term.f(t + 0.75 * dt, h2)
        y1 = y + dt * (f0 / 3 + (2.0 / 3.0) * f1) + term.g_prod(g0, i_h) + term.g_prod(g1, dw - i_h)
        return y1, state

    def __repr__(self) -> str:
        return f"SRA1(cache_constant_diffusion={self.cache_constant_diffusion})"
