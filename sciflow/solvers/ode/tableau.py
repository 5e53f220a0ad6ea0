"""Butcher tableaux of the explicit Runge–Kutta methods and their continuous extensions.

An explicit ``s``-stage method advances ``y' = f(t, y)`` over a step ``h`` by

.. math::
    k_i = f\\big(t + c_i h,\\; y + h \\textstyle\\sum_{j<i} a_{ij} k_j\\big),\\qquad
    y_1 = y + h \\textstyle\\sum_i b_i k_i,

and an embedded pair gives the local error estimate ``e = h Σ_i (b_i - \\hat b_i) k_i``
(Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4). A continuous extension ("dense output")
is a set of polynomials ``b_i(θ)`` with ``y(t + θh) ≈ y + h Σ_i b_i(θ) k_i``; it is stored as
the matrix ``interp[i, p]`` of the coefficient of ``θ^p`` in ``b_i(θ)`` (p = 0 … degree).

Coefficients are the published ones: Bogacki & Shampine (1989), Dormand & Prince (1980) with
Shampine's (1986) dense output as printed in Hairer et al. (``dopri5.f``), Tsitouras (2011,
Table 1 and the interpolant of §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as Fr

import numpy as np

__all__ = ["ButcherTableau", "EULER", "MIDPOINT", "HEUN", "RK4", "BOSH3", "DOPRI5", "TSIT5"]


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge–Kutta method (float64 numpy arrays).

    ``a``: ``(s, s)`` strictly lower triangular; ``b``: ``(s,)`` solution weights; ``c``: ``(s,)``
    nodes; ``b_err``: ``(s,)`` weights of the local error estimate ``b - b_hat`` or ``None`` for a
    method without an embedded pair; ``fsal``: the last stage is evaluated at ``(t+h, y_1)`` so
    it is the next step's first stage; ``interp``: ``(s, degree+1)`` dense-output polynomial
    coefficients or ``None`` (a cubic Hermite interpolant is used instead).
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int
    b_err: np.ndarray | None = None
    error_order: int | None = None
    fsal: bool = False
    interp: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = len(self.b)
        if self.a.shape != (s, s) or self.c.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent tableau shapes a{self.a.shape} b({s},) c{self.c.shape}")
        if np.any(np.triu(self.a) != 0):
            raise ValueError(f"{self.name}: an explicit method needs a strictly lower triangular `a`")
        # consistency c_i = sum_j a_ij, sum b = 1 (order >= 1)
        if not np.allclose(self.a.sum(1), self.c, atol=1e-14) or abs(self.b.sum() - 1) > 1e-14:
            raise ValueError(f"{self.name}: row sums of `a` must equal `c` and `b` must sum to 1")

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


def _lower(rows: list[list], s: int) -> np.ndarray:
    a = np.zeros((s, s))
    for i, row in enumerate(rows, start=1):
        a[i, : len(row)] = [float(x) for x in row]
    return a


def _arr(xs) -> np.ndarray:
    return np.array([float(x) for x in xs])


EULER = ButcherTableau("Euler", np.zeros((1, 1)), _arr([1]), _arr([0]), order=1)

MIDPOINT = ButcherTableau("Midpoint", _lower([[Fr(1, 2)]], 2), _arr([0, 1]), _arr([0, Fr(1, 2)]), order=2)

# Heun's method (explicit trapezoidal rule) with the Euler step as the embedded order-1 estimate.
HEUN = ButcherTableau(
    "Heun", _lower([[1]], 2), _arr([Fr(1, 2), Fr(1, 2)]), _arr([0, 1]), order=2,
    b_err=_arr([Fr(1, 2) - 1, Fr(1, 2)]), error_order=1,
)

RK4 = ButcherTableau(
    "RK4", _lower([[Fr(1, 2)], [0, Fr(1, 2)], [0, 0, 1]], 4),
    _arr([Fr(1, 6), Fr(1, 3), Fr(1, 3), Fr(1, 6)]), _arr([0, Fr(1, 2), Fr(1, 2), 1]), order=4,
)

# Bogacki & Shampine (1989), "A 3(2) pair of Runge–Kutta formulas", Appl. Math. Lett. 2(4).
_bs_b = [Fr(2, 9), Fr(1, 3), Fr(4, 9), 0]
_bs_bhat = [Fr(7, 24), Fr(1, 4), Fr(1, 3), Fr(1, 8)]
BOSH3 = ButcherTableau(
    "Bosh3", _lower([[Fr(1, 2)], [0, Fr(3, 4)], _bs_b[:3]], 4), _arr(_bs_b),
    _arr([0, Fr(1, 2), Fr(3, 4), 1]), order=3,
    b_err=_arr([x - y for x, y in zip(_bs_b, _bs_bhat)]), error_order=2, fsal=True,
)

# Dormand & Prince (1980), "A family of embedded Runge–Kutta formulae", J. Comp. Appl. Math. 6.
_dp_b = [Fr(35, 384), 0, Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84), 0]
# Embedded order-4 weights: the paper's (and Hairer's DOPRI5 code's) b_hat = (5179/57600, 0, 7571/16695,
# 393/640, -92097/339200, 187/2100, 1/40) give the error estimate e = h Σ (b_i - b_hat_i) k_i. torchdiffeq
# and diffrax use the other order-4 embedding below, b_hat' = b/3 + 2 b_hat/3 (weights sum to 1 and the
# order-4 conditions are linear in the weights, so it is order 4 too), whose estimate is exactly 2/3 of the
# paper's: at equal rtol/atol the paper's estimate takes (3/2)^(1/5) ≈ 1.08x the steps (measured on batched
# Lorenz-63: 537 vs 497 attempts). We use b_hat' so that equal tolerances mean equal step sequences and NFE.
_dp_bhat = [Fr(1951, 21600), 0, Fr(22642, 50085), Fr(451, 720), Fr(-12231, 42400), Fr(649, 6300), Fr(1, 60)]
_dp_a = _lower([
    [Fr(1, 5)],
    [Fr(3, 40), Fr(9, 40)],
    [Fr(44, 45), Fr(-56, 15), Fr(32, 9)],
    [Fr(19372, 6561), Fr(-25360, 2187), Fr(64448, 6561), Fr(-212, 729)],
    [Fr(9017, 3168), Fr(-355, 33), Fr(46732, 5247), Fr(49, 176), Fr(-5103, 18656)],
    _dp_b[:6],
], 7)
# Shampine's (1986) order-4 dense output in Hairer's form:
#   y(θ) = y0 + θ(Δ + (1-θ)(hk1 - Δ + θ(Δ - hk7 - (hk1 - Δ) + (1-θ) h Σ d_i k_i))),  Δ = h Σ b_i k_i.
_dp_d = [Fr(-12715105075, 11282082432), 0, Fr(87487479700, 32700410799), Fr(-10690763975, 1880347072),
         Fr(701980252875, 199316789632), Fr(-1453857185, 822651844), Fr(69997945, 29380423)]


def _dopri5_interp() -> np.ndarray:
    """Expand Hairer's nested dense-output formula into ``b_i(θ)`` polynomial coefficients."""
    P = np.polynomial.polynomial
    theta, one_minus = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    out = np.zeros((7, 6))
    for i in range(7):
        delta = float(_dp_b[i])
        k1 = 1.0 if i == 0 else 0.0
        k7 = 1.0 if i == 6 else 0.0
        bspl = k1 - delta
        r4 = delta - k7 - bspl
        r5 = float(_dp_d[i])
        inner = P.polyadd([r4], P.polymul(one_minus, [r5]))           # r4 + (1-θ) r5
        inner = P.polyadd([bspl], P.polymul(theta, inner))            # bspl + θ(...)
        inner = P.polyadd([delta], P.polymul(one_minus, inner))       # Δ + (1-θ)(...)
        poly = P.polymul(theta, inner)                                # θ(...)
        out[i, : len(poly)] = poly
    return out


DOPRI5 = ButcherTableau(
    "Dopri5", _dp_a, _arr(_dp_b), _arr([0, Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), 1, 1]), order=5,
    b_err=_arr([x - y for x, y in zip(_dp_b, _dp_bhat)]), error_order=4, fsal=True,
    interp=_dopri5_interp(),
)

# Tsitouras (2011), "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying
# assumption", Comput. Math. Appl. 62, Table 1 (coefficients to double precision).
_ts_b = [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
         -3.290069515436081, 2.324710524099774, 0.0]
_ts_bhat = [0.09468075576583945, 0.009183565540343254, 0.4877705284247616, 1.234297566930479,
            -2.7077123499835256, 1.866628418170587, 1 / 66]
_ts_a = _lower([
    [0.161],
    [-0.008480655492356989, 0.335480655492357],
    [2.897153057105493, -6.359448489975075, 4.3622954328695815],
    [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
    [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383],
    _ts_b[:6],
], 7)
_ts_c = np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])


def _tsit5_interp() -> np.ndarray:
    """Tsitouras' (2011, §3) interpolant, given there in factored form, as monomial coefficients."""
    P = np.polynomial.polynomial
    fac = [
        (-1.0530884977290216, [P.polyfromroots([0.0, 1.3299890189751412]),
                                [0.7139816917074209, -1.4364028541716351, 1.0]]),
        (0.1017, [[0.0, 0.0, 1.0], [1.2949852507374631, -2.1966568338249754, 1.0]]),
        (2.490627285651252793, [[0.0, 0.0, 1.0], [1.57803468208092486, -2.38535645472061657, 1.0]]),
        (-16.54810288924490272, [P.polyfromroots([0.0, 0.0, 1.21712927295533244, 0.61620406037800089])]),
        (47.37952196281928122, [P.polyfromroots([0.0, 0.0, 1.203071208372362603, 0.658047292653547382])]),
        (-34.87065786149660974, [P.polyfromroots([0.0, 0.0, 1.2, 2.0 / 3.0])]),
        (2.5, [P.polyfromroots([0.0, 0.0, 1.0, 0.6])]),
    ]
    out = np.zeros((7, 5))
    for i, (scale, factors) in enumerate(fac):
        poly = np.array([scale])
        for f in factors:
            poly = P.polymul(poly, f)
        out[i, : len(poly)] = poly
    return out


TSIT5 = ButcherTableau(
    "Tsit5", _ts_a, np.array(_ts_b), _ts_c, order=5,
    b_err=np.array(_ts_b) - np.array(_ts_bhat), error_order=4, fsal=True, interp=_tsit5_interp(),
)
