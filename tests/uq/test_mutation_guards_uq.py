"""Mutation-audit guards for ``sciflow.uq``: properties the other UQ tests left unchecked.

* Split conformal's finite-sample guarantee is an exact identity under exchangeability: over the
  ``n + 1`` leave-one-out splits of ``n + 1`` distinct scores, the held-out score is ``≤ q̂`` in
  exactly ``min(k, n + 1)`` of them, ``k = ⌈(n + 1)(1 - α)⌉`` (Vovk et al. 2005; Angelopoulos &
  Bates 2023, Thm. D.1), with ``q̂ = +∞`` only when ``k > n``. ``k`` is computed here in exact
  rational arithmetic over many ``(n, α)``, including the boundary ``k = n``.
* Split-R̂ and the effective sample size against a direct transcription of Vehtari et al. (2021):
  eq. 3–4 (``var⁺ = (n-1)/n W + B/n`` on half-chains) and eq. 10 with Geyer's initial monotone
  sequence (§3.2), the autocovariances summed directly instead of by FFT. The existing tests use
  chains of 1000+ draws where the ``(n-1)/n`` factors change R̂ and ESS by < 0.1 %; on short chains
  they matter (they are what makes R̂ < 1 possible for well-mixed chains).
* Randomised ranks / PIT of discrete (tied) ensembles are uniform under exchangeability.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from sciflow.uq.conformal import conformal_quantile
from sciflow.uq.diagnostics import ess_basic, split_rhat
from sciflow.uq.scores import pit, rank_histogram

DT = torch.float64


@pytest.mark.parametrize("alpha", ["0.05", "0.1", "0.2", "0.25", "0.5", "0.3"])
def test_conformal_leave_one_out_coverage_is_exactly_k_over_n_plus_1(alpha):
    a = float(alpha)
    g = torch.Generator().manual_seed(0)
    for n in range(1, 41):
        k = math.ceil((n + 1) * (1 - Fraction(alpha)))                # exact rational arithmetic
        s = torch.randperm(n + 1, generator=g).to(DT) + torch.rand(n + 1, generator=g, dtype=DT) * 0.5
        hits = 0
        for i in range(n + 1):
            cal = torch.cat([s[:i], s[i + 1:]])
            q = conformal_quantile(cal, a)
            if k > n:
                assert math.isinf(q.item()), (n, alpha)
            else:
                assert q.item() == torch.sort(cal).values[k - 1].item(), (n, alpha, k)
            hits += bool(s[i] <= q)
        assert hits == min(k, n + 1), (n, alpha, hits, k)
        assert hits / (n + 1) >= 1 - a


def _split_np(x):
    n = x.shape[1] // 2
    return np.concatenate([x[:, :n], x[:, x.shape[1] - n:]], 0)


def _split_rhat_reference(x):
    """Vehtari et al. (2021) eq. 3–4 on split chains; x: (chains, draws)."""
    c = _split_np(x)
    n = c.shape[1]
    w = c.var(1, ddof=1).mean()
    b = n * c.mean(1).var(ddof=1)
    return math.sqrt(((n - 1) / n * w + b / n) / w)


def _ess_reference(x):
    """ESS of split chains: eq. 10 (ρ_t = 1 - (W - mean_m acov_{m,t}) / var⁺) + Geyer truncation."""
    c = _split_np(x)
    m, n = c.shape
    xc = c - c.mean(1, keepdims=True)
    acov = np.array([[np.dot(xc[j, : n - t], xc[j, t:]) / n for t in range(n)] for j in range(m)])
    w = (acov[:, 0] * n / (n - 1)).mean()
    var_plus = (n - 1) / n * w + (c.mean(1).var(ddof=1) if m > 1 else 0.0)
    rho = 1 - (w - acov.mean(0)) / var_plus
    rho[0] = 1.0
    pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(1)
    tau_sum, running_min = 0.0, np.inf
    for p in pairs:                              # initial positive sequence, made monotone
        if p <= 0:
            break
        running_min = min(running_min, p)
        tau_sum += running_min
    tau = max(-1 + 2 * tau_sum, 1 / math.log10(m * n))
    return m * n / tau


@pytest.mark.parametrize("n_draws", [8, 9, 20, 51])
def test_split_rhat_and_ess_match_the_paper_on_short_chains(n_draws):
    g = torch.Generator().manual_seed(n_draws)
    iid = torch.randn(4, n_draws, 3, generator=g, dtype=DT)
    ar = iid.clone()
    for t in range(1, n_draws):                  # AR(1), φ = 0.5: positively correlated
        ar[:, t] = 0.5 * ar[:, t - 1] + iid[:, t]
    shifted = iid + torch.tensor([0.0, 0.0, 0.5, -0.5], dtype=DT)[:, None, None]
    for draws in (iid, ar, shifted):
        r = split_rhat(draws)
        e = ess_basic(draws)
        for q in range(draws.shape[2]):
            x = draws[:, :, q].numpy()
            assert abs(r[q].item() - _split_rhat_reference(x)) < 1e-10
            assert abs(e[q].item() / _ess_reference(x) - 1) < 1e-6   # FFT vs direct sums


def test_split_rhat_of_identical_half_chains_is_sqrt_n_minus_1_over_n():
    # every half-chain holds the same values (B = 0): R̂ = sqrt((n-1)/n) exactly, n = half length
    base = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4, 1.1], dtype=DT)
    g = torch.Generator().manual_seed(1)
    halves = [base[torch.randperm(6, generator=g)] for _ in range(6)]
    draws = torch.stack([torch.cat(halves[2 * i: 2 * i + 2]) for i in range(3)]).unsqueeze(-1)  # (3, 12, 1)
    assert abs(split_rhat(draws).item() - math.sqrt(5 / 6)) < 1e-12


def test_randomised_ranks_of_exchangeable_discrete_ensembles_are_uniform():
    """With ties broken uniformly at random (Hamill 2001, §3), the rank of an observation that is
    exchangeable with the ``m`` members is uniform on ``{0, …, m}`` even for discrete data with many
    ties; the PIT ``(r + 1/2)/(m + 1)`` then has mean 1/2. (The existing tests use continuous data.)"""
    m, n = 5, 60_000
    g = torch.Generator().manual_seed(2)
    probs = torch.tensor([0.5, 0.3, 0.2], dtype=DT)
    draws = torch.multinomial(probs, (m + 1) * n, replacement=True, generator=g).to(DT).reshape(m + 1, n)
    samples, y = draws[:m], draws[m]
    counts = rank_histogram(samples, y, generator=torch.Generator().manual_seed(3), normalize=False)
    assert counts.shape == (m + 1,) and int(counts.sum()) == n
    expected = n / (m + 1)
    assert float((counts - expected).abs().max()) < 5 * math.sqrt(expected)   # ~5 sigma
    # all members equal to the observation: the rank is uniform over all m + 1 positions
    tied = rank_histogram(torch.zeros(m, n, dtype=DT), torch.zeros(n, dtype=DT),
                          generator=torch.Generator().manual_seed(4), normalize=False)
    assert float((tied - expected).abs().max()) < 5 * math.sqrt(expected)
    u = pit(samples, y, generator=torch.Generator().manual_seed(5))
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
