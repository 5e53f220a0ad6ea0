"""Checkpoints and exact resume of :func:`sciflow.models.causal_pinn.train`: a run interrupted after
a checkpoint and resumed from it ends bit for bit where the uninterrupted run ends (float64, CPU,
one thread), in the Adam phase (causal weights, annealed epsilon, gradient-norm balancing) and
inside the L-BFGS phase (a block boundary of one L-BFGS run, and a resample boundary)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch

from sciflow.models.causal_pinn import CausalPINN, Config, march, train
from sciflow.models.causal_pinn.train import resume_mismatch

TINY = Config(problem="burgers", width=8, depth=2, n_interior=64, n_chunks=8, n_initial=16, n_boundary=16,
              steps=30, check_every=5, balance_every=5, anneal=True, epsilon_schedule=(1e-3, 1e-2, 1.0),
              dtype="float64")


class Interrupted(Exception):
    pass


def _saved(state: dict) -> dict:
    """``state`` through ``torch.save`` and the safe unpickler, as a checkpoint file holds it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _run(cfg: Config, stop_at: int | None = None, **kw):
    """Train with a checkpoint every step; ``stop_at``: raise right after the checkpoint of that step."""
    states = []

    def on_checkpoint(state: dict) -> None:
        states.append(_saved(state))
        if state["step"] == stop_at:
            raise Interrupted

    model = CausalPINN(cfg)
    try:
        hist = train(model, checkpoint_every=1, on_checkpoint=on_checkpoint, **kw)
    except Interrupted:
        hist = None
    return model, hist, states


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs after resume"


def test_adam_phase_resume_is_bit_exact() -> None:
    torch.set_num_threads(1)
    ref = CausalPINN(TINY)
    hist = train(ref)
    model, interrupted, states = _run(TINY, stop_at=17)
    assert interrupted is None and states[-1]["step"] == 17 and states[-1]["phase"] == "adam"
    state = states[-1]
    # the state that matters is really there: a later epsilon stage, balanced loss weights
    assert state["schedule"]["stage"] > 0 and hist.stage_ends
    assert not torch.equal(state["model"]["loss_weights"], torch.ones(3, dtype=torch.float64))
    resumed = CausalPINN(TINY)
    h2 = train(resumed, resume_state=state)
    _assert_same(ref, resumed)
    assert h2.step == hist.step and h2.total == hist.total and h2.loss_weights == hist.loss_weights
    assert h2.stage_ends == hist.stage_ends and h2.epsilon == hist.epsilon
    assert any(not torch.equal(state["model"][k], v) for k, v in ref.state_dict().items())  # steps 17-29 moved it


def test_lbfgs_phase_resume_is_bit_exact_at_block_and_resample_boundaries() -> None:
    """Two L-BFGS runs of 110 iterations on fresh points (blocks of 100 + 10): resuming at iteration
    100 of the first run (its curvature pairs, line-search step and batch restored) or at the
    resample boundary (a new batch drawn from the restored generator) ends where the full run ends."""
    torch.set_num_threads(1)
    cfg = replace(TINY, steps=5, lbfgs_steps=220, lbfgs_resample=110)
    plain = CausalPINN(cfg)
    hist = train(plain)
    full, h_full, states = _run(cfg)
    _assert_same(plain, full)  # checkpointing does not change the run
    assert h_full.step == hist.step and h_full.total == hist.total
    by_step = {s["step"]: s for s in states}
    assert by_step[105]["lbfgs_block"]["done"] == 100 and by_step[105]["lbfgs_block"]["optimizer"]["state"]
    assert by_step[115]["phase"] == "lbfgs" and by_step[115]["lbfgs_done"] == 110
    assert by_step[115]["lbfgs_block"] is None and states[-1]["phase"] == "done"
    for step in (105, 115):
        resumed = CausalPINN(cfg)
        h = train(resumed, resume_state=by_step[step])
        _assert_same(plain, resumed)
        assert h.step == hist.step and h.total == hist.total
        moved = by_step[step]["model"]
        assert any(not torch.equal(moved[k], v) for k, v in resumed.state_dict().items())


def test_the_time_budget_counts_the_cpu_seconds_before_the_resume() -> None:
    """A state that has spent 1e6 CPU seconds resumed under a 1e5 s budget stops after its first
    step (index 18, logged although off the check cadence) and skips L-BFGS; counted from the
    resume instead, the run would go on to the end."""
    torch.set_num_threads(1)
    cfg = replace(TINY, lbfgs_steps=10)
    _, _, states = _run(cfg, stop_at=18)
    state = {**states[-1], "cpu_s": 1e6}
    hist = train(CausalPINN(cfg), time_budget_s=1e5, resume_state=state)
    assert hist.step[-2:] == [15, 18] and hist.cpu_s[-1] >= 1e6
    full = train(CausalPINN(cfg), time_budget_s=1e5, resume_state=states[-1])
    assert full.step[-1] == 39  # 30 Adam steps (last index 29) + 10 L-BFGS iterations


def test_config_budget_is_the_default_and_may_change_on_resume() -> None:
    """``Config.time_budget_s`` is what ``train`` uses when no argument is given (the same stop at
    step 18 as above), and a resumed run may change it (when to stop, not what is computed); a
    state written before a field existed resumes while that field is at its default only."""
    torch.set_num_threads(1)
    cfg = replace(TINY, lbfgs_steps=10)
    _, _, states = _run(cfg, stop_at=18)
    hist = train(CausalPINN(replace(cfg, time_budget_s=1e5)), resume_state={**states[-1], "cpu_s": 1e6})
    assert hist.step[-1] == 18
    old = {**states[-1],
           "config": {k: v for k, v in states[-1]["config"].items() if k not in ("time_budget_s", "seed")}}
    assert resume_mismatch(cfg, old) is None
    assert train(CausalPINN(cfg), resume_state=old).step[-1] == 39
    assert "has no Config.seed" in resume_mismatch(replace(cfg, seed=1), old)


def test_resume_from_another_config_names_the_first_differing_key() -> None:
    torch.set_num_threads(1)
    cfg = replace(TINY, steps=3)
    _, _, states = _run(cfg)
    other = replace(cfg, lr=2e-3, width=16)  # width is the first of the two in field order
    with pytest.raises(ValueError, match=r"cannot resume: .*another Config: width = 8 there, 16 here"):
        train(CausalPINN(other), resume_state=states[-1])
    assert resume_mismatch(cfg, states[-1]) is None
    assert "not a causal-PINN training state" in resume_mismatch(cfg, {"step": 3, "model": {}})
    with pytest.raises(ValueError, match="checkpoint_every and on_checkpoint"):
        train(CausalPINN(cfg), checkpoint_every=5)


def _march(cfg: Config, stop_at: int | None = None, boundary: bool = False, **kw):
    """:func:`march` with a checkpoint every step; ``stop_at``: raise after the checkpoint of that step
    (``boundary``: the one written after a window has ended, not the window's own last one)."""
    states = []

    def on_checkpoint(state: dict) -> None:
        states.append(_saved(state))
        if state["step"] == stop_at and (state["window"] is None) == boundary:
            raise Interrupted

    try:
        sol = march(cfg, checkpoint_every=1, on_checkpoint=on_checkpoint, **kw)
    except Interrupted:
        sol = None
    return sol, states


@pytest.mark.parametrize("problem, stop_at, boundary", [("burgers", 13, False), ("burgers", 10, False),
                                                      ("burgers", 10, True), ("lorenz63", 13, False)])
def test_time_marching_resume_is_bit_exact(problem: str, stop_at: int, boundary: bool) -> None:
    """Three windows of 5 Adam steps (+ 3 L-BFGS iterations for Lorenz): interrupted inside the
    third window (step 13), at the last step of the second (10) or after it ended, or before the
    L-BFGS finish of the second Lorenz window (13), and resumed. The finished windows are reloaded
    and hand on the same initial condition (a network evaluation for Burgers, the hard initial state
    for Lorenz); every window ends bit for bit."""
    torch.set_num_threads(1)
    cfg = replace(TINY, problem=problem, steps=5, time_windows=3, anneal=False, warm_start=True,
                  lbfgs_steps=3 if problem == "lorenz63" else 0,
                  **({"n_initial": 0, "n_boundary": 0, "periodic_embedding": False, "balance": False}
                     if problem == "lorenz63" else {}))
    ref = march(cfg)
    sol, states = _march(cfg, stop_at=stop_at, boundary=boundary)
    assert sol is None and states[-1]["kind"] == "march" and states[-1]["step"] == stop_at
    assert len(states[-1]["windows"]) == (1 if problem == "lorenz63" or stop_at == 10 and not boundary else 2)
    assert (states[-1]["window"] is None) == boundary
    resumed, later = _march(cfg, resume_state=states[-1])
    for a, b in zip(ref.models, resumed.models):
        _assert_same(a, b)
    assert [h.total for h in resumed.histories] == [h.total for h in ref.histories]
    assert later[-1]["phase"] == "done" and len(later[-1]["windows"]) == 3
    t = torch.linspace(0.0, 0.99 * ref.edges[-1], 7, dtype=torch.float64)[:, None]
    pts = t if problem == "lorenz63" else torch.cat([t, torch.zeros_like(t)], 1)
    assert torch.equal(ref.predict(pts), resumed.predict(pts))
    with pytest.raises(ValueError, match="not a time-marching state"):
        march(cfg, resume_state=_run(replace(cfg, time_windows=1), stop_at=2)[2][-1] | {"config": states[-1]["config"]})


def test_float64_warm_start_hands_on_the_previous_window_unrounded(monkeypatch) -> None:
    """``warm_start``: each window starts from the previous window's trained parameters exactly
    (loading float64 weights into a model not yet cast would round them through float32)."""
    import sciflow.models.causal_pinn.marching as marching

    starts = []

    def recording_train(model, **kw):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return train(model, **kw)

    monkeypatch.setattr(marching, "train", recording_train)
    a, _ = march(replace(TINY, steps=3, time_windows=2, warm_start=True)).models
    for k, v in a.state_dict().items():
        assert v.dtype == torch.float64 and torch.equal(v, starts[1][k]), k
