"""Reversible Heun (Kidger, Foster, Li & Lyons 2021, "Efficient and accurate gradients for neural SDEs", Alg. 1)."""

from __future__ import annotations

from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.noise import Additive, Diagonal, General, Scalar


class ReversibleHeun(SDESolver):
    """Algebraically reversible Stratonovich solver with one drift + diffusion evaluation per step.

    State ``(y, z, f(z), g(z))`` with ``z_0 = y_0``:

    .. math::
        z' = 2y - z + f(t, z) h + g(t, z) ΔW, \\qquad
        y' = y + \\tfrac12 (f(t, z) + f(t+h, z')) h + \\tfrac12 (g(t, z) + g(t+h, z')) ΔW

    Strong order 0.5 in general and 1.0 for additive noise (Kidger et al. 2021, Thm. 2.3); the
    step can be inverted exactly, which the paper uses for an O(1)-memory exact adjoint:
    ``sdeint(..., solver=ReversibleHeun(), adjoint=ReversibleAdjoint())``
    (:mod:`sciflow.solvers.sde.reversible_adjoint`); without it, gradients go through ordinary autograd.
    """

    calculus = "stratonovich"
    strong_order = 0.5
    weak_order = 1.0
    supported_noise = (Diagonal, Scalar, General, Additive)

    def init(self, term, t0, y0):
        return (y0, term.f(t0, y0), term.g(t0, y0))

    def step(self, term, t, dt, y, dw, i10, state):
        z, fz, gz = state
        z1 = 2 * y - z + fz * dt + term.g_prod(gz, dw)
        t1 = t + dt
        fz1 = term.f(t1, z1)
        gz1 = term.g(t1, z1)
        y1 = y + (0.5 * dt) * (fz + fz1) + 0.5 * term.g_prod(gz + gz1, dw)
        return y1, (z1, fz1, gz1)
