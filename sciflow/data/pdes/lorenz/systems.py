"""Lorenz-63 and Lorenz-96: vector fields, accurate batched integration, trajectory generators.

* **Lorenz-63** (Lorenz 1963, eq. 25–27)::

      dx/dt = σ (y − x),   dy/dt = x (ρ − z) − y,   dz/dt = x y − β z,

  classical parameters σ = 10, ρ = 28, β = 8/3 (chaotic, leading Lyapunov exponent ≈ 0.906).
* **Lorenz-96** (Lorenz 1996, eq. 1; Lorenz & Emanuel 1998) on a ring of K sites::

      dx_k/dt = (x_{k+1} − x_{k−2}) x_{k−1} − x_k + F,   indices mod K,

  K = 40, F = 8 by default (chaotic; climatological mean ≈ 2.35, standard deviation ≈ 3.6).
  The advection term conserves E = ½ Σ x_k², so dE/dt = −2E + F Σ x_k exactly.

Initial conditions are drawn near the attractor and then *spun up* (integrated for ``spinup``
time units and discarded) so every sample starts on the attractor. With ``n_obs`` set the
trajectories are observed irregularly (:mod:`sciflow.data.pdes.lorenz.observation`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import xarray as xr
from torch import Tensor

from sciflow.data.pdes._dataset import check_positive_int
from sciflow.data.pdes.lorenz.observation import observed_dataset
from sciflow.solvers.ode import Tsit5, odeint

# Lorenz & Emanuel (1998), K = 40, F = 8: climatological statistics of one site
LORENZ96_F8_MEAN = 2.35
LORENZ96_F8_STD = 3.6


# ----------------------------------------------------------------------------- vector fields


def lorenz63_rhs(y: Tensor, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> Tensor:
    """Lorenz-63 vector field for ``y`` of shape ``(*batch, 3)`` (Lorenz 1963, eqs. 25–27)."""
    x, yy, z = y.unbind(-1)
    return torch.stack((sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z), dim=-1)


def lorenz96_rhs(y: Tensor, forcing: float = 8.0) -> Tensor:
    """Lorenz-96 vector field for ``y`` of shape ``(*batch, K)``, K ≥ 4 (Lorenz 1996, eq. 1)."""
    return (y.roll(-1, -1) - y.roll(2, -1)) * y.roll(1, -1) - y + forcing


# ----------------------------------------------------------------------------- helpers


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    if seed is None:
        raise ValueError("pass seed= (int) or generator= (torch.Generator): data generation is never unseeded")
    return torch.Generator().manual_seed(int(seed))


def integrate(
    rhs: Callable[[Tensor], Tensor],
    y0: Tensor,
    times: Tensor,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> Tensor:
    """Integrate the autonomous system ``dy/dt = rhs(y)`` from ``y0 (batch, d)`` at ``times``:
    ``(time,)`` shared or ``(batch, time)`` per sample (each sample then steps on its own clock).

    Uses the shared adaptive solver (``sciflow.solvers.ode.odeint`` with Tsitouras 5(4) and
    per-trajectory step-size control) at the given tolerances; returns ``(batch, time, d)``.
    ``times[0]`` is the time of ``y0``. At ``rtol = atol = 1e-10`` Lorenz-63 agrees with scipy
    DOP853 (rtol 1e-12) to 2e-8 relative over 5 time units (chaos amplifies errors ≈ e^{0.9 t}).
    """
    if times.ndim not in (1, 2) or (times.ndim == 2 and times.shape[0] != y0.shape[0]):
        raise ValueError(f"times must be (time,) or (batch, time) with batch {y0.shape[0]}, got {tuple(times.shape)}")
    if times.shape[-1] > 1 and not bool((times.diff(dim=-1) > 0).all()):
        raise ValueError("times must be strictly increasing")
    # per-trajectory error control (batch_ndim=1): a sample's trajectory does not depend on the
    # other samples in the batch; Tsit5's dense output is accurate enough at these tolerances
    ys = odeint(lambda t, y: rhs(y), y0, times, solver=Tsit5(), rtol=rtol, atol=atol, batch_ndim=1,
                max_steps=10_000_000)
    return ys.movedim(0, 1)


def _trajectories(
    rhs: Callable[[Tensor], Tensor], y0: Tensor, grid: Tensor, *, n_obs: int | None, on_grid: bool,
    generator: torch.Generator, rtol: float, atol: float,
) -> tuple[Tensor, Tensor | None]:
    """States on the regular ``grid`` ``(n, T, d)``, or — for ``on_grid=False`` — at ``n_obs``
    per-sample times ``t_k ~ U(t_0, t_end]`` (sorted), returned with those times ``(n, n_obs)``."""
    if n_obs is None or on_grid:
        return integrate(rhs, y0, grid.to(y0.device), rtol=rtol, atol=atol), None
    n_obs = check_positive_int("n_obs", n_obs, 2)
    n = y0.shape[0]
    u = 1.0 - torch.rand(n, n_obs, generator=generator, dtype=torch.float64)  # (0, 1]
    obs = grid[0] + (grid[-1] - grid[0]) * u.sort(dim=1).values
    full = torch.cat([grid[:1].expand(n, 1), obs], dim=1).to(y0)
    return integrate(rhs, y0, full, rtol=rtol, atol=atol)[:, 1:], obs


def _spin_up(rhs: Callable[[Tensor], Tensor], y0: Tensor, spinup: float, rtol: float, atol: float) -> Tensor:
    if spinup < 0:
        raise ValueError(f"spinup must be >= 0, got {spinup}")
    if spinup == 0:
        return y0
    t = torch.tensor([0.0, float(spinup)], dtype=y0.dtype, device=y0.device)
    return integrate(rhs, y0, t, rtol=rtol, atol=atol)[:, -1]


def _regular_grid(n_time: int, dt: float, dtype: torch.dtype) -> Tensor:
    n_time = check_positive_int("n_time", n_time, 2)
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    return torch.arange(n_time, dtype=dtype) * dt


# ----------------------------------------------------------------------------- generators


def generate_lorenz63(
    n: int,
    *,
    n_time: int = 500,
    dt: float = 0.01,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    spinup: float = 10.0,
    n_obs: int | None = None,
    on_grid: bool = True,
    missing_rate: float | Sequence[float] = 0.0,
    noise_std: float | Sequence[float] = 0.0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> xr.Dataset:
    """``n`` Lorenz-63 trajectories on ``t = 0, dt, …, (n_time−1) dt`` (float64).

    Initial conditions: ``(0, 0, 25) + 8 ξ``, ξ ~ N(0, I), spun up for ``spinup`` time units.
    With ``n_obs`` set, each sample keeps ``n_obs`` random grid times (``obs_time`` coordinate,
    ``time`` becomes the observation index) or, with ``on_grid=False``, is integrated directly to
    ``n_obs`` continuous times ``~ U(0, t_end]`` (each sample on its own time grid); see the module
    docstring for masks and noise.
    Random draws use a CPU generator (identical data on every device); the integration runs on
    ``device`` (all samples batched).

    Returns an ``xr.Dataset`` with ``state`` / ``observed`` / ``mask`` of dims
    ``(sample, time, channel)``, channels ``x, y, z``.
    """
    n = check_positive_int("n", n)
    g = _generator(seed, generator)
    grid = _regular_grid(n_time, dt, torch.float64)
    rhs = lambda y: lorenz63_rhs(y, sigma, rho, beta)  # noqa: E731
    y0 = torch.tensor([0.0, 0.0, 25.0], dtype=torch.float64) + 8.0 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    y0 = _spin_up(rhs, y0.to(device), spinup, rtol=1e-6, atol=1e-6)
    states, obs_time = _trajectories(rhs, y0, grid, n_obs=n_obs, on_grid=on_grid, generator=g, rtol=rtol, atol=atol)
    return observed_dataset(
        equation="Lorenz-63: dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z",
        states=states, grid=grid, channel_names=("x", "y", "z"), n_obs=n_obs, missing_rate=missing_rate,
        noise_std=noise_std, generator=g,
        attrs={"sigma": float(sigma), "rho": float(rho), "beta": float(beta), "spinup": float(spinup),
               "rtol": float(rtol), "atol": float(atol),
               "seed": -1 if seed is None or generator is not None else int(seed),
               "initial_condition": "(0, 0, 25) + 8 N(0, I), spun up"},
        parameter_names=("sigma", "rho", "beta"),
        obs_time=obs_time,
    )


def generate_lorenz96(
    n: int,
    *,
    n_sites: int = 40,
    forcing: float = 8.0,
    n_time: int = 200,
    dt: float = 0.05,
    spinup: float = 20.0,
    n_obs: int | None = None,
    on_grid: bool = True,
    missing_rate: float | Sequence[float] = 0.0,
    noise_std: float | Sequence[float] = 0.0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> xr.Dataset:
    """``n`` Lorenz-96 trajectories with ``n_sites`` sites (channels ``x0 … x{K−1}``).

    Initial conditions: ``F + 0.01 ξ``, ξ ~ N(0, I) (a perturbed fixed point, the customary start),
    spun up for ``spinup`` time units. Returns the same layout as :func:`generate_lorenz63`.
    """
    n = check_positive_int("n", n)
    K = check_positive_int("n_sites", n_sites, 4)
    g = _generator(seed, generator)
    grid = _regular_grid(n_time, dt, torch.float64)
    rhs = lambda y: lorenz96_rhs(y, forcing)  # noqa: E731
    y0 = forcing + 0.01 * torch.randn(n, K, generator=g, dtype=torch.float64)
    y0 = _spin_up(rhs, y0.to(device), spinup, rtol=1e-6, atol=1e-6)
    states, obs_time = _trajectories(rhs, y0, grid, n_obs=n_obs, on_grid=on_grid, generator=g, rtol=rtol, atol=atol)
    return observed_dataset(
        equation="Lorenz-96: dx_k/dt = (x_{k+1} - x_{k-2}) x_{k-1} - x_k + F, k mod K",
        states=states, grid=grid, channel_names=[f"x{k}" for k in range(K)], n_obs=n_obs,
        missing_rate=missing_rate, noise_std=noise_std, generator=g,
        attrs={"forcing": float(forcing), "n_sites": K, "spinup": float(spinup), "rtol": float(rtol),
               "atol": float(atol), "seed": -1 if seed is None or generator is not None else int(seed),
               "initial_condition": "F + 0.01 N(0, I), spun up"},
        parameter_names=("forcing", "n_sites"),
        obs_time=obs_time,
    )
