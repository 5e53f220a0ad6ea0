r"""Control with WDNO: the cost ``J(u, f)`` used for guidance and its evaluation by the solver.

Burgers control (Hu et al. 2025, Sec. 4.1 and App. B; the DiffPhyCon setting): reach a target
final state with little forcing energy,

.. math::

    J(u, f) = \frac{1}{|\Omega|}\int_\Omega |u(T, x) - u^*(x)|^2\,dx
              + \lambda\,\frac{1}{T |\Omega|}\int_0^T\!\!\int_\Omega |f(t, x)|^2\,dx\,dt,

discretised by means over the uniform grid. A generated control is judged by re-running the
numerical solver (:func:`sciflow.data.pdes.burgers.solve_dirichlet`) with it, never by the
model's own predicted ``u``.

Two guidance objectives (both used through ``WDNO.generate(guidance=..., guidance_scale=w)``,
which differentiates them w.r.t. the denoised estimate :math:`\hat x_0`):

* :class:`ControlObjective` — the paper's: ``J`` on the generated pair :math:`(\hat u, \hat f)`
  decoded from :math:`\hat x_0` (official ``ddpm_guidance_loss``). Its state term depends on the
  generated ``u`` only, so its gradient reaches the forcing channels only through the energy
  term; with the target ``u_T`` given as a condition the model's own :math:`\hat u(T)` is already
  (close to) the target. On the CPU Burgers benchmark it lowers the model's own ``J`` 12x while
  the solver-evaluated ``J`` of the forcing does not move (``docs/models/wavelet_diffusion.md``).
* :class:`ResimulatedObjective` — the state term on the trajectory *re-simulated* from
  :math:`\hat f` by a differentiable solver (:func:`burgers_simulator`; reverse-mode autograd
  through the ETDRK4 steps, i.e. the discrete adjoint), :math:`J(S(u_0, \hat f), \hat f)`. Its
  gradient is the physical sensitivity of the final state to the forcing. This is a deviation
  from the paper (which reads ``u`` off the sample), in the spirit of diffusion posterior
  sampling with a known forward operator (Chung et al., ICLR 2023), here the PDE solver. It
  steers (solver ``J`` 31x lower on that benchmark), but needs a differentiable solver, and the
  gain is the adjoint gradient's: plain gradient descent on ``f`` with as many solver gradients
  does as well there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from sciflow.data.pdes.burgers import solve_dirichlet

__all__ = ["ControlObjective", "ResimulatedObjective", "burgers_simulator", "BurgersControlResult",
           "evaluate_burgers_control", "grid_forcing"]


class ControlObjective:
    """``J(u, f)`` per sample (see module docstring) on fields ``u (N, C, T, *S)``, ``f (N, C_f, T, *S)``.

    ``target``: ``(B, C, *S)``; ``N`` may be a multiple of ``B`` (``n_samples * B``, sample-major, as in
    :meth:`WDNO.generate`). ``weight``: the energy weight ``λ``. Differentiable in ``u`` and ``f``.
    """

    def __init__(self, target: Tensor, weight: float = 0.0) -> None:
        if not isinstance(target, Tensor) or target.ndim < 3:
            raise ValueError(f"ControlObjective target must be (batch, channel, *space), got "
                             f"{getattr(target, 'shape', type(target).__name__)}")
        if weight < 0:
            raise ValueError(f"ControlObjective weight must be >= 0, got {weight}")
        self.target, self.weight = target, float(weight)

    def state_cost(self, u: Tensor) -> Tensor:
        b = self.target.shape[0]
        if u.shape[0] % b:
            raise ValueError(f"ControlObjective: batch {u.shape[0]} is not a multiple of the target batch {b}")
        final = u[:, :, -1].unflatten(0, (-1, b))  # (n, B, C, *S)
        if final.shape[2:] != self.target.shape[1:]:
            raise ValueError(f"ControlObjective: final state {tuple(final.shape[2:])} (channel, *space) does not "
                             f"match the target's {tuple(self.target.shape[1:])}")
        return (final - self.target.to(u)).pow(2).flatten(2).mean(-1).flatten(0, 1)

    @staticmethod
    def energy(f: Tensor) -> Tensor:
        return f.pow(2).flatten(1).mean(-1)

    def __call__(self, u: Tensor, f: Tensor | None) -> Tensor:
        j = self.state_cost(u)
        if self.weight and f is not None:
            j = j + self.weight * self.energy(f)
        return j


class ResimulatedObjective(ControlObjective):
    r"""``J(S(f), f)``: :class:`ControlObjective` with the state term on the trajectory re-simulated
    from the forcing, ``S = simulate``, instead of the generated ``u`` (see module docstring).

    ``simulate(f) -> u``: differentiable, ``f (N, C_f, T, *S)`` -> ``u (N, C, T, *S)``, e.g.
    :func:`burgers_simulator`. The generated ``u`` passed to ``__call__`` is ignored, so the
    guidance gradient is non-zero on the forcing channels only. ``target``, ``weight``: as in
    :class:`ControlObjective`.
    """

    def __init__(self, simulate: Callable[[Tensor], Tensor], target: Tensor, weight: float = 0.0) -> None:
        super().__init__(target, weight)
        if not callable(simulate):
            raise TypeError(f"ResimulatedObjective: simulate must be callable f -> u, got {type(simulate).__name__}")
        self.simulate = simulate

    def __call__(self, u: Tensor | None, f: Tensor | None) -> Tensor:
        if f is None:
            raise ValueError("ResimulatedObjective needs the generated forcing f (a control model); got None")
        return super().__call__(self.simulate(f), f)


def grid_forcing(values: Tensor, t: Tensor, x: Tensor):
    """Bilinear interpolant ``f(tt, x_query) -> (N, len(x_query))`` of grid values ``(N, T, X)`` on
    uniform-or-not increasing grids ``t (T,)``, ``x (X,)`` (constant outside in ``t``)."""
    values = values.to(torch.float64)
    t = t.to(torch.float64).cpu().contiguous()  # indices by host floats: no device sync per call
    x = x.to(torch.float64).to(values.device).contiguous()

    def f(tt: float, xq: Tensor) -> Tensor:
        tt = min(max(float(tt), float(t[0])), float(t[-1]))
        i = int(torch.searchsorted(t, torch.tensor(tt, dtype=torch.float64), right=True).clamp(1, len(t) - 1)) - 1
        w = (tt - float(t[i])) / float(t[i + 1] - t[i])
        row = (1 - w) * values[:, i] + w * values[:, i + 1]  # (N, X)
        xq = xq.to(torch.float64).to(row.device)
        j = torch.searchsorted(x, xq.contiguous(), right=True).clamp(1, len(x) - 1) - 1
        wx = ((xq - x[j]) / (x[j + 1] - x[j])).clamp(0, 1)
        return (1 - wx) * row[:, j] + wx * row[:, j + 1]

    return f


@dataclass(frozen=True)
class BurgersControlResult:
    """Solver-evaluated control: ``J`` ``(N,)`` and its parts; ``u`` ``(N, T, X)`` the simulated states."""

    J: Tensor
    state_cost: Tensor
    energy: Tensor
    u: Tensor


def _check_grids(u0: Tensor, t: Tensor, x: Tensor, who: str) -> None:
    if u0.ndim != 2 or x.ndim != 1 or t.ndim != 1 or u0.shape[1] != x.shape[0]:
        raise ValueError(f"{who}: u0 (B, X) with x (X,) and t (T,) expected, got {tuple(u0.shape)}, "
                         f"{tuple(x.shape)}, {tuple(t.shape)}")
    if not torch.isfinite(u0).all():
        raise ValueError(f"{who}: u0 contains NaN/inf")
    if (torch.diff(x) <= 0).any() or (torch.diff(t) <= 0).any():
        raise ValueError(f"{who}: x and t must be strictly increasing")


def burgers_simulator(u0: Tensor, t: Tensor, x: Tensor, *, nu: float = 0.01, n_modes: int = 64,
                      dt: float = 1e-2) -> Callable[[Tensor], Tensor]:
    r"""Differentiable forced-Burgers map ``f (N, 1, T, X) -> u (N, 1, T, X)`` from the initial states
    ``u0 (B, X)`` (``N = n B``, sample-major, ``u0`` repeated), zero Dirichlet data on
    ``[x_0, x_{-1}]``: :func:`~sciflow.data.pdes.burgers.solve_dirichlet` (sine-Galerkin,
    ETDRK4 with step ``<= dt``, ``n_modes`` sine modes) under the bilinear interpolant of ``f``
    (:func:`grid_forcing`), in float64 on ``f``'s device, returned in ``f``'s dtype.

    Gradients w.r.t. ``f`` are those of the discretised solver (reverse-mode autograd through
    the time steps, the discrete adjoint); memory grows with the number of steps
    (``≈ (t_{-1} - t_0)/dt`` of ``(N, 2 n_modes)`` states). For guidance a coarser solver than for
    evaluation is enough (the CPU benchmark guides with 64 modes, ``dt = 1e-2`` and evaluates with
    128 modes, ``dt = 2e-3``)."""
    t = torch.as_tensor(t).to(torch.float64).cpu()
    x = torch.as_tensor(x).to(torch.float64).cpu()
    _check_grids(u0, t, x, "burgers_simulator")
    b = u0.shape[0]
    t01 = torch.tensor([0.0, 1.0], dtype=torch.float64)

    def simulate(f: Tensor) -> Tensor:
        if f.ndim != 4 or f.shape[1] != 1 or f.shape[2:] != (len(t), len(x)) or f.shape[0] % b:
            raise ValueError(f"burgers_simulator: forcing must be (n * {b}, 1, {len(t)}, {len(x)}), "
                             f"got {tuple(f.shape)}")
        values = f[:, 0].to(torch.float64)
        start = u0.to(values).repeat(f.shape[0] // b, 1)
        u0_fn = grid_forcing(start[:, None].expand(-1, 2, -1), t01, x)
        u = solve_dirichlet(lambda xf: u0_fn(0.0, xf), nu=nu, domain=(float(x[0]), float(x[-1])), t=t, dt=dt,
                            x_out=x, n_modes=n_modes, forcing=grid_forcing(values, t, x), device=values.device)
        return u.to(f.dtype).unsqueeze(1)

    return simulate


def evaluate_burgers_control(forcing: Tensor, u0: Tensor, target: Tensor, t: Tensor, x: Tensor, *,
                             nu: float = 0.01, weight: float = 0.0, n_modes: int = 256,
                             dt: float = 1e-3) -> BurgersControlResult:
    """Re-run Burgers (``x ∈ [x_0, x_{-1}]``, zero Dirichlet data) from ``u0 (N, X)`` under the control
    ``forcing (N, T, X)`` (bilinear in ``(t, x)`` on the solver's fine grid) and score
    ``J = mean_x |u(T) - target|² + λ mean f²`` with ``target (N, X)``. No gradients (float64, CPU)."""
    if forcing.ndim != 3 or u0.shape != (forcing.shape[0], forcing.shape[2]) or target.shape != u0.shape:
        raise ValueError(f"evaluate_burgers_control: forcing (N, T, X), u0 and target (N, X) expected, got "
                         f"{tuple(forcing.shape)}, {tuple(u0.shape)}, {tuple(target.shape)}")
    if not (torch.isfinite(forcing).all() and torch.isfinite(u0).all()):
        raise ValueError("evaluate_burgers_control: forcing or u0 contains NaN/inf")
    forcing = forcing.detach().cpu().to(torch.float64)
    with torch.no_grad():
        u = burgers_simulator(u0.detach().cpu(), t, x, nu=nu, n_modes=n_modes, dt=dt)(forcing[:, None])[:, 0]
    state = (u[:, -1] - target.detach().cpu().to(torch.float64)).pow(2).mean(-1)
    energy = forcing.pow(2).flatten(1).mean(-1)
    return BurgersControlResult(J=state + weight * energy, state_cost=state, energy=energy, u=u)
