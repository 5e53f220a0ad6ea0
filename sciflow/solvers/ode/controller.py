"""Step-size controllers: a constant step, and the PI controller for embedded pairs.

The PI controller (Gustafsson 1991; Hairer & Wanner, *Solving ODEs II*, §IV.2, eq. 2.43c;
Söderlind 2002) scales the step by

.. math::
    h_{n+1} = h_n \\cdot \\mathrm{clip}\\Big(\\text{safety}\\;
        r_n^{-(\\beta_P + \\beta_I)/k}\\; r_{n-1}^{\\beta_P/k},\\;\\text{factor\\_min},\\;
        \\text{factor\\_max}\\Big),\\qquad
    r_n = \\Big\\| \\frac{e_n}{\\text{atol} + \\text{rtol}\\max(|y_n|, |y_{n+1}|)} \\Big\\|_{\\mathrm{RMS}}

where ``k = error_order + 1`` and ``β_P = pcoeff``, ``β_I = icoeff`` (diffrax's naming). A step
is accepted when ``r_n ≤ 1``; a rejected step never grows and an accepted step never shrinks the
next one (the factor is clipped to ``≥ 1`` on acceptance, as in torchdiffeq and diffrax: without
it a step whose ``r_n`` lies in ``(safety^k, 1]`` is accepted and yet shortens the next step,
which on batched Lorenz-63 cost Dopri5 9 % more steps than torchdiffeq at the same tolerances).
``pcoeff = 0, icoeff = 1`` is the classic integral (I) controller of torchdiffeq and scipy;
``pcoeff = 0.4/k``-style values give smoother step sequences. The RMS norm runs over the state of
each independently stepped trajectory (per-trajectory error control) or over the whole batch (one
clock for all).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConstantStepSize", "PIController"]

#: An adaptive step that would end within ``STRETCH - 1`` (1 %) of its size short of a save
#: time or ``t1`` is stretched to end there (Hairer's DOPRI5: ``X + 1.01 H`` past ``XEND``), so no
#: sliver step follows; a step clipped so and accepted keeps the longer proposal made before the
#: clip as the next step (a segment's short last step does not set the next segment's start).
STRETCH = 1.01


@dataclass(frozen=True)
class ConstantStepSize:
    """Fixed steps: each interval between consecutive save times is split into ``ceil(Δt/dt)``
    equal steps (``dt=None``: one step per interval). Save times are hit exactly."""

    dt: float | None = None

    def __post_init__(self) -> None:
        if self.dt is not None and not self.dt > 0:
            raise ValueError(f"ConstantStepSize.dt must be positive, got {self.dt}")


@dataclass(frozen=True)
class PIController:
    """Adaptive step control for solvers with an embedded error estimate.

    ``dt0``: first step (``None``: Hairer's automatic initial-step selection, one extra
    evaluation). ``max_steps``: attempted steps (accepted + rejected) before an error.
    ``dtmin``: smallest step relative to ``|t|`` before the step-size-underflow error.
    ``dtmax``: largest step (``None``: no cap) — so that a step does not jump over features the
    error estimate cannot see: a pair of event crossings (:class:`~.event.Event`), a short burst
    of noise in an adaptive SDE solve (scipy's ``max_step``, diffrax's ``dtmax``).
    """

    rtol: float = 1e-6
    atol: float = 1e-8
    pcoeff: float = 0.0
    icoeff: float = 1.0
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    dt0: float | None = None
    max_steps: int = 100_000
    dtmin: float = 1e-12
    dtmax: float | None = None

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0 and self.rtol + self.atol > 0):
            raise ValueError(f"PIController needs rtol, atol >= 0 and not both zero, got {self.rtol}, {self.atol}")
        if not 0 < self.factor_min < 1 < self.factor_max:
            raise ValueError("PIController needs 0 < factor_min < 1 < factor_max")
        if not 0 < self.safety <= 1:
            raise ValueError("PIController.safety must be in (0, 1]")
        if self.max_steps < 1:
            raise ValueError("PIController.max_steps must be >= 1")
        if self.dt0 is not None and not self.dt0 > 0:
            raise ValueError("PIController.dt0 must be positive")
        if self.dtmax is not None and not self.dtmax > 0:
            raise ValueError(f"PIController.dtmax must be positive (or None: no cap), got {self.dtmax}")
