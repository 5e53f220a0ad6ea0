"""PDE/ODE residuals as pure functions of derivative tensors and parameters.

No autograd happens here: a caller (a PINN, a finite-difference check, a spectral solver's
self-test) computes the derivatives however it likes and passes them in, so the data layer stays
solver-agnostic. Every function is elementwise over a leading ``(*batch)`` shape; a residual of
zero means the equation holds at those points. Sign convention: ``r = u_t - F(u, ...)`` written
as in the cited paper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def heat(u_t: Tensor, u_xx: Tensor, kappa: float) -> Tensor:
    """Heat equation ``u_t = kappa u_xx``."""
    return u_t - kappa * u_xx


def burgers(u: Tensor, u_t: Tensor, u_x: Tensor, u_xx: Tensor, nu: float = 0.01 / math.pi) -> Tensor:
    """Viscous Burgers ``u_t + u u_x - nu u_xx`` (Raissi et al. 2019, eq. 8; nu = 0.01/pi)."""
    return u_t + u * u_x - nu * u_xx


def allen_cahn(u: Tensor, u_t: Tensor, u_xx: Tensor, diffusivity: float = 1e-4,
               reaction: float = 5.0) -> Tensor:
    """Allen–Cahn ``u_t - D u_xx - k (u - u^3)`` (Wang, Sankaran & Perdikaris 2022, section 2:
    D = 1e-4, k = 5)."""
    return u_t - diffusivity * u_xx - reaction * (u - u * u * u)


def kuramoto_sivashinsky(u: Tensor, u_t: Tensor, u_x: Tensor, u_xx: Tensor, u_xxxx: Tensor,
                         alpha: float, beta: float, gamma: float) -> Tensor:
    """Kuramoto–Sivashinsky ``u_t + alpha u u_x + beta u_xx + gamma u_xxxx`` (ibid., section 5)."""
    return u_t + alpha * u * u_x + beta * u_xx + gamma * u_xxxx


def navier_stokes_vorticity(u: Tensor, v: Tensor, w_t: Tensor, w_x: Tensor, w_y: Tensor,
                            w_xx: Tensor, w_yy: Tensor, nu: float, forcing: Tensor | float = 0.0) -> Tensor:
    """2D incompressible Navier–Stokes in vorticity form ``w_t + u w_x + v w_y - nu Lap(w) - f``."""
    return w_t + u * w_x + v * w_y - nu * (w_xx + w_yy) - forcing


def vorticity_definition(w: Tensor, u_y: Tensor, v_x: Tensor) -> Tensor:
    """Consistency of the vorticity with the velocity, ``w - (v_x - u_y)``."""
    return w - (v_x - u_y)


def continuity(u_x: Tensor, v_y: Tensor) -> Tensor:
    """Incompressibility ``u_x + v_y``."""
    return u_x + v_y


def lorenz63(state: Tensor, state_t: Tensor, sigma: float = 10.0, rho: float = 28.0,
             beta: float = 8.0 / 3.0) -> Tensor:
    """Lorenz-63 ``(x', y', z') - (sigma (y - x), x (rho - z) - y, x y - beta z)``; shapes
    ``(*batch, 3)`` (Lorenz 1963; Wang, Sankaran & Perdikaris 2022, section 5)."""
    if state.shape[-1] != 3 or state_t.shape != state.shape:
        raise ValueError(f"lorenz63 needs state and state_t of shape (*batch, 3), got "
                         f"{tuple(state.shape)} and {tuple(state_t.shape)}")
    x, y, z = state.unbind(-1)
    f = torch.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], dim=-1)
    return state_t - f
