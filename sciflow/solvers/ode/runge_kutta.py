"""Explicit Runge–Kutta solvers: Euler, Midpoint, Heun, RK4, Bosh3, Dopri5, Tsit5.

A solver is a tableau (:mod:`.tableau`) plus two batched kernels that work on the flat internal
layout ``y: (B, S)`` (``B`` independently stepped trajectories, ``S`` state entries each) with
per-trajectory times ``t: (B,)`` and steps ``h: (B,)``:

* :meth:`ExplicitRungeKutta.step` — one step, returning ``y1``, the stages and the local error
  estimate ``h Σ (b_i - \\hat b_i) k_i`` (``None`` without an embedded pair);
* :meth:`ExplicitRungeKutta.interpolate` — dense output at ``θ ∈ [0, 1]`` inside a step from the
  solver's own continuous extension (Dopri5: Shampine 1986; Tsit5: Tsitouras 2011) or, without
  one, the cubic Hermite interpolant through ``(y0, f0, y1, f1)`` (local error ``O(h^4)``).

Stage combinations are chains of ``add(alpha=...)`` over the non-zero tableau entries only: on
the small states of training loops every kernel launch counts, and this uses the fewest.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .solver import Field, ODESolver, combination
from .tableau import BOSH3, DOPRI5, EULER, HEUN, MIDPOINT, RK4, TSIT5, ButcherTableau

__all__ = ["ExplicitRungeKutta", "Euler", "Midpoint", "Heun", "RK4", "Bosh3", "Dopri5", "Tsit5"]


class ExplicitRungeKutta(ODESolver):
    """An explicit Runge–Kutta method defined by its Butcher tableau.

    Declared capabilities: ``order`` (global convergence order), ``error_order`` (order of the
    embedded estimate, ``None`` if there is none), ``adaptive`` (usable with
    :class:`~sciflow.solvers.ode.controller.PIController`), ``fsal``, ``term_kinds``.
    Subclasses only set ``tableau``; to add a method, write its tableau.
    """

    tableau: ClassVar[ButcherTableau]
    term_kinds: ClassVar[tuple[str, ...]] = ("ode",)

    def __init__(self) -> None:
        tab = self.tableau
        self._a = [tab.a[i, :i].tolist() for i in range(tab.stages)]
        self._b = tab.b.tolist()
        self._c = tab.c.tolist()
        self._b_err = None if tab.b_err is None else tab.b_err.tolist()
        self._interp_cache: dict[tuple, Tensor] = {}

    # declared properties (order, error_order, stages: ODESolver reads the tableau) ---------
    @property
    def adaptive(self) -> bool:
        return self.tableau.adaptive

    @property
    def fsal(self) -> bool:
        return self.tableau.fsal

    # kernels -------------------------------------------------------------------------------
    def step(self, f: Field, t: Tensor, y: Tensor, h: Tensor, k1: Tensor
             ) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """One step from ``(t, y)`` of size ``h``; ``k1 = f(t, y)`` is given (FSAL / reuse).

        Shapes: ``t, h: (B,)``, ``y, k1: (B, S)``. Returns ``(y1, ks, err)``; for FSAL methods
        ``ks[-1] = f(t + h, y1)``.
        """
        hc = h.unsqueeze(-1)
        ks = [k1]
        y1 = None
        last = self.stages - 1
        for i in range(1, self.stages):
            acc = combination(self._a[i], ks)
            yi = y if acc is None else torch.addcmul(y, hc, acc)
            if i == last and self.fsal:
                y1 = yi
            ks.append(f(torch.add(t, h, alpha=self._c[i]), yi))
        if y1 is None:
            y1 = torch.addcmul(y, hc, combination(self._b, ks))
        err = None
        if self._b_err is not None:
            err = hc * combination(self._b_err, ks)
        return y1, ks, err

    def interp_coefficients(self, dtype: torch.dtype, device: torch.device) -> Tensor | None:
        """The dense-output matrix ``(stages, degree + 1)`` as a tensor (cached), or ``None``."""
        if self.tableau.interp is None:
            return None
        key = (dtype, device)
        coef = self._interp_cache.get(key)
        if coef is None:
            coef = self._interp_cache[key] = torch.as_tensor(self.tableau.interp, dtype=dtype, device=device)
        return coef

    def interpolate(self, theta: Tensor, h: Tensor, y0: Tensor, y1: Tensor, ks: list[Tensor],
                    f1: Tensor, coef: Tensor | None = None, elementwise: bool = False) -> Tensor:
        """Dense output ``y(t + θh)`` for ``θ: (B, K)`` in each of ``B`` steps -> ``(B, K, S)``.

        ``f1 = f(t + h, y1)`` is used by the Hermite fallback only; ``coef``: the cached
        :meth:`interp_coefficients` (looked up if not given). ``elementwise``: evaluate with
        broadcasting instead of (batched) matrix products — more kernels eagerly, but one fused
        kernel under ``torch.compile`` (a ``bmm`` over thousands of tiny matrices is not).
        """
        hc = h[:, None, None]
        if self.tableau.interp is not None:
            if coef is None:
                coef = self.interp_coefficients(theta.dtype, theta.device)
            if elementwise:
                th = theta.unsqueeze(-1)                          # (B, K, 1)
                w = coef[:, -1]
                for p in range(coef.shape[1] - 2, -1, -1):         # Horner in θ: (B, K, s)
                    w = w * th + coef[:, p]
                incr = (w.unsqueeze(-1) * torch.stack(ks, dim=1).unsqueeze(1)).sum(2)
                return y0.unsqueeze(1) + hc * incr
            powers = theta.unsqueeze(-1) ** torch.arange(coef.shape[1], device=theta.device, dtype=theta.dtype)
            w = powers @ coef.T                                  # (B, K, s)
            incr = torch.bmm(w, torch.stack(ks, dim=1))          # (B, K, S)
            return y0.unsqueeze(1) + hc * incr
        # cubic Hermite through (y0, f0) and (y1, f1)
        th = theta.unsqueeze(-1)
        th2, th3 = th * th, th * th * th
        h00 = 2 * th3 - 3 * th2 + 1
        h10 = th3 - 2 * th2 + th
        h01 = -2 * th3 + 3 * th2
        h11 = th3 - th2
        return (h00 * y0.unsqueeze(1) + h01 * y1.unsqueeze(1)
                + hc * (h10 * ks[0].unsqueeze(1) + h11 * f1.unsqueeze(1)))


class Euler(ExplicitRungeKutta):
    """Forward Euler, order 1 (fixed step only)."""
    tableau = EULER


class Midpoint(ExplicitRungeKutta):
    """Explicit midpoint rule, order 2 (fixed step only)."""
    tableau = MIDPOINT


class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoid), order 2, with an embedded Euler estimate (adaptive)."""
    tableau = HEUN


class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method (Kutta 1901), fixed step."""
    tableau = RK4


class Bosh3(ExplicitRungeKutta):
    """Bogacki–Shampine 3(2) FSAL pair (Bogacki & Shampine 1989); Hermite dense output."""
    tableau = BOSH3


class Dopri5(ExplicitRungeKutta):
    """Dormand–Prince 5(4) FSAL pair (Dormand & Prince 1980) with Shampine's order-4 dense output."""
    tableau = DOPRI5


class Tsit5(ExplicitRungeKutta):
    """Tsitouras 5(4) FSAL pair (Tsitouras 2011) with its order-4 continuous extension."""
    tableau = TSIT5
