"""Lorenz-driven Poisson spiking population: a synthetic neural-latent benchmark.

**Lorenz-driven spiking population** (the LFADS synthetic benchmark, Sussillo et al. 2016 §3.1;
used again by LangevinFlow, Song et al. 2025): Lorenz-63 latents ẑ(t) standardised per
dimension, log-rates ``log λ_n(t) = log r₀ + Σ_k W_nk ẑ_k(t)`` with a random Gaussian readout W,
Poisson counts per bin ``c_n(t) ~ Poisson(λ_n(t) Δ)``; many trials share each initial condition.

The latent trajectories come from :func:`sciflow.data.pdes.lorenz.systems.generate_lorenz63`.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import xarray as xr

from sciflow.data.pdes._dataset import GENERATED_LICENCE as _LICENCE
from sciflow.data.pdes._dataset import _version, check_positive_int
from sciflow.data.pdes.lorenz.observation import GENERATOR_VERSION
from sciflow.data.pdes.lorenz.systems import _generator, generate_lorenz63
from sciflow.data.schema import validate


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
