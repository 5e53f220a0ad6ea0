"""Rosenbrock (linearly implicit) solvers for stiff ODEs: Rodas4.

A Rosenbrock method replaces the Newton iterations of an implicit Runge–Kutta method by one linear
solve per stage with the exact Jacobian ``J = ∂f/∂y (t0, y0)``. In the *transformed* form of
Hairer & Wanner (*Solving ODEs II*, 2nd ed., 1996, §IV.7, eqs. (7.4)–(7.5) and the code
``rodas.f``), with stage increments ``U_i`` and ``W = I/(hγ) − J``,

.. math::
    Y_i &= y_0 + \\textstyle\\sum_{j<i} a_{ij} U_j, \\\\
    W\\, U_i &= f(t_0 + α_i h,\\, Y_i) + \\textstyle\\sum_{j<i} \\frac{c_{ij}}{h} U_j
               + h\\, d_i\\, \\partial_t f(t_0, y_0), \\\\
    y_1 &= y_0 + \\textstyle\\sum_i m_i U_i, \\qquad e = y_1 - \\hat y_1 = \\textstyle\\sum_i (m_i - \\hat m_i) U_i,

so no stage needs a matrix–vector product with ``J``; one LU factorisation of ``W`` per step serves
all stages. For non-autonomous fields ``∂f/∂t`` enters through ``d_i = Σ_j γ_ij``.

**Rodas4** (Hairer & Wanner 1996, §IV.7, Table 7.2 "RODAS"; coefficients of ``rodas.f``, subroutine
``ROCOE``, ``METH = 1``; checked against the convergence orders in ``tests/solvers/test_stiff.py``):
6 stages, order 4 with an embedded order-3 solution, ``γ = 1/4``,
L-stable (``R(∞) = 0``) and stiffly accurate — ``α_5 = α_6 = 1``, the embedded solution is
``Y_6 = Y_5 + U_5`` and ``y_1 = Y_6 + U_6`` (``m = (a_51, …, a_54, 1, 1)``, ``m̂ = (a_51, …, a_54,
1, 0)``), so the error estimate is ``e = U_6``. Dense output: the order-3 continuous extension of
``rodas.f`` (``CONTRO``), ``y(t_0 + θh) = (1-θ) y_0 + θ (y_1 + (1-θ)(q_1 + θ q_2))`` with
``q_k = Σ_j d^{(k)}_j U_j``. That extension is not stiff-aware: on Prothero–Robinson with
``λ = 10^6`` a step of ``h = 1`` ends within ``5·10^-8`` of the solution while the interpolant is
off by ``4·10^-3`` mid-step (the error estimate, not the interpolant, sets the step). So by default
(``default_window = 1``) every save time is a step end point and the extension is evaluated at
``θ = 1`` only (where it is ``y_1`` exactly); ``solve(..., window=4)`` interpolates instead. No
deviation from the published coefficients; ``∂f/∂t`` is computed exactly by AD instead of
``rodas.f``'s finite difference.

Jacobians. On the flat layout ``y: (B, S)`` the rows are independent trajectories, so ``S``
vector–Jacobian products along the output basis vectors (``torch.func.vjp``, the pull-back under
``torch.func.vmap``: one batched call) give every trajectory's Jacobian ``(B, S, S)`` and ``∂f/∂t``
at once (reverse rather than forward mode: see :meth:`Rosenbrock.jacobian`).
Cost per attempted step: that call, one batched LU (``O(B S^3)``), 6 triangular solves,
5 new evaluations of ``f`` — fine up to a few hundred states per trajectory. With one clock for a
batch (``batch_ndim = 0``) the "trajectory" is the whole batch, whose Jacobian is ``N × N`` for
``N`` = all entries: give batched stiff problems ``batch_ndim ≥ 1``.

Gradients. :class:`~sciflow.solvers.ode.adjoint.DirectAdjoint` works: backpropagation through the
steps, through the Jacobian (``torch.func`` composes with the outer backward pass) and the LU solves
— the exact gradient of the computed solution (tested against finite differences and the analytic
derivative). Refused with an error naming the reason:
:class:`~sciflow.solvers.ode.adjoint.CheckpointAdjoint` (``torch.func.vjp`` cannot run under the
saved-tensor hooks of ``torch.utils.checkpoint``) and
:class:`~sciflow.solvers.ode.adjoint.BacksolveAdjoint` with Rodas4 as its backward solver (the
adjoint system's field calls ``torch.autograd.grad``, which ``torch.func`` cannot differentiate);
``BacksolveAdjoint(solver=Dopri5())`` — Rodas4 forwards, an explicit solver backwards — works but
is only sensible when the backward problem is not stiff. ``compile=True`` is refused (the
Jacobian's ``vmap``/``vjp`` and the LU are not compiled here).

Checks: a vector field that ``torch.func`` (``vjp``/``vmap``) cannot handle raises a ``TypeError``
naming that; a singular ``W`` (``1/(hγ)`` an eigenvalue of ``J``) or a non-finite Jacobian raises naming
the trajectory, time and step — one host sync per step (a ``(B,)`` flag), skipped under an outer
``torch.func.vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ._flat_field import FlatField
from .solver import Field, ODESolver, combination

__all__ = ["RosenbrockTableau", "Rosenbrock", "Rodas4", "RODAS4"]


@dataclass(frozen=True)
class RosenbrockTableau:
    """Coefficients of a Rosenbrock method in the transformed form (module docstring).

    ``a``, ``c``: strictly lower triangular rows (``a[i]`` has ``i`` entries); ``alpha``,
    ``d``: ``(s,)`` stage times and ``∂f/∂t`` weights; ``m``: solution weights; ``e``: error weights
    ``m - m̂``; ``dense``: rows of the continuous extension (``q_k = Σ_j dense[k][j] U_j``).
    """

    name: str
    gamma: float
    alpha: tuple[float, ...]
    d: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    c: tuple[tuple[float, ...], ...]
    m: tuple[float, ...]
    e: tuple[float, ...]
    order: int
    error_order: int
    dense: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        s = len(self.m)
        if not (len(self.alpha) == len(self.d) == len(self.e) == len(self.a) == len(self.c) == s):
            raise ValueError(f"{self.name}: inconsistent stage counts")
        if any(len(self.a[i]) != i or len(self.c[i]) != i for i in range(s)):
            raise ValueError(f"{self.name}: row i of `a` and `c` must have i entries")

    @property
    def stages(self) -> int:
        return len(self.m)


# Hairer & Wanner (1996), rodas.f, ROCOE with METH = 1 (the RODAS coefficients of §IV.7).
_A51, _A52, _A53, _A54 = 0.1221224509226641e+01, 0.6019134481288629e+01, 0.1253708332932087e+02, -0.6878860361058950e+00
RODAS4 = RosenbrockTableau(
    name="Rodas4", gamma=0.25,
    alpha=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0),
    a=((),
       (0.1544e+01,),
       (0.9466785280815826e+00, 0.2557011698983284e+00),
       (0.3314825187068521e+01, 0.2896124015972201e+01, 0.9986419139977817e+00),
       (_A51, _A52, _A53, _A54),
       (_A51, _A52, _A53, _A54, 1.0)),
    c=((),
       (-0.56688e+01,),
       (-0.2430093356833875e+01, -0.2063599157091915e+00),
       (-0.1073529058151375e+00, -0.9594562251023355e+01, -0.2047028614809616e+02),
       (0.7496443313967647e+01, -0.1024680431464352e+02, -0.3399990352819905e+02, 0.1170890893206160e+02),
       (0.8083246795921522e+01, -0.7981132988064893e+01, -0.3152159432874371e+02, 0.1631930543123136e+02,
        -0.6058818238834054e+01)),
    m=(_A51, _A52, _A53, _A54, 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    order=4, error_order=3,
    dense=((0.1012623508344586e+02, -0.7487995877610167e+01, -0.3480091861555747e+02, -0.7992771707568823e+01,
            0.1025137723295662e+01, 0.0),
           (-0.6762803392801253e+00, 0.6087714651680015e+01, 0.1643084320892478e+02, 0.2476722511418386e+02,
            -0.6594389125716872e+01, 0.0)),
)


def _sync_any(x: Tensor) -> bool:
    """``bool(x.any())``; ``False`` under an outer ``torch.func.vmap`` (the check is skipped)."""
    try:
        return bool(x.any())
    except RuntimeError as err:
        if "vmap" in str(err):
            return False
        raise


class Rosenbrock(ODESolver):
    """A Rosenbrock method in transformed form, defined by its :class:`RosenbrockTableau`.

    Declared capabilities: ``order``, ``error_order``, ``adaptive`` (always: embedded pair),
    ``fsal = False``, ``stages``, ``jacobians_per_step = 1`` (one batched Jacobian
    plus ``∂f/∂t`` per attempted step, reported as ``njev``), ``compilable = False``,
    ``backsolve = False``, ``checkpoint = False``, ``default_window = 1`` (save times are step end
    points). Subclasses set ``tableau``.
    """

    tableau: ClassVar[RosenbrockTableau]
    jacobians_per_step: ClassVar[int] = 1
    compilable: ClassVar[bool] = False
    backsolve: ClassVar[bool] = False
    checkpoint: ClassVar[bool] = False
    default_window: ClassVar[int] = 1

    # kernels -------------------------------------------------------------------------------
    def jacobian(self, f: Field, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(∂f/∂y (B, S, S), ∂f/∂t (B, S))`` at ``(t (B,), y (B, S))``.

        One evaluation of ``f`` and ``S`` vector–Jacobian products along the output basis vectors
        ``e_i`` (``torch.func.vjp``, its pull-back ``vmap``-ed over the ``e_i``): since row ``b`` of
        ``f`` depends on row ``b`` of ``y`` (and ``t_b``) only, the pull-back of ``e_i`` (broadcast
        over the batch) is row ``i`` of every trajectory's Jacobian and, w.r.t. ``t``, ``∂f_i/∂t``
        of every trajectory. ``torch.func`` differentiates ``f`` alone (not the autograd history
        of ``y``) and composes with an outer backward pass, so gradients flow through ``J`` too.

        Reverse rather than forward mode (``S`` JVPs): measured on Robertson's field (Python-float
        rate constants), torch 2.13 CPU, B = 1: 0.6 ms per Jacobian against 4 ms — forward-mode AD
        of ``tensor * python_float`` runs a Python decomposition — and, in the same case, the outer
        gradient through the forward-mode Jacobian came out zero.
        """
        B, S = y.shape
        try:
            _, pull = torch.func.vjp(f, t, y)
            eye = torch.eye(S, dtype=y.dtype, device=y.device).unsqueeze(1).expand(S, B, S)
            gt, gy = torch.func.vmap(pull)(eye)                     # (S, B), (S, B, S)
        except (RuntimeError, NotImplementedError, TypeError) as err:
            raise TypeError(
                f"{type(self).__name__} needs the Jacobian ∂f/∂y, computed by automatic differentiation "
                f"(torch.func.vjp, vmap-ed over the basis vectors), and the vector field does not support "
                f"that: {type(err).__name__}: {str(err).strip().splitlines()[0]}. Write f(t, y) with "
                f"differentiable torch operations (no .item()/.tolist()/numpy, no in-place writes into "
                f"its inputs, no torch.autograd.Function without torch.func support, no random ops), "
                f"or use an explicit solver such as Dopri5()") from err
        return gy.transpose(0, 1), gt.transpose(0, 1)

    def step(self, f: Field, t: Tensor, y: Tensor, h: Tensor, k1: Tensor
             ) -> tuple[Tensor, list[Tensor], Tensor]:
        """One step from ``(t, y)`` of size ``h``; ``k1 = f(t, y)``.

        Shapes: ``t, h: (B,)``, ``y, k1: (B, S)``. Returns ``(y1, [U_1 … U_s], e)``. Rows with
        ``h = 0`` (finished trajectories of the masked loop) return ``y1 = y``.
        """
        tab = self.tableau
        jac_f = f.raw if isinstance(f, FlatField) else f         # uncounted: reported as njev
        live = h != 0
        hs = torch.where(live, h, torch.ones_like(h))            # finite W for finished rows
        J, ft = self.jacobian(jac_f, t, y)
        S = y.shape[1]
        W = torch.diag_embed((1.0 / (tab.gamma * hs)).unsqueeze(-1).expand(-1, S)) - J
        LU, piv, info = torch.linalg.lu_factor_ex(W)
        self._check(info, J, live, t, hs, f)
        keep = live.to(y.dtype).unsqueeze(-1)
        inv_h = (1.0 / hs).unsqueeze(-1)
        hcol = hs.unsqueeze(-1)
        Us: list[Tensor] = []
        for i in range(tab.stages):
            if i == 0:
                rhs = k1
            else:
                Yi = y + combination(tab.a[i], Us)
                rhs = f(t + tab.alpha[i] * h, Yi)
                acc = combination(tab.c[i], Us)
                if acc is not None:
                    rhs = torch.addcmul(rhs, inv_h, acc)
            if tab.d[i] != 0.0:
                rhs = torch.addcmul(rhs, hcol * tab.d[i], ft)
            U = torch.linalg.lu_solve(LU, piv, rhs.unsqueeze(-1)).squeeze(-1)
            Us.append(U * keep)
        y1 = y + combination(tab.m, Us)
        err = combination(tab.e, Us)
        return y1, Us, err

    def _check(self, info: Tensor, J: Tensor, live: Tensor, t: Tensor, h: Tensor, f: Field) -> None:
        """Raise on a singular ``W`` or a non-finite Jacobian (one host sync)."""
        nonfinite = ~torch.isfinite(J).flatten(1).all(1)
        bad = live & ((info != 0) | nonfinite)
        if not _sync_any(bad):
            return
        i = int(torch.nonzero(bad)[0])
        owner = f if isinstance(f, FlatField) else getattr(f, "__self__", None)   # FlatField.raw
        sign = owner.direction if isinstance(owner, FlatField) else 1
        where = f"at t = {sign * t[i].item():.6g} (trajectory {i}) with step h = {h[i].item():.3g}"
        if bool(nonfinite[i]):
            raise FloatingPointError(f"{type(self).__name__}: the Jacobian ∂f/∂y is non-finite (nan/inf) {where}; "
                                     f"f must be differentiable along the solution")
        raise FloatingPointError(
            f"{type(self).__name__}: the matrix I/(hγ) - ∂f/∂y is singular {where}, γ = {self.tableau.gamma}: "
            f"1/(hγ) = {1.0 / (self.tableau.gamma * h[i].item()):.6g} is an eigenvalue of the Jacobian. "
            f"Change the step (dt) or use adaptive steps (PIController)")

    def interpolate(self, theta: Tensor, h: Tensor, y0: Tensor, y1: Tensor, ks: list[Tensor],
                    f1: Tensor, coef: Tensor | None = None, elementwise: bool = False) -> Tensor:
        """Dense output ``y(t + θh)`` for ``θ: (B, K)`` -> ``(B, K, S)`` from the continuous
        extension (order 3); ``ks`` are the stage increments ``U_i`` of the step."""
        q1 = combination(self.tableau.dense[0], ks).unsqueeze(1)
        q2 = combination(self.tableau.dense[1], ks).unsqueeze(1)
        th = theta.unsqueeze(-1)
        one_minus = 1.0 - th
        return one_minus * y0.unsqueeze(1) + th * (y1.unsqueeze(1) + one_minus * (q1 + th * q2))


class Rodas4(Rosenbrock):
    """Rodas4 (Hairer & Wanner 1996, §IV.7): 6-stage L-stable, stiffly accurate Rosenbrock method
    of order 4 with an embedded order-3 error estimate and an order-3 continuous extension, for
    stiff problems (see the module docstring for the form, the coefficients' source and the
    adjoints it supports)."""

    tableau = RODAS4
