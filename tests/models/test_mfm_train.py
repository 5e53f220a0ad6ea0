"""The meta-flow-matching training loop (sciflow.models.meta_flow_matching.train): it learns a
population-dependent map, keeps the state of the best validation score, resumes bit for bit from
any checkpoint (under another CPU budget too), stops on a CPU budget as at a normal end, and refuses
what it cannot do."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sciflow.data.batches import PopulationBatch
from sciflow.models.meta_flow_matching import (Config, TrainConfig, init_model, predict, random_rotation, subsample,
                                               train)
from sciflow.models.meta_flow_matching.train import resume_mismatch
from sciflow.uq.distances import mean_population_metrics

SMALL = dict(knn_k=8, gnn_hidden=16, embedding_dim=16, field_width=32, field_depth=2, time_embedding_dim=16,
             fourier_features=16, fourier_scale=1.0, solver="rk4", nfe=20)


def _shifted(P: int, n: int, seed: int) -> PopulationBatch:
    """Population ``b``: a Gaussian blob at ``m_b``; its target is the blob moved to ``-m_b`` (the
    displacement ``-2 m_b`` is read off the population's own location: a population-dependent map)."""
    g = torch.Generator().manual_seed(seed)
    m = 2 * torch.rand(P, 1, 2, generator=g) - 1
    x0 = m + 0.15 * torch.randn(P, n, 2, generator=g)
    return PopulationBatch(source=x0, target=x0 - 2 * m, population_id=torch.arange(P))


def _run(steps: int = 12, **kw) -> tuple[Config, TrainConfig]:
    tc = TrainConfig(**{**dict(steps=steps, lr=3e-3, lr_final_fraction=0.1, populations_per_step=4,
                               points_per_population=16, eval_every=4, selection="best_val", seed=3), **kw})
    return Config(**SMALL), tc


def _val_w2(val: PopulationBatch):
    return lambda m: mean_population_metrics(predict(m, val), val.target)["W2"]


def test_training_learns_a_population_dependent_map():
    """MFM moves every held-out blob to its mirror image: validation W2 falls below a fifth of the
    identity's (the source itself; measured 0.10 vs 1.11), the logged training loss below a tenth of
    the mean squared displacement, and the unconditioned FM baseline stays far behind."""
    torch.set_num_threads(1)
    cfg, tc = _run(steps=300, eval_every=100, points_per_population=32, lr=5e-3)
    train_set, val = _shifted(64, 64, seed=0), _shifted(6, 64, seed=1)
    model = init_model(cfg, 0)
    res = train(model, train_set, tc, validate=_val_w2(val))
    identity = mean_population_metrics(val.source, val.target)["W2"]
    assert [h["step"] for h in res.history] == [100, 200, 300]
    assert res.best_val < 0.2 * identity, (res.best_val, identity)
    assert res.history[-1]["train_loss"] < 0.1 * 4 * float((val.source.mean(1) ** 2).sum(-1).mean())
    assert res.steps == 300 and res.train_cpu_s > 0
    # plain FM (no population embedding): every blob's straight paths pass the origin at t = 1/2,
    # where a field of (t, x) alone cannot tell the blobs apart (measured 1.24 vs 0.10)
    fm = init_model(Config(**{**SMALL, "conditioning": "none"}), 0)
    assert train(fm, train_set, tc, validate=_val_w2(val)).best_val > 5 * res.best_val


def test_best_val_selection_restores_the_best_state_and_last_keeps_the_final():
    scores = iter([3.0, 1.0, 2.0])
    states = {}
    cfg, tc = _run()
    data = _shifted(8, 32, seed=0)
    model = init_model(cfg, 0)
    res = train(model, data, tc, validate=lambda m: next(scores), checkpoint_every=4,
                on_checkpoint=lambda s: states.__setitem__(s["step"], s))
    assert (res.best_val, res.best_step) == (1.0, 8) and [h["val"] for h in res.history] == [3.0, 1.0, 2.0]
    assert sorted(states) == [4, 8, 12] and states[12]["phase"] == "done"
    best = states[8]["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, states[12]["model"][k]) for k, v in model.state_dict().items())  # saved as selected

    # "last": the same trajectory (same draws: its step-8 state is the best_val run's), the final state kept
    scores = iter([3.0, 1.0, 2.0])
    last, last_states = init_model(cfg, 0), {}
    train(last, data, TrainConfig(**{**tc.__dict__, "selection": "last"}), validate=lambda m: next(scores),
          checkpoint_every=4, on_checkpoint=lambda s: last_states.__setitem__(s["step"], s))
    assert all(torch.equal(v, best[k]) for k, v in last_states[8]["model"].items())
    assert all(torch.equal(v, last_states[12]["model"][k]) for k, v in last.state_dict().items())
    assert not all(torch.equal(v, best[k]) for k, v in last.state_dict().items())


@pytest.mark.parametrize("stop", [4, 8])
def test_resume_from_any_checkpoint_is_bit_exact(stop: int):
    """A run resumed from the state of step ``stop`` (after a validation step that set the best state)
    equals the uninterrupted run: parameters, history, best score and step, the saved final state;
    the resumed run has a CPU budget the first had not (free on resume; large enough not to stop it)."""
    torch.set_num_threads(1)
    cfg, tc = _run(augment_rotation=True)
    data, val = _shifted(8, 32, seed=0), _shifted(3, 32, seed=1)
    ref_states = {}
    ref = init_model(cfg, 0)
    ref_res = train(ref, data, tc, validate=_val_w2(val), checkpoint_every=2,
                    on_checkpoint=lambda s: ref_states.__setitem__(s["step"], s))
    model = init_model(cfg, 99)  # other initial parameters: everything comes from the state
    states = {}
    budgeted = replace(tc, time_budget_s=1e6)
    res = train(model, data, budgeted, validate=_val_w2(val), checkpoint_every=2,
                on_checkpoint=lambda s: states.__setitem__(s["step"], s), resume_state=ref_states[stop])
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    assert res.history == ref_res.history and (res.best_val, res.best_step) == (ref_res.best_val, ref_res.best_step)
    assert res.train_cpu_s >= ref_states[stop]["result"]["train_cpu_s"]
    assert sorted(states) == list(range(stop + 2, 13, 2)) and not res.stopped_by_budget
    final, ref_final = states[12], ref_states[12]
    assert (final["train_config"]["time_budget_s"], ref_final["train_config"]["time_budget_s"]) == (1e6, None)
    assert all(torch.equal(final["model"][k], ref_final["model"][k]) for k in final["model"])
    assert final["generator"].equal(ref_final["generator"])
    # a finished state trains nothing and restores the selected model
    again = init_model(cfg, 5)
    done = train(again, data, tc, validate=_val_w2(val), resume_state=ref_final)
    assert done.history == ref_res.history and done.steps == 12
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in again.state_dict().items())


def test_resume_mismatch_names_the_field_and_train_refuses():
    cfg, tc = _run()
    states = []
    train(init_model(cfg, 0), _shifted(4, 16, 0), tc, validate=lambda m: 1.0, checkpoint_every=4,
          on_checkpoint=states.append)
    assert resume_mismatch(cfg, tc, states[0]) is None
    other = TrainConfig(**{**tc.__dict__, "lr": 1e-2})
    assert resume_mismatch(cfg, other, states[0]) == \
        "the resume state was written for another train_config: lr = 0.003 there, 0.01 here"
    assert "model_config: field_width = 32 there, 64 here" in resume_mismatch(Config(**{**SMALL, "field_width": 64}),
                                                                               tc, states[0])
    assert "not a meta-flow-matching training state" in resume_mismatch(cfg, tc, {"step": 3})
    assert resume_mismatch(cfg, replace(tc, time_budget_s=5.0), states[0]) is None  # a new budget
    drop = lambda key: {**states[0], "train_config": {k: v for k, v in states[0]["train_config"].items()  # noqa: E731
                                                      if k != key}}
    assert resume_mismatch(cfg, replace(tc, time_budget_s=5.0), drop("time_budget_s")) is None  # written before it
    assert resume_mismatch(cfg, tc, drop("seed")) == "train_config.seed is missing there (another sciflow version?)"
    with pytest.raises(ValueError, match="cannot resume: the resume state was written for another train_config"):
        train(init_model(cfg, 0), _shifted(4, 16, 0), other, validate=lambda m: 1.0, resume_state=states[0])


def test_clear_errors():
    cfg, tc = _run()
    data = _shifted(4, 16, 0)
    with pytest.raises(ValueError, match="selection='best_val' needs a validate"):
        train(init_model(cfg, 0), data, tc)
    with pytest.raises(ValueError, match="given together"):
        train(init_model(cfg, 0), data, tc, validate=lambda m: 1.0, checkpoint_every=2)
    with pytest.raises(ValueError, match="needs targets"):
        train(init_model(cfg, 0), PopulationBatch(source=data.source), tc, validate=lambda m: 1.0)
    for bad, match in ((dict(steps=0), "steps must be >= 1"), (dict(lr=0.0), "lr must be > 0"),
                       (dict(selection="best"), "selection must be one of"),
                       (dict(lr_final_fraction=1.5), "lr_final_fraction must be in"),
                       (dict(time_budget_s=0), r"time_budget_s \(CPU seconds\) must be > 0 or None, got 0"),
                       (dict(time_budget_s=-1.0), r"time_budget_s \(CPU seconds\) must be > 0 or None, got -1.0")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="augment_rotation needs 2-D populations"):
        random_rotation(PopulationBatch(source=torch.zeros(2, 5, 3), target=torch.zeros(2, 5, 3)),
                        torch.Generator())


def test_a_non_finite_loss_stops_the_run_with_its_step():
    cfg, tc = _run(eval_every=2)
    data = _shifted(4, 16, 0)
    model = init_model(cfg, 0)
    with torch.no_grad():
        for p in model.field.parameters():
            p.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="non-finite flow-matching loss by step 2"):
        train(model, data, tc, validate=lambda m: 1.0)


def test_subsample_keeps_pairs_and_rotation_turns_source_and_target_alike():
    P, n = 5, 40
    x0 = torch.randn(P, n, 2, generator=torch.Generator().manual_seed(0))
    shift = torch.arange(n, dtype=torch.float32)[None, :, None].expand(P, n, 2)  # point i moves by (i, i)
    batch = PopulationBatch(source=x0, target=x0 + shift, population_id=torch.arange(10, 10 + P))
    g = torch.Generator().manual_seed(1)
    sub = subsample(batch, torch.tensor([3, 1]), 7, g)
    assert sub.source.shape == (2, 7, 2) and sub.population_id.tolist() == [13, 11]
    moved = sub.target - sub.source  # (i, i) for the same i in both coordinates: still pairs
    assert torch.allclose(moved[..., 0], moved[..., 1], atol=1e-5)
    idx = moved[..., 0].round().long()
    assert torch.equal(sub.source, torch.stack([x0[3, idx[0]], x0[1, idx[1]]]))
    assert all(len(set(r.tolist())) == 7 for r in idx)  # without replacement
    assert subsample(batch, torch.tensor([0]), 100, g).source.shape == (1, n, 2)  # all points

    rot = random_rotation(batch, torch.Generator().manual_seed(2))
    for a, b in ((batch.source, rot.source), (batch.target, rot.target)):
        assert torch.allclose(a.norm(dim=-1), b.norm(dim=-1), atol=1e-5)  # about the origin
    # the same angle for source and target of one population, another for the next
    ang = lambda u, v: torch.atan2(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0], (u * v).sum(-1))  # noqa: E731
    a_src, a_tgt = ang(batch.source, rot.source), ang(batch.target, rot.target)
    assert torch.allclose(torch.cos(a_src - a_tgt), torch.ones(()), atol=1e-4)
    assert torch.allclose(a_src, a_src[:, :1].expand_as(a_src), atol=1e-4)
    assert a_src[:, 0].unique().numel() == P


def test_init_model_leaves_the_global_random_state_alone():
    cfg, _ = _run()
    before = torch.get_rng_state()
    a = init_model(cfg, 7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    b = type(a)(cfg)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(next(init_model(cfg, 8).parameters()), next(a.parameters()))


def test_a_state_written_on_another_kind_of_device_is_refused():
    cfg, tc = _run()
    states = []
    train(init_model(cfg, 0), _shifted(4, 16, 0), tc, validate=lambda m: 1.0, checkpoint_every=4,
          on_checkpoint=states.append)
    foreign = {**states[0], "generator_device": torch.Generator().get_state()}  # as a CUDA run writes it
    with pytest.raises(ValueError, match="written on another kind of device than cpu"):
        train(init_model(cfg, 0), _shifted(4, 16, 0), tc, validate=lambda m: 1.0, resume_state=foreign)


def test_a_cpu_budget_stops_after_the_step_that_spends_it():
    """A budget of 1e-4 CPU s stops after step 1: validated there (off the ``eval_every`` cadence),
    selected (``best_val`` restores that state, equal to an unbudgeted run's step-1 state), saved
    once as ``done``; a run without a budget, or with one it never reaches, is unchanged."""
    torch.set_num_threads(1)
    cfg, tc = _run()
    data, val = _shifted(8, 32, seed=0), _shifted(3, 32, seed=1)
    ref_states = {}
    ref = init_model(cfg, 0)
    ref_res = train(ref, data, tc, validate=_val_w2(val), checkpoint_every=1,
                    on_checkpoint=lambda s: ref_states.__setitem__(s["step"], s))
    assert (ref_res.steps, ref_res.stopped_by_budget) == (12, False) and [h["step"] for h in ref_res.history] == \
        [4, 8, 12]

    states = {}
    model = init_model(cfg, 0)
    res = train(model, data, replace(tc, time_budget_s=1e-4), validate=_val_w2(val), checkpoint_every=1,
                on_checkpoint=lambda s: states.__setitem__(s["step"], s))
    assert (res.steps, res.stopped_by_budget, res.best_step) == (1, True, 1)
    assert [h["step"] for h in res.history] == [1] and res.best_val == res.history[0]["val"] == _val_w2(val)(model)
    assert all(torch.equal(v, ref_states[1]["model"][k]) for k, v in model.state_dict().items())
    assert list(states) == [1] and states[1]["phase"] == "done" and states[1]["result"]["stopped_by_budget"]
    # a finished (budget-stopped) run is not extended by a larger budget on resume
    again = init_model(cfg, 5)
    more = train(again, data, replace(tc, time_budget_s=1e6), validate=_val_w2(val), resume_state=states[1])
    assert (more.steps, more.stopped_by_budget, more.history) == (1, True, res.history)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())

    roomy = init_model(cfg, 0)
    roomy_res = train(roomy, data, replace(tc, time_budget_s=1e6), validate=_val_w2(val))
    assert roomy_res.history == ref_res.history and not roomy_res.stopped_by_budget
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in roomy.state_dict().items())


@pytest.mark.parametrize("stop, history", [(4, [4, 5]), (3, [4])])
def test_the_budget_counts_the_cpu_seconds_before_the_resume(stop: int, history: list[int]):
    """A state that records 1e6 CPU seconds resumed under a 1e5 s budget stops after its first step:
    step 5 is validated although off the cadence; step 4, a validation step, is validated once.
    ``"last"`` selection keeps that step's state (the unbudgeted run's)."""
    torch.set_num_threads(1)
    cfg, tc = _run(selection="last")
    data = _shifted(8, 32, seed=0)
    scores = iter(range(100))
    ref_states = {}
    train(init_model(cfg, 0), data, tc, validate=lambda m: float(next(scores)), checkpoint_every=1,
          on_checkpoint=lambda s: ref_states.__setitem__(s["step"], s))
    spent = {**ref_states[stop], "result": {**ref_states[stop]["result"], "train_cpu_s": 1e6}}
    model = init_model(cfg, 0)
    res = train(model, data, replace(tc, time_budget_s=1e5), validate=lambda m: 7.0, resume_state=spent)
    assert (res.steps, res.stopped_by_budget) == (stop + 1, True) and res.train_cpu_s >= 1e6
    assert [h["step"] for h in res.history] == history and res.history[-1]["val"] == 7.0
    assert all(torch.equal(v, ref_states[stop + 1]["model"][k]) for k, v in model.state_dict().items())
