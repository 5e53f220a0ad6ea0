"""Evaluation metrics for latent models of spiking populations.

* **Bits per spike** (Pei et al. 2021, Neural Latents Benchmark, §4): the Poisson log-likelihood
  of the counts under the predicted rates, minus that under each neuron's mean rate, per spike in
  bits,

  .. math:: \\mathrm{bps} = \\frac{\\log p(k | λ) - \\log p(k | \\bar λ_n)}{n_{sp} \\ln 2},
     \\qquad \\bar λ_n = \\text{mean count of neuron } n \\text{ over trials and bins}.

  The ``log k!`` terms cancel. It is 0 for the mean-rate model exactly and > 0 when the rates
  explain the counts better than a constant. **Co-smoothing** is bps on held-out neurons
  (``co-bps``; rates predicted from the held-in neurons only), **forward prediction** is bps on
  the last bins hidden from the encoder (``fp-bps``).
* **Rate R²**: ``1 - SS_res / SS_tot`` per neuron between inferred and true rates, averaged over
  neurons (the LFADS Lorenz metric, Sussillo et al. 2016 §3.1).

All take tensors ``(..., neuron)``: every leading axis (trials, time) is pooled. Rates are
expected counts per bin (multiply spikes/s by the bin width).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def _check_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must have the same shape")
    if a.ndim < 2:
        raise ValueError(f"{names[0]} must be (..., neuron) with at least one pooled axis, got {tuple(a.shape)}")
    for t, n in ((a, names[0]), (b, names[1])):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{n} contains NaN/inf")


def bits_per_spike(rates: Tensor, counts: Tensor, *, eps: float = 1e-9) -> Tensor:
    """Bits per spike of ``rates`` (expected counts per bin) for ``counts``; both ``(..., neuron)``.

    Returns a 0-d tensor (all neurons pooled, as in NLB). Raises when there are no spikes.
    """
    _check_pair(rates, counts, ("rates", "counts"))
    if bool((rates < 0).any()):
        raise ValueError("rates must be non-negative expected counts per bin")
    r = rates.reshape(-1, rates.shape[-1]).double().clamp_min(eps)
    k = counts.reshape(-1, counts.shape[-1]).double()
    n_spikes = k.sum()
    if n_spikes <= 0:
        raise ValueError("bits_per_spike is undefined without spikes")
    null = k.mean(0, keepdim=True).clamp_min(eps).expand_as(k)
    ll = (k * r.log() - r).sum()
    ll0 = (k * null.log() - null).sum()
    return ((ll - ll0) / (n_spikes * math.log(2))).to(rates.dtype)


def rate_r2(pred: Tensor, true: Tensor) -> Tensor:
    """Mean over neurons of the coefficient of determination between ``pred`` and ``true`` rates."""
    _check_pair(pred, true, ("pred", "true"))
    p = pred.reshape(-1, pred.shape[-1]).double()
    t = true.reshape(-1, true.shape[-1]).double()
    ss_res = ((p - t) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    if bool((ss_tot == 0).any()):
        raise ValueError("rate_r2: a neuron's true rate is constant (R² undefined)")
    return (1 - ss_res / ss_tot).mean().to(pred.dtype)


def co_smoothing(rates: Tensor, counts: Tensor, heldout: Sequence[int] | Tensor) -> dict[str, Tensor]:
    """``{"co_bps", "heldin_bps"}``: bits per spike on the held-out and held-in neurons."""
    _check_pair(rates, counts, ("rates", "counts"))
    n = rates.shape[-1]
    idx = torch.as_tensor(heldout, dtype=torch.long, device=rates.device).reshape(-1)
    if idx.numel() == 0 or bool(((idx < 0) | (idx >= n)).any()) or idx.unique().numel() != idx.numel():
        raise ValueError(f"heldout must be distinct neuron indices in [0, {n}), got {idx.tolist()}")
    held_in = torch.ones(n, dtype=torch.bool, device=rates.device)
    held_in[idx] = False
    out = {"co_bps": bits_per_spike(rates[..., idx], counts[..., idx])}
    if bool(held_in.any()):
        out["heldin_bps"] = bits_per_spike(rates[..., held_in], counts[..., held_in])
    return out


def forward_prediction_bps(rates: Tensor, counts: Tensor, n_forward: int, *, time_dim: int = -2) -> Tensor:
    """Bits per spike on the last ``n_forward`` bins along ``time_dim`` (fp-bps)."""
    _check_pair(rates, counts, ("rates", "counts"))
    T = rates.shape[time_dim]
    if not 1 <= n_forward < T:
        raise ValueError(f"n_forward must be in [1, {T}), got {n_forward}")
    return bits_per_spike(rates.narrow(time_dim, T - n_forward, n_forward),
                          counts.narrow(time_dim, T - n_forward, n_forward))
