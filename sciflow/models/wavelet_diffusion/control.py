r"""Control with WDNO: the cost ``J(u, f)`` used for guidance and its evaluation by the solver.

Burgers control (Hu et al. 2025, Sec. 4.1 and App. B; the DiffPhyCon setting): reach a target
final state with little forcing energy,

.. math::

    J(u, f) = \frac{1}{|\Omega|}\int_\Omega |u(T, x) - u^*(x)|^2\,dx
              + \lambda\,\frac{1}{T |\Omega|}\int_0^T\!\!\int_\Omega |f(t, x)|^2\,dx\,dt,

discretised by means over the uniform grid. A generated control is judged by re-running the
numerical solver (:func:`sciflow.data.pdes.burgers.solve_dirichlet`) with it, never by the
model's own predicted ``u``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sciflow.data.pdes.burgers import solve_dirichlet

__all__ = ["ControlObjective", "BurgersControlResult", "evaluate_burgers_control", "grid_forcing"]


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
        return (final - self.target.to(u)).pow(2).flatten(2).mean(-1).flatten(0, 1)

    @staticmethod
    def energy(f: Tensor) -> Tensor:
        return f.pow(2).flatten(1).mean(-1)

    def __call__(self, u: Tensor, f: Tensor | None) -> Tensor:
        j = self.state_cost(u)
        if self.weight and f is not None:
            j = j + self.weight * self.energy(f)
        return j


def grid_forcing(values: Tensor, t: Tensor, x: Tensor):
    """Bilinear interpolant ``f(tt, x_query) -> (N, len(x_query))`` of grid values ``(N, T, X)`` on
    uniform-or-not increasing grids ``t (T,)``, ``x (X,)`` (constant outside in ``t``)."""
    values = values.to(torch.float64)
    t = t.to(torch.float64)
    x = x.to(torch.float64)

    def f(tt: float, xq: Tensor) -> Tensor:
        tt = min(max(float(tt), float(t[0])), float(t[-1]))
        i = int(torch.searchsorted(t, torch.tensor(tt, dtype=torch.float64), right=True).clamp(1, len(t) - 1)) - 1
        w = (tt - float(t[i])) / float(t[i + 1] - t[i])
        row = (1 - w) * values[:, i] + w * values[:, i + 1]  # (N, X)
        xq = xq.to(torch.float64).to(row.device)
        j = torch.searchsorted(x.to(row.device), xq, right=True).clamp(1, len(x) - 1) - 1
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


def evaluate_burgers_control(forcing: Tensor, u0: Tensor, target: Tensor, t: Tensor, x: Tensor, *,
                             nu: float = 0.01, weight: float = 0.0, n_modes: int = 256,
                             dt: float = 1e-3) -> BurgersControlResult:
    """Re-run Burgers (``x ∈ [x_0, x_{-1}]``, zero Dirichlet data) from ``u0 (N, X)`` under the control
    ``forcing (N, T, X)`` (bilinear in ``(t, x)`` on the solver's fine grid) and score
    ``J = mean_x |u(T) - target|² + λ mean f²`` with ``target (N, X)``."""
    if forcing.ndim != 3 or u0.shape != (forcing.shape[0], forcing.shape[2]) or target.shape != u0.shape:
        raise ValueError(f"evaluate_burgers_control: forcing (N, T, X), u0 and target (N, X) expected, got "
                         f"{tuple(forcing.shape)}, {tuple(u0.shape)}, {tuple(target.shape)}")
    if not (torch.isfinite(forcing).all() and torch.isfinite(u0).all()):
        raise ValueError("evaluate_burgers_control: forcing or u0 contains NaN/inf")
    x = x.to(torch.float64).cpu()
    t = t.to(torch.float64).cpu()
    u0_fn = grid_forcing(u0.detach().cpu()[:, None].expand(-1, 2, -1), torch.tensor([0.0, 1.0]), x)
    f_fn = grid_forcing(forcing.detach().cpu(), t, x)
    u = solve_dirichlet(lambda xf: u0_fn(0.0, xf), nu=nu, domain=(float(x[0]), float(x[-1])), t=t, dt=dt,
                        x_out=x, n_modes=n_modes, forcing=f_fn)
    state = (u[:, -1] - target.detach().cpu().to(torch.float64)).pow(2).mean(-1)
    energy = forcing.detach().cpu().to(torch.float64).pow(2).flatten(1).mean(-1)
    return BurgersControlResult(J=state + weight * energy, state_cost=state, energy=energy, u=u)
