"""The benchmark problems of the causal-PINN paper as data: domain, derivatives, residual, IC/BC.

A :class:`Problem` is a frozen description; the model asks it which derivatives to compute
(pure derivatives only, so the Taylor-mode engine serves every problem), turns them into residuals
with the pure functions of :mod:`sciflow.data.pdes.residuals`, and samples collocation batches.
Coordinates are ordered ``(t, x[, y])``.

Problems (Wang, Sankaran & Perdikaris 2022, sections 4-5, and the official code):

- :func:`burgers` — ``u_t + u u_x = (0.01/pi) u_xx`` on ``[-1, 1]``, ``u0 = -sin(pi x)``,
  ``u(+-1, t) = 0``. The data are odd and 2-periodic, so the Dirichlet solution *is* the
  2-periodic one; ``periodic=True`` (default) uses that exact equivalence instead of BC points.
- :func:`allen_cahn` — ``u_t = 1e-4 u_xx + 5 u - 5 u^3``, periodic on ``[-1, 1]``,
  ``u0 = x^2 cos(pi x)``.
- :func:`kuramoto_sivashinsky` — ``u_t + a u u_x + b u_xx + g u_xxxx = 0``, periodic, with the
  constants of the data layer's ``REGIMES`` and the domain / initial state of the official code
  and data files (``KS/regular_KS.py`` + ``ks_simple.mat``; ``KS/chaotic_KS.py`` +
  ``ks_chaotic.mat``): regular ``x in [-1, 1]``, ``u0 = -sin(pi x)``; chaotic ``x in [0, 2 pi]``,
  ``u0 = cos x (1 + sin x)``; ``t in [0, 1]`` for both. The data layer's ETDRK4 solver with these
  settings reproduces both official reference arrays to relative L2 1e-9 / 1e-7.
- :func:`navier_stokes` — 2D vorticity on the torus ``[0, 2 pi]^2`` with outputs ``(u, v, w)``
  and residuals (vorticity transport, ``w = v_x - u_y``, ``u_x + v_y = 0``): all pure
  derivatives. Deviation: the paper's network outputs ``(u, v)`` and forms ``w = v_x - u_y``,
  which needs mixed third derivatives; the three-output form is equivalent at zero residual.
- :func:`lorenz63` — the Lorenz ODE as a PINN in ``t`` with the state enforced exactly at the
  window start (``u = u0 + t N(t)``, as in the official code).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor

from sciflow.data.batches import CollocationBatch
from sciflow.data.pdes import residuals as R
from sciflow.models.causal_pinn.derivatives import Derivatives

InitialCondition = Callable[[Tensor], Tensor]  # space coords (n, d_space) -> (n, channels)


@dataclass(frozen=True)
class Problem:
    """A time-dependent PINN problem.

    ``residual(derivs)`` returns ``(N, n_equations)``; ``initial_condition`` maps spatial points
    ``(n, d_space)`` to ``(n, channels)``; ``boundary_value`` (Dirichlet, non-periodic axes) maps
    space-time points ``(n, dim)`` to ``(n, channels)``; ``hard_ic`` is an ODE initial state
    enforced exactly by the network.
    """

    name: str
    channels: int
    t_span: tuple[float, float]
    space_bounds: tuple[tuple[float, float], ...]
    periodic: tuple[bool, ...]
    derivatives: tuple[tuple[int, int], ...]
    residual: Callable[[Derivatives], Tensor]
    initial_condition: InitialCondition | None = None
    boundary_value: Callable[[Tensor], Tensor] | None = None
    hard_ic: tuple[float, ...] | None = None
    parameters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.space_bounds) != len(self.periodic):
            raise ValueError(f"{self.name}: one periodic flag per spatial axis")
        if not self.t_span[1] > self.t_span[0]:
            raise ValueError(f"{self.name}: t_span must be increasing, got {self.t_span}")
        if self.initial_condition is None and self.hard_ic is None:
            raise ValueError(f"{self.name}: give an initial_condition or a hard_ic")

    @property
    def dim(self) -> int:
        return 1 + len(self.space_bounds)

    def window(self, t0: float, t1: float, initial_condition: InitialCondition | None = None,
               hard_ic: tuple[float, ...] | None = None) -> "Problem":
        """The same equation on ``[t0, t1]`` with a new initial condition (time-marching)."""
        return replace(self, t_span=(float(t0), float(t1)),
                       initial_condition=initial_condition or self.initial_condition,
                       hard_ic=hard_ic if hard_ic is not None else self.hard_ic)

    def _space(self, n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
        cols = [lo + (hi - lo) * torch.rand(n, 1, generator=generator, dtype=dtype)
                for lo, hi in self.space_bounds]
        return torch.cat(cols, dim=1) if cols else torch.zeros(n, 0, dtype=dtype)

    def sample(self, n_interior: int, n_initial: int = 0, n_boundary: int = 0, *,
               generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str = "cpu") -> CollocationBatch:
        """Uniform random collocation points (drawn on CPU from ``generator``, then moved)."""
        dtype = dtype or torch.get_default_dtype()
        t0, t1 = self.t_span
        t = t0 + (t1 - t0) * torch.rand(n_interior, 1, generator=generator, dtype=dtype)
        interior = torch.cat([t, self._space(n_interior, generator, dtype)], dim=1)
        initial = initial_values = boundary = boundary_values = None
        if n_initial and self.initial_condition is not None and self.hard_ic is None:
            xs = self._space(n_initial, generator, dtype)
            initial = torch.cat([torch.full((n_initial, 1), t0, dtype=dtype), xs], dim=1)
            initial_values = self.initial_condition(xs).to(dtype)
        nonperiodic = [i for i, p in enumerate(self.periodic) if not p]
        if n_boundary and nonperiodic and self.boundary_value is not None:
            tb = t0 + (t1 - t0) * torch.rand(n_boundary, 1, generator=generator, dtype=dtype)
            xs = self._space(n_boundary, generator, dtype)
            axis = torch.randint(len(nonperiodic), (n_boundary,), generator=generator)
            side = torch.randint(2, (n_boundary,), generator=generator)
            for j, a in enumerate(nonperiodic):
                lo, hi = self.space_bounds[a]
                sel = axis == j
                xs[sel, a] = torch.where(side[sel] == 0, torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype))
            boundary = torch.cat([tb, xs], dim=1)
            boundary_values = self.boundary_value(boundary).to(dtype)
        batch = CollocationBatch(interior, initial, initial_values, boundary, boundary_values)
        return batch.to(device)


def burgers(nu: float = 0.01 / math.pi, periodic: bool = True) -> Problem:
    """Viscous Burgers shock problem (Raissi et al. 2019; reference ``burgers_shock``)."""
    return Problem(
        "burgers", 1, (0.0, 1.0), ((-1.0, 1.0),), (periodic,), ((0, 1), (1, 2)),
        residual=lambda d: R.burgers(d.value, d.d(0), d.d(1), d.d(1, 2), nu),
        initial_condition=lambda x: -torch.sin(math.pi * x[:, :1]),
        boundary_value=lambda p: torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device),
        parameters={"nu": nu})


def allen_cahn(diffusivity: float = 1e-4, reaction: float = 5.0) -> Problem:
    """Allen–Cahn benchmark (reference ``allen_cahn``)."""
    return Problem(
        "allen_cahn", 1, (0.0, 1.0), ((-1.0, 1.0),), (True,), ((0, 1), (1, 2)),
        residual=lambda d: R.allen_cahn(d.value, d.d(0), d.d(1, 2), diffusivity, reaction),
        initial_condition=lambda x: x[:, :1] ** 2 * torch.cos(math.pi * x[:, :1]),
        parameters={"diffusivity": diffusivity, "reaction": reaction})


# domain and initial state of the two KS regimes (official code / data files, see module doc)
KS_SETUPS: dict[str, tuple[tuple[float, float], InitialCondition]] = {
    "regular": ((-1.0, 1.0), lambda x: -torch.sin(math.pi * x[:, :1])),
    "chaotic": ((0.0, 2 * math.pi), lambda x: torch.cos(x[:, :1]) * (1 + torch.sin(x[:, :1]))),
}


def kuramoto_sivashinsky(regime: str = "regular", t_final: float = 1.0) -> Problem:
    """KS in the paper's regimes (``"regular"`` / ``"chaotic"``): constants from the data layer,
    domain and initial state from :data:`KS_SETUPS`."""
    from sciflow.data.pdes.kuramoto_sivashinsky import REGIMES

    if regime not in REGIMES or regime not in KS_SETUPS:
        raise ValueError(f"unknown KS regime {regime!r}; expected one of {sorted(KS_SETUPS)}")
    p = REGIMES[regime]
    bounds, ic = KS_SETUPS[regime]
    return Problem(
        f"kuramoto_sivashinsky_{regime}", 1, (0.0, t_final), (bounds,), (True,),
        ((0, 1), (1, 4)),
        residual=lambda d: R.kuramoto_sivashinsky(d.value, d.d(0), d.d(1), d.d(1, 2), d.d(1, 4), **p),
        initial_condition=ic,
        parameters={**p, "regime": regime})


def taylor_green_velocity(x: Tensor, y: Tensor, k: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Taylor–Green ``(u, v, w)`` at ``t = 0`` on ``[0, 2 pi]^2``: ``psi = sin(kx) sin(ky) / k``."""
    u = torch.sin(k * x) * torch.cos(k * y)
    v = -torch.cos(k * x) * torch.sin(k * y)
    return u, v, 2 * k * torch.sin(k * x) * torch.sin(k * y)


# (amplitude, k_x, k_y, phase) of the vorticity modes of :func:`fourier_mode_ic`'s default:
# Taylor–Green (k = 1) plus two modes that make the advection term non-zero
NS_MODES: tuple[tuple[float, int, int, float], ...] = ((2.0, 1, 1, 0.0), (0.8, 2, 1, 0.3), (0.5, 1, 3, 1.1))


def fourier_mode_ic(modes: tuple[tuple[float, int, int, float], ...] = NS_MODES) -> InitialCondition:
    """Initial ``(u, v, w)`` of the vorticity ``w0 = sum_m A_m cos(a_m x + b_m y + phi_m)`` on the
    ``2 pi`` torus, with the velocity of the stream function (``-Lap psi = w``, ``u = psi_y``,
    ``v = -psi_x``, the convention of :mod:`sciflow.data.pdes.navier_stokes`):
    ``u = -sum A b / (a^2 + b^2) sin(.)``, ``v = sum A a / (a^2 + b^2) sin(.)``. Exact at any
    point, so the PINN's IC loss needs no interpolation of a grid."""
    for a_, kx, ky, _ in modes:
        if kx == 0 and ky == 0:
            raise ValueError("fourier_mode_ic: the (0, 0) mode carries no velocity; drop it")

    def ic(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        u = torch.zeros_like(x)
        v, w = torch.zeros_like(x), torch.zeros_like(x)
        for amp, kx, ky, phase in modes:
            arg = kx * x + ky * y + phase
            k2 = kx * kx + ky * ky
            w = w + amp * torch.cos(arg)
            u = u - amp * ky / k2 * torch.sin(arg)
            v = v + amp * kx / k2 * torch.sin(arg)
        return torch.stack([u, v, w], dim=1)

    return ic


def navier_stokes(nu: float = 1e-2, t_final: float = 1.0,
                  initial_condition: InitialCondition | None = None,
                  modes: tuple[tuple[float, int, int, float], ...] | None = None) -> Problem:
    """2D NS in velocity–vorticity form on the ``2 pi`` torus. Default IC: Taylor–Green (k = 1),
    whose exact solution decays as ``exp(-2 nu t)`` (see :func:`navier_stokes_exact`);
    ``modes``: the Fourier-mode IC of :func:`fourier_mode_ic` (nonlinear; reference from the
    spectral solver of the data layer, :func:`~sciflow.models.causal_pinn.evaluate.reference`)."""
    if modes is not None and initial_condition is not None:
        raise ValueError("navier_stokes: give initial_condition or modes, not both")

    def ic(p: Tensor) -> Tensor:
        return torch.stack(taylor_green_velocity(p[:, 0], p[:, 1]), dim=1)

    if modes is not None:
        initial_condition = fourier_mode_ic(tuple(modes))

    def residual(d: Derivatives) -> Tensor:
        u, v, w = d.value.unbind(1)
        dt, dx, dy, dxx, dyy = d.d(0), d.d(1), d.d(2), d.d(1, 2), d.d(2, 2)
        return torch.stack([
            R.navier_stokes_vorticity(u, v, dt[:, 2], dx[:, 2], dy[:, 2], dxx[:, 2], dyy[:, 2], nu),
            R.vorticity_definition(w, dy[:, 0], dx[:, 1]),
            R.continuity(dx[:, 0], dy[:, 1]),
        ], dim=1)

    L = 2 * math.pi
    return Problem("navier_stokes", 3, (0.0, t_final), ((0.0, L), (0.0, L)), (True, True),
                   ((0, 1), (1, 2), (2, 2)), residual=residual,
                   initial_condition=initial_condition or ic,
                   parameters={"nu": nu, **({} if modes is None else {"modes": tuple(modes)})})


def navier_stokes_exact(t: Tensor, x: Tensor, y: Tensor, nu: float = 1e-2) -> Tensor:
    """Taylor–Green exact solution ``(..., 3)`` = ``(u, v, w) exp(-2 nu t)``."""
    u, v, w = taylor_green_velocity(x, y)
    return torch.stack([u, v, w], dim=-1) * torch.exp(-2 * nu * t)[..., None]


def lorenz63(state0: tuple[float, float, float] = (1.0, 1.0, 1.0), t_final: float = 0.5,
             sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> Problem:
    """Lorenz-63 as an ODE PINN on one window ``[0, t_final]`` (time-march for longer)."""
    return Problem(
        "lorenz63", 3, (0.0, t_final), (), (), ((0, 1),),
        residual=lambda d: R.lorenz63(d.value, d.d(0), sigma, rho, beta),
        hard_ic=tuple(float(s) for s in state0),
        parameters={"sigma": sigma, "rho": rho, "beta": beta})


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "burgers": burgers,
    "allen_cahn": allen_cahn,
    "kuramoto_sivashinsky": kuramoto_sivashinsky,
    "kuramoto_sivashinsky_chaotic": lambda t_final=1.0: kuramoto_sivashinsky("chaotic", t_final),
    "navier_stokes": navier_stokes,
    "navier_stokes_modes": lambda t_final=1.0: navier_stokes(modes=NS_MODES, t_final=t_final),
    "lorenz63": lorenz63,
}


def has_t_final(name: str) -> bool:
    """Whether problem ``name`` takes a ``t_final`` (Burgers and Allen–Cahn are fixed by their
    reference data to ``t`` in ``[0, 1]``)."""
    return "t_final" in inspect.signature(PROBLEMS[name]).parameters


def make_problem(name: str, t_final: float | None = None) -> Problem:
    """The problem ``name`` of :data:`PROBLEMS`, on ``[0, t_final]`` if given (else its default)."""
    if t_final is None:
        return PROBLEMS[name]()
    if not has_t_final(name):
        raise ValueError(f"problem {name!r} has a fixed time span; t_final does not apply")
    return PROBLEMS[name](t_final=t_final)
