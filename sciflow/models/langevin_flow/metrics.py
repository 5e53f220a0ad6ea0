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

* **NLB metrics** (Pei et al. 2021, ``nlb_tools.evaluation``): :func:`velocity_r2` — ridge
  regression from rates to behaviour fitted on the training trials, regularisation chosen by
  5-fold cross-validation over ``α ∈ logspace(-4, 0, 9)``, R² (uniform over behaviour channels) on
  the evaluation trials; :func:`psth_r2` — R² (uniform over neurons) between the condition-averaged
  predicted rates and the reference PSTHs; :func:`evaluate_nlb` computes co-bps, vel R², psth R²
  and fp-bps from :class:`~sciflow.data.nlb.NLBTensors` and predicted rates.

All take tensors ``(..., neuron)``: every leading axis (trials, time) is pooled. Rates are
expected counts per bin (multiply spikes/s by the bin width). NaN counts (NLB's padding) are
skipped by the bits-per-spike metrics, as in ``nlb_tools``; NaN behaviour rows by the decoder.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def _check_pair(a: Tensor, b: Tensor, names: tuple[str, str], *, nan_in_second: bool = False) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must have the same shape")
    if a.ndim < 2:
        raise ValueError(f"{names[0]} must be (..., neuron) with at least one pooled axis, got {tuple(a.shape)}")
    if nan_in_second:  # NaN marks padding in the second (counts); the first must be finite elsewhere
        if bool(torch.isinf(b).any()):
            raise ValueError(f"{names[1]} contains inf")
        if not bool(torch.isfinite(a[~torch.isnan(b)]).all()):
            raise ValueError(f"{names[0]} contains NaN/inf where {names[1]} is observed")
        return
    for t, n in ((a, names[0]), (b, names[1])):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{n} contains NaN/inf")


def bits_per_spike(rates: Tensor, counts: Tensor, *, eps: float = 1e-9) -> Tensor:
    """Bits per spike of ``rates`` (expected counts per bin) for ``counts``; both ``(..., neuron)``.

    Returns a 0-d tensor (all neurons pooled, as in NLB). NaN counts are skipped (the null rate of
    each neuron is its mean over the observed entries). Raises when there are no spikes.
    """
    _check_pair(rates, counts, ("rates", "counts"), nan_in_second=True)
    observed = ~torch.isnan(counts)
    if bool((rates[observed] < 0).any()):
        raise ValueError("rates must be non-negative expected counts per bin")
    m = observed.reshape(-1, counts.shape[-1]).double()
    r = torch.where(m > 0, rates.reshape(-1, rates.shape[-1]).double(), 1.0).clamp_min(eps)
    k = torch.nan_to_num(counts.reshape(-1, counts.shape[-1]).double())
    n_spikes = k.sum()
    if n_spikes <= 0:
        raise ValueError("bits_per_spike is undefined without spikes")
    null = (k.sum(0, keepdim=True) / m.sum(0, keepdim=True).clamp_min(1.0)).clamp_min(eps).expand_as(k)
    ll = (m * (k * r.log() - r)).sum()
    ll0 = (m * (k * null.log() - null)).sum()
    return ((ll - ll0) / (n_spikes * math.log(2))).to(rates.dtype)


def rate_r2(pred: Tensor, true: Tensor, *, variance_weighted: bool = False) -> Tensor:
    """Coefficient of determination between ``pred`` and ``true`` rates ``(..., neuron)``.

    Default: the mean over neurons of the per-neuron R² (sklearn ``uniform_average``; a neuron
    whose true rate barely varies can make it very negative). ``variance_weighted=True``:
    ``1 - Σ_n SS_res,n / Σ_n SS_tot,n`` (sklearn ``variance_weighted``), dominated by the neurons
    whose rates vary most.
    """
    _check_pair(pred, true, ("pred", "true"))
    p = pred.reshape(-1, pred.shape[-1]).double()
    t = true.reshape(-1, true.shape[-1]).double()
    ss_res = ((p - t) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    if bool((ss_tot == 0).any()):
        raise ValueError("rate_r2: a target column is constant (R² undefined)")
    if variance_weighted:
        return (1 - ss_res.sum() / ss_tot.sum()).to(pred.dtype)
    return (1 - ss_res / ss_tot).mean().to(pred.dtype)


def co_smoothing(rates: Tensor, counts: Tensor, heldout: Sequence[int] | Tensor) -> dict[str, Tensor]:
    """``{"co_bps", "heldin_bps"}``: bits per spike on the held-out and held-in neurons."""
    _check_pair(rates, counts, ("rates", "counts"), nan_in_second=True)
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
    _check_pair(rates, counts, ("rates", "counts"), nan_in_second=True)
    T = rates.shape[time_dim]
    if not 1 <= n_forward < T:
        raise ValueError(f"n_forward must be in [1, {T}), got {n_forward}")
    return bits_per_spike(rates.narrow(time_dim, T - n_forward, n_forward),
                          counts.narrow(time_dim, T - n_forward, n_forward))


# ----------------------------------------------------------------------------- NLB decoding / PSTH


def ridge_fit(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Ridge regression with an unpenalised intercept (sklearn ``Ridge``): ``(W (F, C), b (C,))``
    minimising ``|y - x W - b|² + α |W|²`` for ``x (n, F)``, ``y (n, C)``."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    a = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(a, xc.T @ yc)
    return w, ym - xm @ w


def _r2_uniform(pred: Tensor, y: Tensor) -> Tensor:
    ss_res = ((pred - y) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return (1 - ss_res / ss_tot).mean()


def _flatten_rows(x: Tensor) -> Tensor:
    return x.reshape(-1, x.shape[-1]).double()


def velocity_r2(train_rates: Tensor, train_behavior: Tensor, eval_rates: Tensor, eval_behavior: Tensor, *,
                alphas: Sequence[float] | Tensor | None = None, n_folds: int = 5) -> Tensor:
    """NLB "vel R²": ridge decoder from rates to behaviour (trial, time, ·), pooled over bins.

    ``α`` is chosen by ``n_folds``-fold cross-validation on the training bins (contiguous folds,
    mean R² — sklearn ``GridSearchCV`` with ``KFold`` as ``nlb_tools`` uses it) over ``alphas``
    (default ``logspace(-4, 0, 9)``), refitted on all training bins and scored on the evaluation
    bins (R² averaged uniformly over behaviour channels). Rows with NaN behaviour are dropped.
    """
    xs, ys = _flatten_rows(train_rates), _flatten_rows(train_behavior)
    xe, ye = _flatten_rows(eval_rates), _flatten_rows(eval_behavior)
    if xs.shape[0] != ys.shape[0] or xe.shape[0] != ye.shape[0]:
        raise ValueError(f"rates and behaviour must have the same (trial, time): train {tuple(train_rates.shape)} vs "
                         f"{tuple(train_behavior.shape)}, eval {tuple(eval_rates.shape)} "
                         f"vs {tuple(eval_behavior.shape)}")
    keep_s, keep_e = ~torch.isnan(ys).any(1), ~torch.isnan(ye).any(1)
    xs, ys, xe, ye = xs[keep_s], ys[keep_s], xe[keep_e], ye[keep_e]
    if not (bool(torch.isfinite(xs).all()) and bool(torch.isfinite(xe).all())):
        raise ValueError("velocity_r2: NaN/inf rates where behaviour is observed")
    n = xs.shape[0]
    if n < n_folds or n_folds < 2:
        raise ValueError(f"velocity_r2 needs n_folds >= 2 and at least n_folds training bins, got {n_folds}, {n}")
    grid = torch.logspace(-4, 0, 9, dtype=torch.float64) if alphas is None else torch.as_tensor(alphas).double()
    edges = [n * i // n_folds for i in range(n_folds + 1)]
    best, best_score = None, -math.inf
    for alpha in grid.tolist():
        scores = []
        for i in range(n_folds):
            val = torch.zeros(n, dtype=torch.bool)
            val[edges[i]:edges[i + 1]] = True
            w, b = ridge_fit(xs[~val], ys[~val], alpha)
            scores.append(float(_r2_uniform(xs[val] @ w + b, ys[val])))
        score = sum(scores) / n_folds
        if score > best_score:
            best, best_score = alpha, score
    w, b = ridge_fit(xs, ys, best)
    return _r2_uniform(xe @ w + b, ye).to(eval_rates.dtype)


def psth_r2(psth: Tensor, eval_rates: Tensor, cond_idx: Sequence[Tensor]) -> Tensor:
    """NLB "psth R²": for each condition ``c`` average the predicted rates of its evaluation trials
    ``cond_idx[c]`` and compare with ``psth[c]`` ``(time, neuron)``; R² over all (condition, time)
    rows, averaged uniformly over neurons. Time rows where the PSTH is NaN are skipped; conditions
    without trials are skipped."""
    if psth.ndim != 3 or eval_rates.ndim != 3 or psth.shape[1:] != eval_rates.shape[1:]:
        raise ValueError(f"psth (condition, time, neuron) {tuple(psth.shape)} and eval_rates (trial, time, neuron) "
                         f"{tuple(eval_rates.shape)} must share (time, neuron)")
    if len(cond_idx) != psth.shape[0]:
        raise ValueError(f"cond_idx has {len(cond_idx)} conditions, psth {psth.shape[0]}")
    true, pred = [], []
    for c, idx in enumerate(cond_idx):
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        if idx.numel() == 0:
            continue
        if bool(((idx < 0) | (idx >= eval_rates.shape[0])).any()):
            raise ValueError(f"cond_idx[{c}] indexes outside the {eval_rates.shape[0]} evaluation trials")
        rows = ~torch.isnan(psth[c, :, 0])
        true.append(psth[c][rows].double())
        pred.append(eval_rates[idx].double().mean(0)[rows])
    if not true:
        raise ValueError("psth_r2: no condition has evaluation trials")
    t, p = torch.cat(true), torch.cat(pred)
    if not bool(torch.isfinite(p).all()):
        raise ValueError("psth_r2: NaN/inf rate predictions within the PSTH's time range")
    return _r2_uniform(p, t).to(eval_rates.dtype)


def evaluate_nlb(data, train_rates: Tensor, eval_rates: Tensor, eval_rates_forward: Tensor | None = None
                 ) -> dict[str, float]:
    """The NLB metrics of predicted rates (expected counts per bin) against
    :class:`~sciflow.data.nlb.NLBTensors` ``data``.

    ``train_rates`` / ``eval_rates``: ``(trial, time, n_heldin + n_heldout)`` over the observed bins;
    ``eval_rates_forward``: ``(trial, n_forward, n_heldin + n_heldout)``. Returns the metrics whose
    targets ``data`` holds: ``co-bps`` (needs ``eval_spikes_heldout``), ``vel R2`` (behaviour; one
    decoder per decode mask, R² averaged over masks as in ``nlb_tools``), ``psth R2`` (``psth`` and
    ``eval_cond_idx``), ``fp-bps`` (forward spikes and ``eval_rates_forward``).
    """
    n_in = data.n_heldin
    out: dict[str, float] = {}
    if data.eval_spikes_heldout is not None:
        out["co-bps"] = float(bits_per_spike(eval_rates[..., n_in:], data.eval_spikes_heldout.to(eval_rates.dtype)))
    if data.train_behavior is not None and data.eval_behavior is not None:
        tm = (data.train_decode_mask if data.train_decode_mask is not None
              else torch.ones(len(train_rates), 1, dtype=torch.bool))
        em = (data.eval_decode_mask if data.eval_decode_mask is not None
              else torch.ones(len(eval_rates), 1, dtype=torch.bool))
        r2s = [float(velocity_r2(train_rates[tm[:, i]], data.train_behavior[tm[:, i]],
                                 eval_rates[em[:, i]], data.eval_behavior[em[:, i]])) for i in range(tm.shape[1])]
        out["vel R2"] = sum(r2s) / len(r2s)
    if data.psth is not None and data.eval_cond_idx is not None:
        out["psth R2"] = float(psth_r2(data.psth, eval_rates, data.eval_cond_idx))
    if eval_rates_forward is not None and data.eval_spikes_heldin_forward is not None \
            and data.eval_spikes_heldout_forward is not None:
        spikes = torch.cat([data.eval_spikes_heldin_forward, data.eval_spikes_heldout_forward], -1)
        out["fp-bps"] = float(bits_per_spike(eval_rates_forward, spikes.to(eval_rates_forward.dtype)))
    return out
