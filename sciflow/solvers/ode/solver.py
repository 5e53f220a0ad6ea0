"""The ODE solver interface the stepping loops use: declared capabilities plus two kernels.

The loops (:mod:`._fixed_step`, :mod:`._shared_clock`, :mod:`._integrate`) work on the flat layout
``y: (B, S)`` with per-trajectory times ``t: (B,)`` and steps ``h: (B,)`` and need only:

* :meth:`ODESolver.step` ``(f, t, y, h, k1) -> (y1, ks, err)`` — one step from ``(t, y)`` given
  ``k1 = f(t, y)``; ``ks`` is whatever :meth:`ODESolver.interpolate` needs (the stages of an
  explicit Runge–Kutta method, the stage increments of a Rosenbrock method) and, for FSAL
  methods, ends with ``f(t + h, y1)``; ``err`` the local error estimate (``None`` without one);
* :meth:`ODESolver.interpolate` — dense output inside an accepted step;
* the declared capabilities below, checked once at the boundary of a solve
  (:func:`._core.check_solver_controller`), never discovered with ``hasattr``.

To write a new solver, subclass :class:`ODESolver` (explicit Runge–Kutta methods only need a
tableau: :class:`~sciflow.solvers.ode.runge_kutta.ExplicitRungeKutta`).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

__all__ = ["ODESolver", "combination", "scalar"]

Field = Callable[[Tensor, Tensor], Tensor]


_SCALARS: dict[tuple, Tensor] = {}


def scalar(c: float, like: Tensor) -> Tensor | float:
    """``c`` as a cached 0-d tensor of ``like``'s dtype and device (eager only; ``c`` itself while
    compiling). ``x * c`` with a Python float wraps ``c`` in a float64 tensor and converts it on
    every call (~2 µs of a ~3.5 µs multiply on a 512 × 3 float32 state); with a 0-d tensor of the
    right dtype the product is the same number, without the conversion."""
    if torch.compiler.is_compiling():
        return c
    key = (c, like.dtype, like.device)
    t = _SCALARS.get(key)
    if t is None:
        if len(_SCALARS) > 4096:        # tableaux and controllers: a few dozen constants each
            _SCALARS.clear()
        t = _SCALARS[key] = torch.tensor(c, dtype=like.dtype, device=like.device)
    return t


def combination(coeffs, xs: list[Tensor]) -> Tensor | None:
    """``Σ_j coeffs[j] xs[j]`` over the non-zero coefficients (``None`` if all are zero): the stage
    sums of Runge–Kutta and Rosenbrock steps, one ``mul`` then one ``add(alpha=)`` per non-zero
    coefficient (``alpha`` is a Scalar: no conversion)."""
    acc = None
    for c, x in zip(coeffs, xs):
        if c == 0.0:
            continue
        acc = x * scalar(c, x) if acc is None else acc.add(x, alpha=c)
    return acc


class ODESolver:
    """Base of the one-step ODE solvers ``solve`` / ``odeint`` accept.

    Declared capabilities (class attributes or properties): ``order`` (global order),
    ``error_order`` (order of the embedded solution behind the error estimate, ``None`` if there
    is none), ``adaptive`` (usable with ``PIController``), ``fsal``, ``stages`` (vector-field
    evaluations per step, the first being ``k1``), ``term_kinds`` (``order``, ``error_order`` and
    ``stages`` read from the subclass's ``tableau`` by default), and

    * ``jacobians_per_step`` — evaluations of ``∂f/∂y`` per attempted step (reported as
      ``njev`` in the solve's stats when non-zero; explicit methods: 0);
    * ``compilable`` — usable with ``compile=True``;
    * ``backsolve`` — usable as the backward solver of
      :class:`~sciflow.solvers.ode.adjoint.BacksolveAdjoint`;
    * ``checkpoint`` — usable with :class:`~sciflow.solvers.ode.adjoint.CheckpointAdjoint`;
    * ``default_window`` — save times an adaptive step may contain before it is shortened (the
      ``window`` of ``solve`` when not given); ``1`` makes every save time a step end point, for
      solvers whose dense output is less accurate than their steps.
    """

    tableau: Any  # the method's coefficients (order, error_order, stages)
    term_kinds: ClassVar[tuple[str, ...]] = ("ode",)
    jacobians_per_step: ClassVar[int] = 0
    compilable: ClassVar[bool] = True
    backsolve: ClassVar[bool] = True
    checkpoint: ClassVar[bool] = True
    default_window: ClassVar[int] = 4

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def error_order(self) -> int | None:
        return self.tableau.error_order

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    @property
    def fsal(self) -> bool:
        return False

    @property
    def stages(self) -> int:
        return self.tableau.stages

    def step(self, f: Field, t: Tensor, y: Tensor, h: Tensor, k1: Tensor
             ) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """One step; shapes ``t, h: (B,)``, ``y, k1: (B, S)``; returns ``(y1, ks, err)``."""
        raise NotImplementedError

    def interp_coefficients(self, dtype: torch.dtype, device: torch.device) -> Tensor | None:
        """Dense-output coefficients as a tensor (cached) for :meth:`interpolate`, or ``None``."""
        return None

    def interpolate(self, theta: Tensor, h: Tensor, y0: Tensor, y1: Tensor, ks: list[Tensor],
                    f1: Tensor, coef: Tensor | None = None, elementwise: bool = False) -> Tensor:
        """Dense output ``y(t + θh)`` for ``θ: (B, K)`` in each of ``B`` steps -> ``(B, K, S)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))
