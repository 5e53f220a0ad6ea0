"""Adaptive conformal inference: Gibbs & Candès' deterministic long-run bound, recovery after a
distribution shift where split conformal fails, exchangeable streams, chunked and masked streams."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.uq import AbsoluteResidual, AdaptiveConformal, NormalizedResidual, Prediction
from sciflow.uq.adaptive_conformal import rolling_quantile
from sciflow.uq.conformal import conformal_quantile

ALPHA = 0.1


def _shifted_stream(T=1500, shift_at=500, seed=0):
    """Three positions of a forecast stream whose point forecast is 0 and whose truth is noise:
    unchanged N(0, 1); N(0, 1) then N(0, 9) from ``shift_at``; N(0, 1) with a mean drifting
    linearly to 3."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(T, 3, generator=g, dtype=torch.float64)
    t = torch.arange(T, dtype=torch.float64)
    y = z.clone()
    y[shift_at:, 1] *= 3
    y[:, 2] += 3 * t / T
    return Prediction(torch.zeros(T, 3, dtype=torch.float64)), y


def test_long_run_miscoverage_obeys_the_deterministic_bound_at_every_horizon():
    pred, y = _shifted_stream()
    for gamma in (0.005, 0.02, 0.1):
        res = AdaptiveConformal(ALPHA, gamma, AbsoluteResidual()).run(pred, y)
        err = res.miscovered.double()
        T = torch.arange(1, err.shape[0] + 1, dtype=torch.float64)[:, None]
        gap = (err.cumsum(0) / T - ALPHA).abs()
        bound = (max(ALPHA, 1 - ALPHA) + gamma) / (gamma * T)  # Gibbs & Candes 2021, Prop. 4.1
        assert (gap <= bound + 1e-12).all(), gamma
        # alpha_t never leaves [-gamma, 1 + gamma] (the proof's invariant)
        assert res.alpha_t.min() >= -gamma - 1e-12 and res.alpha_t.max() <= 1 + gamma + 1e-12


def test_delayed_feedback_keeps_the_widened_bound_and_never_peeks():
    """Lead-time forecasts: the truth of step s is known from step s + d + 1 on."""
    pred, y = _shifted_stream()
    d, gamma = 5, 0.02
    res = AdaptiveConformal(ALPHA, gamma, AbsoluteResidual(), delay=d).run(pred, y)
    err = res.miscovered.double()
    T = torch.arange(1, err.shape[0] + 1, dtype=torch.float64)[:, None]
    bound = (max(ALPHA, 1 - ALPHA) + gamma * (d + 1)) / (gamma * T)
    assert ((err.cumsum(0) / T - ALPHA).abs() <= bound + 1e-12).all()
    assert res.alpha_t.min() >= -gamma * (d + 1) - 1e-12 and res.alpha_t.max() <= 1 + gamma * (d + 1) + 1e-12
    # the first score and update arrive at step d + 1, so the intervals stay the whole line exactly d
    # steps longer than without delay (while infinite, no errors: alpha_t rises by gamma alpha a step)
    nodelay = AdaptiveConformal(ALPHA, gamma, AbsoluteResidual()).run(pred, y)
    first = [int(torch.isfinite(r.upper[:, 0]).nonzero()[0]) for r in (nodelay, res)]
    assert first[1] == first[0] + d and torch.isinf(res.upper[:first[1]]).all()
    assert (res.alpha_t[:d + 1] == ALPHA).all() and (res.alpha_t[d + 1] != ALPHA).all()
    # changing the truths of the last d steps cannot change any interval issued up to the last step
    y2 = y.clone()
    y2[-d:] += 100.0
    res2 = AdaptiveConformal(ALPHA, gamma, AbsoluteResidual(), delay=d).run(pred, y2)
    assert torch.equal(res2.upper, res.upper) and torch.equal(res2.alpha_t, res.alpha_t)
    # a delay carries across chunks
    aci = AdaptiveConformal(ALPHA, gamma, AbsoluteResidual(), delay=d)
    parts = [aci.run(Prediction(pred.mean[a:b]), y[a:b]) for a, b in ((0, 3), (3, 700), (700, 1500))]
    assert torch.equal(torch.cat([p.upper for p in parts]), res.upper)


def test_aci_recovers_coverage_after_a_shift_where_split_conformal_does_not():
    pred, y = _shifted_stream(T=2000)
    cal = 300  # the first 300 steps calibrate; the rest is the test stream
    test_pred, test_y = Prediction(pred.mean[cal:]), y[cal:]
    scores = (y[:cal] - pred.mean[:cal]).abs()
    q = conformal_quantile(scores, ALPHA)  # split conformal, frozen after calibration
    split_cov = ((test_y - test_pred.mean).abs() <= q).double().mean(0)
    aci = AdaptiveConformal(ALPHA, 0.02, AbsoluteResidual()).calibrate_scores(scores).run(test_pred, test_y)
    rolling = AdaptiveConformal(ALPHA, 0.0, AbsoluteResidual()).calibrate_scores(scores).run(test_pred, test_y)
    cov, roll = aci.coverage(), rolling.coverage()
    # the variance jump (position 1): split conformal covers P(|3z| < 1.645) ~ 0.42 after it; the
    # drifting mean (position 2, 0.45 -> 3 over the test stream) about half the time
    assert split_cov[1] < 0.5 and split_cov[2] < 0.6
    assert (cov - (1 - ALPHA)).abs().max() < 0.02  # ACI: every position at 0.9
    # without the feedback, the rolling window of all past scores lags behind both shifts
    assert roll[1] < 0.85 and roll[2] < 0.85
    # unshifted position: all three are exchangeable-valid
    assert abs(float(split_cov[0]) - 0.9) < 0.03 and abs(float(roll[0]) - 0.9) < 0.03
    # after the jump, ACI's interval grows to the new noise level: 1.645 x 3 half-width
    half = (aci.upper[-500:, 1] - aci.lower[-500:, 1]) / 2
    assert abs(float(half.median()) / (1.645 * 3) - 1) < 0.15


def test_exchangeable_stream_gives_split_conformal_intervals():
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    y = torch.randn(3000, 2, generator=g, dtype=torch.float64) * sigma
    pred = Prediction(torch.zeros_like(y), variance=(sigma**2).expand_as(y))
    res = AdaptiveConformal(ALPHA, 0.005).run(pred, y)  # normalised residual |y| / sigma
    s = res.summary()
    assert abs(s["coverage"] - 0.9) < 0.015 and s["worst_position_coverage"] > 0.88
    width = (res.upper - res.lower)[500:]
    ratio = width.median(0).values / (2 * 1.6449 * sigma)  # the oracle 90 % interval
    assert ((ratio - 1).abs() < 0.08).all(), ratio
    assert torch.isinf((res.upper - res.lower)[0]).all()  # no score yet: the whole line
    assert torch.isfinite(width).all()


def test_chunks_continue_the_stream_and_window_limits_the_memory():
    pred, y = _shifted_stream(T=400, shift_at=200)
    whole = AdaptiveConformal(ALPHA, 0.05, AbsoluteResidual(), window=100).run(pred, y)
    aci = AdaptiveConformal(ALPHA, 0.05, AbsoluteResidual(), window=100)
    parts = [aci.run(Prediction(pred.mean[a:b]), y[a:b]) for a, b in ((0, 150), (150, 151), (151, 400))]
    for name in ("lower", "upper", "alpha_t", "miscovered"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name)), name
    assert aci.scores.shape == (100, 3)
    # the window forgets the small pre-shift scores: its half-width at the end is the new scale's
    # quantile, not a mix (all-past memory: larger lag)
    allpast = AdaptiveConformal(ALPHA, 0.0, AbsoluteResidual()).run(pred, y)
    windowed = AdaptiveConformal(ALPHA, 0.0, AbsoluteResidual(), window=100).run(pred, y)
    w, a = windowed.upper[-50:, 1].mean(), allpast.upper[-50:, 1].mean()
    assert abs(float(w) / (1.645 * 3) - 1) < 0.15 and w > 1.2 * a, (w, a)


def test_unobserved_truths_neither_score_nor_move_alpha():
    pred, y = _shifted_stream(T=300)
    observed = torch.ones_like(y, dtype=torch.bool)
    observed[100:200, 1] = False
    y = y.masked_fill(~observed, math.nan)  # whatever fills them never reaches a number
    res = AdaptiveConformal(ALPHA, 0.05, AbsoluteResidual()).run(pred, y, observed=observed)
    assert torch.isfinite(res.alpha_t).all()
    assert (res.alpha_t[100:201, 1] == res.alpha_t[100, 1]).all()  # frozen while unobserved
    assert not res.miscovered[100:200, 1].any()
    n_obs = observed.sum(0).double()
    assert torch.allclose(res.coverage(), 1 - (res.miscovered & observed).sum(0) / n_obs)
    # the same stream with the gap cut out gives the same intervals for position 1
    keep = torch.cat([torch.arange(100), torch.arange(200, 300)])
    cut = AdaptiveConformal(ALPHA, 0.05, AbsoluteResidual()).run(Prediction(pred.mean[keep, 1:2]), y[keep, 1:2])
    assert torch.equal(cut.upper[:, 0], res.upper[keep, 1]) and torch.equal(cut.alpha_t[:, 0], res.alpha_t[keep, 1])


def test_extreme_levels_give_infinite_and_empty_intervals():
    pred, y = _shifted_stream(T=200)
    res = AdaptiveConformal(0.5, 0.9, AbsoluteResidual()).run(pred, y)  # a huge step: alpha_t leaves [0, 1]
    width = res.upper - res.lower
    empty, infinite = width < 0, torch.isinf(width) & (width > 0)
    assert empty.any() and (res.alpha_t[empty] >= 1).all() and res.miscovered[empty].all()
    assert (res.alpha_t[infinite & (torch.arange(200)[:, None] > 0)] <= 0.5).all()
    s = res.summary()
    assert 0 < s["empty_fraction"] < 1 and 0 < s["infinite_fraction"] < 1


def _switching_stream(T=4000, seed=0):
    """Three positions: stationary N(0, 1); noise scale switching between 1 and 4 every 200 steps;
    a scale drifting slowly from 1 to 3."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T)
    scale = torch.ones(T, 3, dtype=torch.float64)
    scale[:, 1] = torch.where((t // 200) % 2 == 0, 1.0, 4.0)
    scale[:, 2] = 1 + 2 * t / T
    y = torch.randn(T, 3, generator=g, dtype=torch.float64) * scale
    return Prediction(torch.zeros(T, 3, dtype=torch.float64)), y


def _worst_local_gap(res, w=200):
    """Largest |coverage - 0.9| over windows of ``w`` steps (every 50), per position."""
    c = (~res.miscovered).double()
    return torch.stack([c[i:i + w].mean(0) for i in range(0, c.shape[0] - w, 50)]).sub(0.9).abs().max(0).values


def test_dtaci_picks_the_step_size_each_position_needs():
    """DtACI (Gibbs & Candes 2024): experts with the authors' gamma grid, reweighted by their
    pinball loss. On the switching position the weights move to large steps (local coverage far
    better than a small fixed gamma's); on the calm ones they stay small (intervals as tight)."""
    from sciflow.uq.adaptive_conformal import DTACI_GAMMAS

    pred, y = _switching_stream()
    dt = AdaptiveConformal(ALPHA, DTACI_GAMMAS, AbsoluteResidual())
    res = dt.run(pred, y)
    small = AdaptiveConformal(ALPHA, 0.005, AbsoluteResidual()).run(pred, y)
    mean_gamma = (dt.weights * dt.gammas[:, None]).sum(0)
    assert mean_gamma[1] > 3 * mean_gamma[0] and mean_gamma[1] > 3 * mean_gamma[2], mean_gamma
    assert torch.allclose(dt.weights.sum(0), torch.ones(3, dtype=torch.float64))
    assert (res.coverage() - 0.9).abs().max() < 0.015
    gap_dt, gap_small = _worst_local_gap(res), _worst_local_gap(small)
    assert gap_dt[1] < 0.6 * gap_small[1], (gap_dt, gap_small)
    width = lambda r: (r.upper - r.lower)[500:, 0].median()  # noqa: E731
    assert width(res) < 1.02 * width(small)  # the stationary position pays nothing for the adaptivity
    # the next level is the weights' mean of the experts' levels
    assert dt.experts.shape == (8, 3) and torch.allclose(dt.alpha_t, (dt.weights * dt.experts).sum(0))
    assert (dt.experts.min(0).values <= dt.alpha_t).all() and (dt.alpha_t <= dt.experts.max(0).values).all()


def test_one_gamma_in_a_list_is_plain_aci():
    pred, y = _shifted_stream(T=500)
    a = AdaptiveConformal(ALPHA, 0.02, AbsoluteResidual(), delay=2).run(pred, y)
    b = AdaptiveConformal(ALPHA, [0.02], AbsoluteResidual(), delay=2).run(pred, y)
    assert torch.equal(a.upper, b.upper) and torch.equal(a.alpha_t, b.alpha_t)


def test_dtaci_defaults_are_the_papers():
    from sciflow.uq.adaptive_conformal import dtaci_defaults

    sigma, eta = dtaci_defaults(0.1, 8, 500)
    assert sigma == 0.001 and abs(eta - 2.76) < 0.01  # the authors' code: sigma 1/1000, eta 2.72


def test_rolling_quantile_is_the_split_conformal_quantile():
    g = torch.Generator().manual_seed(2)
    s = torch.rand(57, 4, generator=g, dtype=torch.float64)
    valid = torch.ones_like(s, dtype=torch.bool)
    for a in (0.01, 0.1, 0.5, 0.9):
        q = rolling_quantile(s, valid, torch.full((4,), a, dtype=torch.float64))
        assert torch.equal(q, conformal_quantile(s, a))
    q = rolling_quantile(s, valid, torch.tensor([1.0, 1.2, 0.0, -0.1], dtype=torch.float64))
    assert q.tolist() == [-math.inf, -math.inf, math.inf, math.inf]


@pytest.mark.parametrize("window", [None, 7])
def test_the_sorted_memory_gives_the_quantiles_of_a_full_sort(window):
    """Insertions and window removals keep each position's sorted scores (ties, unobserved entries
    and a scalar stream included): every step's quantiles and counts equal a re-sort of the window."""
    from sciflow.uq._score_memory import ScoreMemory

    g = torch.Generator().manual_seed(3)
    for event in ((4, 3), ()):
        mem = ScoreMemory(window)
        cal = torch.randint(0, 5, (5, *event), generator=g).double()  # many ties
        cal_valid = torch.rand(cal.shape, generator=g) > 0.2
        mem.add(cal, cal_valid)
        seen, seen_valid = cal, cal_valid
        for _ in range(25):
            x = torch.randint(0, 5, (1, *event), generator=g).double()
            v = torch.rand(x.shape, generator=g) > 0.2
            mem.add(x, v)
            seen, seen_valid = torch.cat([seen, x]), torch.cat([seen_valid, v])
            if window is not None:
                seen, seen_valid = seen[-window:], seen_valid[-window:]
            alphas = torch.rand((3, *event), generator=g, dtype=torch.float64) * 1.2 - 0.1
            assert torch.equal(mem.quantile(alphas), rolling_quantile(seen, seen_valid, alphas))
            assert torch.equal(mem.quantile(alphas[0]), rolling_quantile(seen, seen_valid, alphas[0]))
            probe = torch.full(event, 2.0, dtype=torch.float64)
            assert torch.equal(mem.below(probe), ((seen < 2.0) & seen_valid).sum(0))
            assert torch.equal(mem.scores, seen) and mem.sorted.shape[1] == seen.shape[0]


def test_bad_input_is_refused_with_a_message():
    pred, y = _shifted_stream(T=20)
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveConformal(ALPHA, -0.1)
    with pytest.raises(ValueError, match="window"):
        AdaptiveConformal(ALPHA, 0.01, window=0)
    with pytest.raises(ValueError, match="delay"):
        AdaptiveConformal(ALPHA, 0.01, delay=-1)
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveConformal(ALPHA, [])
    with pytest.raises(ValueError, match="gamma"):
        AdaptiveConformal(ALPHA, [0.01, math.nan])
    with pytest.raises(ValueError, match="sigma"):
        AdaptiveConformal(ALPHA, [0.01, 0.1], sigma=2.0)
    with pytest.raises(ValueError, match="alpha"):
        AdaptiveConformal(1.5)
    aci = AdaptiveConformal(ALPHA, 0.01, AbsoluteResidual())
    with pytest.raises(ValueError, match=r"y has shape \(19, 3\)"):
        aci.run(pred, y[1:])
    bad = y.clone()
    bad[3, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        aci.run(pred, bad)
    aci.run(pred, y)
    with pytest.raises(ValueError, match=r"event shape \(2,\), expected \(3,\)"):
        aci.run(Prediction(pred.mean[:, :2]), y[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        AdaptiveConformal(ALPHA).calibrate_scores(torch.tensor([[math.nan]]))
    with pytest.raises(ValueError, match="spread|variance|std"):
        AdaptiveConformal(ALPHA, score=NormalizedResidual()).run(pred, y)


def test_randomized_dtaci_issues_one_expert_drawn_by_the_weights():
    """``randomize=True`` is Gibbs & Candes' Alg. 1: each step and position issues one expert's
    level, expert i with probability p^i_t; seeded draws repeat; long-run coverage holds."""
    from sciflow.uq.adaptive_conformal import DTACI_GAMMAS

    pred, y = _switching_stream(T=1500)
    # every issued level is one of the experts' levels at that step (read from the pending record)
    dt = AdaptiveConformal(ALPHA, DTACI_GAMMAS, AbsoluteResidual(), randomize=True)
    g = torch.Generator().manual_seed(0)
    for t in range(300):
        a = dt.run(Prediction(pred.mean[t:t + 1]), y[t:t + 1], generator=g).alpha_t[0]
        levels = dt.pending[-1][4]  # the experts' levels this step was issued with, (k, 3)
        assert ((levels == a).any(0)).all(), t
    # seeded: the same draws; another seed: other draws
    run = lambda seed: AdaptiveConformal(ALPHA, DTACI_GAMMAS, AbsoluteResidual(), randomize=True).run(  # noqa: E731
        pred, y, generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.alpha_t, b.alpha_t) and not torch.equal(a.alpha_t, c.alpha_t)
    assert (a.coverage() - 0.9).abs().max() < 0.02
    # one expert: nothing to draw, plain ACI
    one = AdaptiveConformal(ALPHA, [0.02], AbsoluteResidual(), randomize=True).run(pred, y)
    assert torch.equal(one.upper, AdaptiveConformal(ALPHA, 0.02, AbsoluteResidual()).run(pred, y).upper)


def test_randomized_dtaci_draws_follow_the_weights():
    """2000 positions with the same stream share their experts and weights: at a step where the
    experts' levels differ, the share of positions issuing expert i matches p^i within 4 sigma."""
    from sciflow.uq.adaptive_conformal import DTACI_GAMMAS

    _, y1 = _switching_stream(T=400)
    y = y1[:, 1:2].expand(-1, 2000).contiguous()
    dt = AdaptiveConformal(ALPHA, DTACI_GAMMAS, AbsoluteResidual(), randomize=True)
    dt.run(Prediction(torch.zeros_like(y[:399])), y[:399], generator=torch.Generator().manual_seed(0))
    dt._learn(*dt.pending.pop(0))  # the last truth: the state the next level is drawn from
    levels, p = dt.experts[:, 0], dt.weights[:, 0]
    assert (dt.experts == levels[:, None]).all() and levels.unique().numel() == len(DTACI_GAMMAS)
    a = dt.run(Prediction(torch.zeros_like(y[399:])), y[399:], generator=torch.Generator().manual_seed(1)).alpha_t[0]
    share = torch.stack([(a == lv).double().mean() for lv in levels])
    assert torch.allclose(share.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert ((share - p).abs() <= 4 * (p * (1 - p) / 2000).sqrt() + 1e-3).all(), (share, p)
