"""Lorenz-63 and Lorenz-96: batched chaotic trajectories, irregular partial observations, spikes.

Three dataset families built on one accurate integration path (the shared adaptive ODE solvers at
tight tolerance, batched over samples):

* **Lorenz-63** (Lorenz 1963, eq. 25–27)::

      dx/dt = σ (y − x),   dy/dt = x (ρ − z) − y,   dz/dt = x y − β z,

  classical parameters σ = 10, ρ = 28, β = 8/3 (chaotic, leading Lyapunov exponent ≈ 0.906).
* **Lorenz-96** (Lorenz 1996, eq. 1; Lorenz & Emanuel 1998) on a ring of K sites::

      dx_k/dt = (x_{k+1} − x_{k−2}) x_{k−1} − x_k + F,   indices mod K,

  K = 40, F = 8 by default (chaotic; climatological mean ≈ 2.35, standard deviation ≈ 3.6).
  The advection term conserves E = ½ Σ x_k², so dE/dt = −2E + F Σ x_k exactly.
* **Lorenz-driven spiking population** (the LFADS synthetic benchmark, Sussillo et al. 2016 §3.1;
  used again by LangevinFlow, Song et al. 2025): Lorenz-63 latents ẑ(t) standardised per
  dimension, log-rates ``log λ_n(t) = log r₀ + Σ_k W_nk ẑ_k(t)`` with a random Gaussian readout W,
  Poisson counts per bin ``c_n(t) ~ Poisson(λ_n(t) Δ)``; many trials share each initial condition.

Initial conditions are drawn near the attractor and then *spun up* (integrated for ``spinup``
time units and discarded) so every sample starts on the attractor.

Irregular observation (the irregular time-series protocol of neural CDE / stable neural SDE
benchmarks): each sample keeps ``n_obs`` time points drawn without replacement from the regular
grid (observed values are the solver's own output at grid times, not re-interpolated), or with
``on_grid=False`` at ``n_obs`` continuous times drawn uniformly per sample; each
channel then loses exactly ``round(missing_rate_c · n_obs)`` values per sample; observed values
get Gaussian noise with standard deviation ``noise_std_c · std_c`` where ``std_c`` is the
channel's standard deviation over the clean dataset.

Datasets follow the sciflow schema: dims ``(sample, time, channel)`` (``neuron``/``latent`` for
the spiking variant), coordinates on every dim, parameters and provenance in attrs.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sciflow.data.batches import IrregularBatch, TrajectoryBatch
from sciflow.data.pdes._dataset import GENERATED_LICENCE as _LICENCE
from sciflow.data.pdes._dataset import _version, check_positive_int
from sciflow.data.schema import validate
from sciflow.solvers.ode import Tsit5, odeint

GENERATOR_VERSION = "1"  # bump when the same seed would give different data

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


def _per_channel(name: str, value: float | Sequence[float], n_channel: int, lo: float, hi: float) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if v.numel() == 1:
        v = v.expand(n_channel)
    if v.numel() != n_channel:
        raise ValueError(f"{name} must be a scalar or have one entry per channel ({n_channel}), got {v.numel()}")
    if not bool(((v >= lo) & (v <= hi)).all()):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {v.tolist()}")
    return v.clone()


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


def observe_irregular(
    states: Tensor,
    *,
    n_obs: int | None,
    missing_rate: float | Sequence[float] = 0.0,
    noise_std: float | Sequence[float] = 0.0,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Irregular, partly missing, noisy observations of regular trajectories.

    Args:
        states: ``(sample, time, channel)`` clean trajectories on a regular grid.
        n_obs: time points kept per sample (drawn without replacement, sorted); ``None`` keeps all.
        missing_rate: per-channel fraction in [0, 1) removed per sample (exactly
            ``round(rate · n_obs)`` values of each channel of each sample).
        noise_std: per-channel noise standard deviation in units of the channel's standard deviation
            over ``states``.
        generator: source of randomness.

    Returns:
        ``index (sample, n_obs)`` long grid indices, ``clean (sample, n_obs, channel)``,
        ``observed (sample, n_obs, channel)`` (noisy, 0 where missing), ``mask`` (bool, True = observed).
    """
    if states.ndim != 3:
        raise ValueError(f"states must be (sample, time, channel), got shape {tuple(states.shape)}")
    if not bool(torch.isfinite(states).all()):
        raise ValueError("states contain NaN/inf (did the integration blow up?)")
    n, T, C = states.shape
    rates = _per_channel("missing_rate", missing_rate, C, 0.0, 1.0)
    if bool((rates >= 1).any()):
        raise ValueError(f"missing_rate must be < 1 (a channel cannot be entirely missing), got {rates.tolist()}")
    noise = _per_channel("noise_std", noise_std, C, 0.0, float("inf"))
    if n_obs is None:
        index = torch.arange(T, device=states.device).expand(n, T)
    else:
        n_obs = check_positive_int("n_obs", n_obs, 2)
        if n_obs > T:
            raise ValueError(f"n_obs={n_obs} exceeds the {T} points of the regular grid")
        pick = torch.rand(n, T, generator=generator).argsort(dim=1)[:, :n_obs]
        index = pick.sort(dim=1).values.to(states.device)
    clean = states.gather(1, index.unsqueeze(-1).expand(-1, -1, C))
    m = clean.shape[1]
    n_missing = torch.round(rates * m).long().to(states.device)  # (C,)
    rank = torch.rand(n, m, C, generator=generator).argsort(dim=1).argsort(dim=1).to(states.device)
    mask = rank >= n_missing  # exactly n_missing[c] entries per (sample, channel) are False
    scale = (noise.to(states) * states.reshape(-1, C).std(dim=0))
    eps = torch.randn(n, m, C, generator=generator, dtype=states.dtype).to(states.device)
    observed = torch.where(mask, clean + scale * eps, torch.zeros_like(clean))
    return index, clean, observed, mask


def _dataset(
    *,
    equation: str,
    states: Tensor,
    grid: Tensor,
    channel_names: Sequence[str],
    n_obs: int | None,
    missing_rate: float | Sequence[float],
    noise_std: float | Sequence[float],
    generator: torch.Generator,
    attrs: dict,
    parameter_names: Sequence[str],
    obs_time: Tensor | None = None,
) -> xr.Dataset:
    index, clean, observed, mask = observe_irregular(
        states, n_obs=None if obs_time is not None else n_obs, missing_rate=missing_rate,
        noise_std=noise_std, generator=generator,
    )
    n, m, C = clean.shape
    dims = ("sample", "time", "channel")
    coords: dict = {"sample": np.arange(n), "channel": list(channel_names)}
    if n_obs is None:
        coords["time"] = ("time", grid.cpu().numpy(), {"units": "model time units"})
    else:
        t_obs = obs_time if obs_time is not None else grid[index.cpu()]
        coords["time"] = ("time", np.arange(m), {"long_name": "observation index"})
        coords["obs_time"] = (("sample", "time"), t_obs.cpu().numpy(),
                              {"long_name": "per-sample observation time", "units": "model time units"})
    std = states.reshape(-1, C).std(dim=0).cpu().numpy()
    mean = states.reshape(-1, C).mean(dim=0).cpu().numpy()
    ds = xr.Dataset(
        {
            "state": (dims, clean.cpu().numpy(), {"long_name": "true state at the observation times"}),
            "observed": (dims, observed.cpu().numpy(),
                         {"long_name": "noisy observation, 0 where missing (see mask)"}),
            "mask": (dims, mask.cpu().numpy(), {"long_name": "True where observed"}),
        },
        coords=coords,
    )
    ds.attrs.update(
        {
            "equation": equation,
            "generator": "sciflow.data.pdes.lorenz",
            "version": _version(),
            "generator_version": GENERATOR_VERSION,
            "licence": _LICENCE,
            "irregular": int(n_obs is not None),
            "n_obs": -1 if n_obs is None else int(n_obs),
            "sampling": ("regular grid" if n_obs is None else "random subset of the grid" if obs_time is None
                         else "uniform random times on (t0, t_end]"),
            "grid_t0": float(grid[0]),
            "grid_dt": float(grid[1] - grid[0]) if grid.numel() > 1 else 0.0,
            "grid_n_time": int(grid.numel()),
            "missing_rate": _per_channel("missing_rate", missing_rate, C, 0, 1).numpy(),
            "noise_std": _per_channel("noise_std", noise_std, C, 0, float("inf")).numpy(),
            "state_mean": mean,
            "state_std": std,
            **attrs,
        }
    )
    ds.attrs["parameters"] = json.dumps({k: attrs[k] for k in parameter_names})
    return validate(ds)


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
    return _dataset(
        equation="Lorenz-63: dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z",
        states=states, grid=grid, channel_names=("x", "y", "z"), n_obs=n_obs, missing_rate=missing_rate,
        noise_std=noise_std, generator=g,
        attrs={"sigma": float(sigma), "rho": float(rho), "beta": float(beta), "spinup": float(spinup),
               "rtol": float(rtol), "atol": float(atol), "seed": -1 if seed is None or generator is not None else int(seed),
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
    return _dataset(
        equation="Lorenz-96: dx_k/dt = (x_{k+1} - x_{k-2}) x_{k-1} - x_k + F, k mod K",
        states=states, grid=grid, channel_names=[f"x{k}" for k in range(K)], n_obs=n_obs,
        missing_rate=missing_rate, noise_std=noise_std, generator=g,
        attrs={"forcing": float(forcing), "n_sites": K, "spinup": float(spinup), "rtol": float(rtol),
               "atol": float(atol), "seed": -1 if seed is None or generator is not None else int(seed),
               "initial_condition": "F + 0.01 N(0, I), spun up"},
        parameter_names=("forcing", "n_sites"),
        obs_time=obs_time,
    )


def generate_lorenz_spiking(
    n: int = 65,
    *,
    n_trials: int = 20,
    n_neurons: int = 30,
    n_bins: int = 100,
    bin_width: float = 0.01,
    latent_dt: float = 0.01,
    base_rate: float = 5.0,
    readout_scale: float = 1.0,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    spinup: float = 10.0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> xr.Dataset:
    """Poisson spiking population driven by Lorenz-63 latents (LFADS synthetic benchmark).

    ``n`` conditions (initial conditions on the attractor) × ``n_trials`` trials each: every trial of
    a condition shares the latent trajectory and rates and has independent spikes. Bin ``j``
    (centre ``(j + ½) bin_width`` seconds) samples the latent at Lorenz time ``j · latent_dt``.

    Latents are standardised per dimension over all conditions and bins, ẑ = (z − μ) / s; the
    readout is ``W_nk ~ N(0, readout_scale² / 3)`` (so each log-rate has standard deviation
    ≈ ``readout_scale``) and ``log λ = log(base_rate) + W ẑ`` in spikes/s; counts are
    ``Poisson(λ · bin_width)``. Defaults follow LFADS (65 conditions × 20 trials, 30 neurons,
    100 bins of 10 ms, 5 spikes/s baseline); LFADS integrated with Euler steps, here the latent is
    integrated accurately.

    Returns data variables ``counts`` (int64) and ``rates`` (spikes/s) of dims
    ``(sample, time, neuron)``; the ground truth is carried as coordinates so it follows any
    selection: ``latents (sample, time, latent)`` (ẑ), ``readout_weight (neuron, latent)``,
    ``readout_bias (neuron,)``, and ``condition``/``trial`` per sample.
    """
    n = check_positive_int("n", n)
    n_trials = check_positive_int("n_trials", n_trials)
    n_neurons = check_positive_int("n_neurons", n_neurons)
    n_bins = check_positive_int("n_bins", n_bins, 2)
    for name, v in (("bin_width", bin_width), ("latent_dt", latent_dt), ("base_rate", base_rate)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    g = _generator(seed, generator)
    latent = generate_lorenz63(n, n_time=n_bins, dt=latent_dt, sigma=sigma, rho=rho, beta=beta,
                               spinup=spinup, rtol=rtol, atol=atol, generator=g)
    z = torch.tensor(latent["state"].values)  # (n, T, 3)
    mu, s = z.reshape(-1, 3).mean(0), z.reshape(-1, 3).std(0)
    zhat = (z - mu) / s
    W = readout_scale / np.sqrt(3.0) * torch.randn(n_neurons, 3, generator=g, dtype=torch.float64)
    b = torch.full((n_neurons,), float(np.log(base_rate)), dtype=torch.float64)
    rates = torch.exp(zhat @ W.T + b)  # (n, T, N) spikes/s
    rates_trials = rates.repeat_interleave(n_trials, dim=0)
    counts = torch.poisson(rates_trials * bin_width, generator=g).to(torch.int64)
    S = n * n_trials
    ds = xr.Dataset(
        {
            "counts": (("sample", "time", "neuron"), counts.numpy(), {"long_name": "spike counts per bin"}),
            "rates": (("sample", "time", "neuron"), rates_trials.numpy(), {"units": "spikes/s"}),
        },
        coords={
            "sample": np.arange(S),
            "time": ("time", (np.arange(n_bins) + 0.5) * bin_width, {"units": "s", "long_name": "bin centre"}),
            "neuron": np.arange(n_neurons),
            "latent": ["x", "y", "z"],
            "condition": ("sample", np.repeat(np.arange(n), n_trials)),
            "trial": ("sample", np.tile(np.arange(n_trials), n)),
            # ground truth travels with sample/neuron selections (e.g. held-in/held-out neurons)
            "latents": (("sample", "time", "latent"), zhat.repeat_interleave(n_trials, 0).numpy(),
                        {"long_name": "standardised Lorenz-63 state"}),
            "readout_weight": (("neuron", "latent"), W.numpy()),
            "readout_bias": (("neuron",), b.numpy()),
        },
    )
    params = {"sigma": float(sigma), "rho": float(rho), "beta": float(beta), "n_conditions": n,
              "n_trials": n_trials, "n_neurons": n_neurons, "n_bins": n_bins, "bin_width": float(bin_width),
              "latent_dt": float(latent_dt), "base_rate": float(base_rate), "readout_scale": float(readout_scale)}
    ds.attrs.update(
        {
            "equation": "Lorenz-63 latent; log rate = log(base_rate) + W zhat; counts ~ Poisson(rate * bin_width)",
            "parameters": json.dumps(params),
            "generator": "sciflow.data.pdes.lorenz (spiking)",
            "version": _version(),
            "generator_version": GENERATOR_VERSION,
            "licence": _LICENCE,
            **params,
            "spinup": float(spinup),
            "latent_mean": mu.numpy(), "latent_std": s.numpy(),
            "rtol": float(rtol), "atol": float(atol),
            "seed": -1 if seed is None or generator is not None else int(seed),
        }
    )
    return validate(ds)


# ----------------------------------------------------------------------------- batches


def _obs_times(ds: xr.Dataset) -> Tensor:
    if "obs_time" in ds.coords:
        return torch.tensor(np.asarray(ds["obs_time"].values, dtype=np.float64))
    t = torch.tensor(np.asarray(ds["time"].values, dtype=np.float64))
    return t.expand(ds.sizes["sample"], -1).contiguous()


def to_irregular_batch(ds: xr.Dataset, *, n_target: int = 0, hold_out: str = "last",
                       dtype: torch.dtype = torch.float32) -> IrregularBatch:
    """An :class:`IrregularBatch` from a Lorenz dataset (``observed``, ``mask``, observation times).

    With ``n_target > 0``, ``n_target`` observations of every sample become the targets
    (``targets`` = noiseless ``state``, ``target_times``, ``target_mask`` all True) and the rest the
    inputs: the last ones (``hold_out="last"``, forecasting) or ones spread evenly over the interior
    of the observation window, never the first or last observation (``"interior"``, interpolation).
    """
    for v in ("observed", "mask", "state"):
        if v not in ds:
            raise ValueError(f"to_irregular_batch: dataset has no variable {v!r} (not a sciflow Lorenz dataset)")
    if hold_out not in ("last", "interior"):
        raise ValueError(f"hold_out must be 'last' or 'interior', got {hold_out!r}")
    values = torch.tensor(ds["observed"].transpose("sample", "time", "channel").values, dtype=dtype)
    mask = torch.tensor(np.asarray(ds["mask"].transpose("sample", "time", "channel").values, dtype=bool))
    times = _obs_times(ds).to(dtype)
    if n_target == 0:
        return IrregularBatch(values=values, times=times, mask=mask)
    T = values.shape[1]
    limit = T - 1 if hold_out == "last" else T - 2
    if not 0 < n_target <= limit:
        raise ValueError(f"n_target must be in [1, {limit}] for hold_out={hold_out!r} with {T} observations, "
                         f"got {n_target}")
    state = torch.tensor(ds["state"].transpose("sample", "time", "channel").values, dtype=dtype)
    if hold_out == "last":
        held = torch.arange(T - n_target, T)
    else:  # evenly spread over the interior positions 1 .. T-2 (distinct since n_target <= T - 2)
        held = 1 + torch.div(torch.arange(n_target) * (T - 2) + (T - 2) // 2, n_target, rounding_mode="floor")
    keep = torch.ones(T, dtype=torch.bool)
    keep[held] = False
    return IrregularBatch(
        values=values[:, keep], times=times[:, keep], mask=mask[:, keep],
        targets=state[:, held], target_times=times[:, held],
        target_mask=torch.ones_like(mask[:, held]),
    )


def to_trajectory_batch(ds: xr.Dataset, variable: str = "state", *, dtype: torch.dtype = torch.float32) -> TrajectoryBatch:
    """A :class:`TrajectoryBatch` of ``ds[variable]`` with dims ``(sample, time, ...)``.

    Times come from ``obs_time`` (per sample) when present, else the ``time`` coordinate. For the
    spiking dataset use ``variable="counts"``.
    """
    if variable not in ds:
        raise ValueError(f"to_trajectory_batch: dataset has no variable {variable!r}; has {sorted(ds.data_vars)}")
    da = ds[variable]
    if da.dims[:2] != ("sample", "time"):
        raise ValueError(f"to_trajectory_batch: {variable!r} must have dims (sample, time, ...), got {da.dims}")
    values = torch.tensor(np.asarray(da.values), dtype=dtype)
    if "obs_time" in ds.coords:
        times = _obs_times(ds).to(dtype)
    else:
        times = torch.tensor(np.asarray(ds["time"].values, dtype=np.float64), dtype=dtype)
    if values.ndim == 2:
        values = values.unsqueeze(-1)
    return TrajectoryBatch(values=values, times=times)
