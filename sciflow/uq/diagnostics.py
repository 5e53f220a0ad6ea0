r"""MCMC convergence diagnostics of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved :math:`\widehat R` for assessing
convergence of MCMC" (Bayesian Analysis 16(2)), in torch and vectorised over parameters.

``draws``: ``(chains, n_draws, *params)``; every function returns ``(*params)``.

- :func:`split_rhat`: classic split-:math:`\widehat R` (eq. 3–4 on half-chains).
- :func:`rhat`: max of the rank-normalised bulk and folded (tail) split-:math:`\widehat R` (§4.2).
- :func:`ess_bulk` / :func:`ess_tail`: effective sample sizes from the combined-chain
  autocorrelation (eq. 10) with Geyer's initial monotone sequence truncation (§3.2), on
  rank-normalised draws (bulk) and on the 5 % / 95 % quantile indicators (tail, §4.3).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(draws: Tensor) -> None:
    if draws.ndim < 2:
        raise ValueError(f"draws must be (chains, n_draws, *params), got {tuple(draws.shape)}")
    if draws.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain, got {draws.shape[1]}")
    if torch.isnan(draws).any():
        raise ValueError("draws contain NaN")


def _split(draws: Tensor) -> Tensor:
    n = draws.shape[1] // 2
    return torch.cat([draws[:, :n], draws[:, draws.shape[1] - n:]], dim=0)


def _rhat_unsplit(x: Tensor) -> Tensor:
    m, n = x.shape[:2]
    w = x.var(dim=1).mean(0)
    b = n * x.mean(dim=1).var(dim=0)
    var_plus = (n - 1) / n * w + b / n
    return (var_plus / w).sqrt()


def split_rhat(draws: Tensor) -> Tensor:
    r"""Split-:math:`\widehat R = \sqrt{\widehat{\mathrm{var}}^+/W}` on chains cut in halves."""
    _check(draws)
    return _rhat_unsplit(_split(draws))


def _rank_normalize(x: Tensor) -> Tensor:
    r"""Pooled ranks -> normal scores :math:`\Phi^{-1}((r - 3/8)/(S + 1/4))` (Blom), ties averaged."""
    shape = x.shape
    flat = x.reshape(shape[0] * shape[1], -1)
    s = flat.shape[0]
    order = flat.argsort(dim=0)
    ranks = torch.empty_like(flat)
    ar = torch.arange(1, s + 1, dtype=flat.dtype, device=flat.device).unsqueeze(1).expand_as(flat)
    ranks.scatter_(0, order, ar)
    # average ranks of ties (rare for continuous draws; exact for indicators/discrete draws)
    sorted_vals = flat.gather(0, order)
    if bool((sorted_vals[1:] == sorted_vals[:-1]).any()):
        ranks = _average_tied_ranks(flat)
    u = (ranks - 0.375) / (s + 0.25)
    z = torch.special.ndtri(u)
    return z.reshape(shape)


def _average_tied_ranks(flat: Tensor) -> Tensor:
    out = torch.empty_like(flat)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        uniq, inv, counts = torch.unique(col, return_inverse=True, return_counts=True)
        upper = torch.cumsum(counts, 0).to(flat.dtype)
        avg = upper - (counts.to(flat.dtype) - 1) / 2
        out[:, j] = avg[inv]
    return out


def rhat(draws: Tensor) -> Tensor:
    r"""Rank-normalised split-:math:`\widehat R`: :math:`\max(\widehat R_{\rm bulk}, \widehat R_{\rm folded})`.
    Converged chains give values below 1.01; above 1.05 do not trust the draws."""
    _check(draws)
    d = draws.to(torch.float64)
    bulk = split_rhat(_rank_normalize(d))
    med = d.reshape(-1, *d.shape[2:]).median(dim=0).values
    tail = split_rhat(_rank_normalize((d - med).abs()))
    return torch.maximum(bulk, tail)


def _autocovariance(x: Tensor) -> Tensor:
    """Biased autocovariance along axis 1 via FFT (zero padded), ``(chains, n, *p)``."""
    n = x.shape[1]
    xc = x - x.mean(dim=1, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(xc, n=size, dim=1)
    acov = torch.fft.irfft(f * f.conj(), n=size, dim=1)[:, :n]
    return acov / n


def _ess(x: Tensor) -> Tensor:
    m, n = x.shape[:2]
    acov = _autocovariance(x)                                   # (m, n, *p)
    chain_var = acov[:, 0] * n / (n - 1)
    w = chain_var.mean(0)
    var_plus = w * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(dim=1).var(dim=0)
    rho = 1 - (w - acov.mean(0)) / var_plus                    # (n, *p), eq. 10
    rho[0] = 1.0
    k = n // 2
    pairs = rho[: 2 * k].reshape(k, 2, *rho.shape[1:]).sum(1)  # P_k = rho_2k + rho_2k+1
    positive = torch.cumprod((pairs > 0).to(x.dtype), dim=0)   # initial positive sequence
    mono = torch.cummin(pairs, dim=0).values                   # initial monotone sequence
    tau = -1 + 2 * (mono.clamp_min(0) * positive).sum(0)
    tau = torch.clamp(tau, min=1.0 / torch.log10(torch.tensor(float(m * n))))
    return m * n / tau


def ess_bulk(draws: Tensor) -> Tensor:
    """Bulk effective sample size (rank-normalised split chains)."""
    _check(draws)
    return _ess(_split(_rank_normalize(draws.to(torch.float64))))


def ess_basic(draws: Tensor) -> Tensor:
    """Effective sample size of the raw draws (split chains, no rank normalisation): the ESS of
    the posterior-mean estimator."""
    _check(draws)
    return _ess(_split(draws.to(torch.float64)))


def ess_tail(draws: Tensor) -> Tensor:
    """Tail ESS: the minimum of the ESS of the 5 % and 95 % quantile indicators."""
    _check(draws)
    d = draws.to(torch.float64)
    flat = d.reshape(-1, *d.shape[2:])
    out = []
    for q in (0.05, 0.95):
        qv = torch.quantile(flat, q, dim=0)
        ind = (d <= qv).to(torch.float64)
        out.append(_ess(_split(ind)))
    return torch.minimum(*out)
