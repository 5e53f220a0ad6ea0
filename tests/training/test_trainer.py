"""The training loop: optimisation works, non-finite steps are skipped, schedules, EMA, logs."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from _trainer_toy import ToyRegressor, toy_data

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.training import (
    EMA,
    BatchLoader,
    Callback,
    EarlyStopping,
    NonFiniteLossError,
    TrainConfig,
    WarmupDecay,
    fit,
    read_jsonl,
)


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=40, lr=1e-2, eval_every=0, log_every=10, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


class Quadratic(SciflowModel):
    """loss = 0.5 (w - c)^T A (w - c) with SPD A: minimiser c, condition number 100."""

    batch_type = TrajectoryBatch

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4))
        self.register_buffer("A", torch.diag(torch.tensor([1.0, 10.0, 50.0, 100.0])))
        self.register_buffer("c", torch.tensor([1.0, -2.0, 3.0, 0.5]))

    def loss(self, batch):
        d = self.w - self.c
        return LossOutput(0.5 * d @ self.A @ d)

    def sample(self, batch, n_samples=1, *, generator=None):
        return self.w.expand(n_samples, -1)


def test_adam_reduces_loss_and_every_parameter_moves() -> None:
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    val = BatchLoader(toy_data(32, seed=7), 32, shuffle=False)
    res = fit(model, BatchLoader(toy_data(128), 32), val, _cfg(max_steps=150, eval_every=50))
    losses = [r["val/loss"] for r in res.val_history]
    assert losses[-1] < 0.7 * losses[0]
    for k, v in model.state_dict().items():
        assert not torch.equal(v, init[k]), f"{k} received no update"


def test_lbfgs_solves_ill_conditioned_quadratic() -> None:
    model = Quadratic()
    data = toy_data(4)
    fit(model, [data], None, _cfg(optimizer="lbfgs", lr=1.0, max_steps=3, lbfgs_max_iter=20))
    assert torch.allclose(model.w, model.c, atol=1e-5)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    model.poison = {3, 4, 9}
    snapshots = {}

    class Snap(Callback):
        def on_step_end(self, state, logs):
            snapshots[state.step] = model.net[0].weight.detach().clone()

    res = fit(model, BatchLoader(toy_data(64), 16), None, _cfg(max_steps=12), [Snap()], run_dir=tmp_path)
    assert res.skipped_steps == 3 and res.steps == 12
    assert torch.equal(snapshots[2], snapshots[4])  # steps 3 and 4 left the weights untouched
    assert not torch.equal(snapshots[4], snapshots[5])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logged = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "nonfinite/loss" in r]
    assert [r["step"] for r in logged] == [3, 4, 9]


def test_repeated_nonfinite_stops_naming_step_and_terms() -> None:
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    model.poison = set(range(5, 100))
    with pytest.raises(NonFiniteLossError, match=r"at step 7: 3 consecutive.*'mse': nan.*non-finite terms: \['mse'\]"):
        fit(model, BatchLoader(toy_data(64), 16), None, _cfg(max_nonfinite=3))


def test_nonfinite_gradient_with_finite_loss_is_skipped() -> None:
    class InfGrad(Quadratic):
        def loss(self, batch):
            out = super().loss(batch)
            # sqrt'(0) = inf: finite loss, infinite gradient on the first call
            return LossOutput(out.total + torch.sqrt((self.w[0] - 0.0).abs()) * 0.0)

    model = InfGrad()
    res = fit(model, [toy_data(4)], None, _cfg(max_steps=1, max_nonfinite=5))
    assert res.skipped_steps == 1 and torch.equal(model.w, torch.zeros(4))


def test_grad_clip_bounds_the_update() -> None:
    model = Quadratic()
    fit(model, [toy_data(4)], None, _cfg(optimizer="sgd", momentum=0.0, lr=0.1, max_steps=1, grad_clip=1e-3))
    assert math.isclose(float(model.w.detach().norm()), 0.1 * 1e-3, rel_tol=1e-5)


def test_schedules() -> None:
    cos = WarmupDecay("cosine", total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(110) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    exp = WarmupDecay("exponential", rate=0.9, decay_steps=100)
    assert exp(250) == pytest.approx(0.9 ** 2.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        WarmupDecay("linear")


def test_lr_follows_schedule_in_logs() -> None:
    model = Quadratic()
    res = fit(model, [toy_data(4)], None, _cfg(schedule="exponential", decay_rate=0.5, decay_steps=10,
                                               max_steps=20, log_every=10, lr=0.1))
    assert [r["lr"] for r in res.history] == pytest.approx([0.1 * 0.5 ** 0.9, 0.1 * 0.5 ** 1.9])


def test_ema_matches_closed_form() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    expected = 0.0
    for t in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(float(t))
        ema.update(model)
        d = min(0.5, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * t
    assert ema.shadow["weight"].item() == pytest.approx(expected)
    with ema.average_parameters(model):
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == 5.0


def test_early_stopping_and_callbacks_can_stop() -> None:
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    val = BatchLoader(toy_data(16, seed=3), 16, shuffle=False)
    res = fit(model, BatchLoader(toy_data(64), 16), val, _cfg(lr=0.0 + 1e-12, max_steps=100, eval_every=1),
              [EarlyStopping(patience=2, min_delta=1e-3)])
    assert res.steps == 3 and "early stopping" in res.stop_reason


def test_max_time_s_stops_by_wall_clock_and_says_so() -> None:
    class Slow(Callback):
        def on_step_end(self, state, logs):
            time.sleep(0.02)

    torch.manual_seed(0)
    res = fit(ToyRegressor(dropout=0.0), BatchLoader(toy_data(64), 16), None,
              _cfg(max_steps=10_000, max_time_s=0.1), [Slow()])
    assert 1 <= res.steps <= 10 and res.stop_reason == "max_time_s=0.1 reached"
    with pytest.raises(ValueError, match="max_time_s"):
        _cfg(max_time_s=0.0)


def test_bf16_autocasts_on_cpu_and_keeps_fp32_weights() -> None:
    """``precision=bf16`` on the CPU: the loss's layers run in bfloat16 (CPUs with bf16 units gain;
    benchmarks/train_precision.py), the weights and the optimiser stay float32, and training works."""
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    dtypes = []
    model.net[0].register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    data = toy_data(64)
    first = float(model.loss(data).total.detach())
    dtypes.clear()
    res = fit(model, BatchLoader(data, 16), None, _cfg(precision="bf16", max_steps=200, lr=1e-2))
    assert set(dtypes) == {torch.bfloat16} and len(dtypes) == 200
    assert all(p.dtype == torch.float32 for p in model.parameters()) and res.skipped_steps == 0
    assert float(model.loss(data).total.detach()) < 0.5 * first


def test_wrong_model_type_and_empty_data_errors() -> None:
    with pytest.raises(TypeError, match="SciflowModel"):
        fit(torch.nn.Linear(2, 2), [], None, _cfg())
    with pytest.raises(ValueError, match="yielded no batch"):
        fit(Quadratic(), [], None, _cfg())


def test_plain_iterable_resume_fast_forwards(tmp_path: Path) -> None:
    """A list of batches (no Resumable state) resumes by skipping consumed batches."""
    torch.set_num_threads(1)
    batches = [toy_data(8, seed=s) for s in range(3)]

    def run(steps, resume, d):
        torch.manual_seed(0)
        m = ToyRegressor(dropout=0.0)
        fit(m, batches, None, _cfg(max_steps=steps, checkpoint_every=4), run_dir=d, resume=resume)
        return m

    ref = run(10, False, tmp_path / "a")
    run(4, False, tmp_path / "b")
    res = run(10, True, tmp_path / "b")
    assert torch.equal(ref.net[0].weight, res.net[0].weight)


@pytest.mark.gpu
def test_cuda_bf16_training_moves_and_keeps_parameters_on_device() -> None:
    torch.manual_seed(0)
    model = ToyRegressor(dropout=0.0)
    before = model.net[0].weight.detach().clone()
    data = toy_data(64).to("cuda")
    res = fit(model, BatchLoader(data, 16), BatchLoader(data, 64, shuffle=False),
              _cfg(device="cuda", precision="bf16", max_steps=30, eval_every=30, ema_decay=0.9))
    assert model.net[0].weight.is_cuda and res.skipped_steps == 0
    assert not torch.equal(model.net[0].weight.cpu(), before)
    assert res.val_history and math.isfinite(res.val_history[-1]["val/loss"])


class _FakeClock:
    """``time.perf_counter`` of the trainer, advanced by ``tick`` seconds per optimizer step."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        return self.now


class _Tick(Callback):
    def __init__(self, clock: _FakeClock, stop_at: int | None = None) -> None:
        self.clock, self.stop_at = clock, stop_at

    def on_step_end(self, state, logs):
        self.clock.now += self.clock.tick
        if state.step == self.stop_at:
            state.should_stop = True


def test_time_schedule_fit_sizes_the_cosine_to_the_budget(monkeypatch) -> None:
    from sciflow.training import trainer

    clock = _FakeClock(0.01)  # 100 steps/s
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    torch.manual_seed(0)
    cfg = _cfg(max_steps=10_000, max_time_s=1.0, time_schedule="fit", schedule="cosine", log_every=1)
    res = fit(ToyRegressor(dropout=0.0), BatchLoader(toy_data(64), 16), None, cfg, [_Tick(clock)])
    # timed over steps 5-25 (0.2 s for 20 steps) at 0.25 s: 25 + int(0.95 * 100 * 0.75) = 96 steps
    assert res.steps == 96 and res.stop_reason == "max_steps reached"
    lrs = [h["lr"] for h in res.history]
    assert lrs[-1] < 1e-3 * cfg.lr  # the cosine reached its end at the fitted length
    assert lrs[24] > 0.99 * cfg.lr  # and was barely started when the length was fitted
    # the same budget with time_schedule="stop" stops mid-decay
    clock.now = 0.0
    stop = fit(ToyRegressor(dropout=0.0), BatchLoader(toy_data(64), 16), None,
               _cfg(max_steps=10_000, max_time_s=1.0, schedule="cosine", log_every=1), [_Tick(clock)])
    assert stop.stop_reason == "max_time_s=1 reached" and stop.history[-1]["lr"] > 0.99 * cfg.lr
    with pytest.raises(ValueError, match="time_schedule='fit'.*max_time_s"):
        _cfg(time_schedule="fit")
    with pytest.raises(ValueError, match=r"time_schedule='shrink' is not allowed; choose one of \['stop', 'fit'\]"):
        _cfg(max_time_s=1.0, time_schedule="shrink")


def test_time_schedule_fit_scales_an_exponential_decay(monkeypatch) -> None:
    from sciflow.training import trainer

    clock = _FakeClock(0.01)
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    cfg = _cfg(max_steps=1000, max_time_s=1.0, time_schedule="fit", schedule="exponential", decay_rate=0.5,
               decay_steps=200, log_every=1)
    res = fit(ToyRegressor(dropout=0.0), BatchLoader(toy_data(64), 16), None, cfg, [_Tick(clock)])
    assert res.steps == 96
    # five halvings over the planned 1000 steps are five halvings over the 96 that fit: decay_steps 19 (96/1000*200)
    assert res.history[-1]["lr"] == pytest.approx(cfg.lr * 0.5 ** (95 / 19), rel=1e-6)


def test_time_fitted_schedule_survives_resume(monkeypatch, tmp_path: Path) -> None:
    from sciflow.training import trainer

    clock = _FakeClock(0.01)
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    cfg = _cfg(max_steps=10_000, max_time_s=1.0, time_schedule="fit", schedule="cosine", checkpoint_every=10)

    def run(run_dir, stop_at=None, resume=False):
        clock.now = 0.0
        torch.manual_seed(0)
        return fit(ToyRegressor(dropout=0.0), BatchLoader(toy_data(64), 16, seed=1), None, cfg,
                   [_Tick(clock, stop_at)], run_dir=run_dir, resume=resume)

    ref = run(tmp_path / "ref")
    part = run(tmp_path / "run", stop_at=60)
    assert part.steps == 60
    res = run(tmp_path / "run", resume=True)  # no new timing: the fitted 96 steps are finished
    assert ref.steps == res.steps == 96
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k
