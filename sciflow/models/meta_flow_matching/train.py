"""The training loop of meta flow matching: Adam on the joint loss of encoder and field over
random subsets of the training populations, cosine learning-rate decay, validation-based model
selection, checkpoints and bit-exact resume.

Each step draws ``populations_per_step`` training populations and ``points_per_population``
random points of each (the same points in source and target, so pairs stay pairs): the
minibatch of Algorithm 1 (Atanackovic et al., ICLR 2025), where the official code draws whole
populations per step. The encoder sees the subsample, so it learns from populations of the size
it trains on; held-out populations are embedded at full size (the GCN's mean aggregation over
k-NN graphs makes the embedding nearly independent of the point count). For rotation-invariant
families (Letters), ``augment_rotation`` turns every drawn population by its own random angle:
an unlimited supply of training populations instead of a fixed set of rotations per letter.

Model selection is the caller's metric: ``validate(model) -> float`` (lower is better; e.g.
the mean W2 over the validation populations, :func:`sciflow.uq.distances.mean_population_metrics`,
which models/ may not import: DESIGN.md). ``selection="last"`` (the official code, which has no
early stopping) keeps the final state and uses the validation history for monitoring;
``"best_val"`` restores the state of the best validation score.

``time_budget_s`` caps the run's process CPU seconds (as :class:`sciflow.models.causal_pinn.Config`):
the loop stops after the step that passes it and ends as after its last step (validation,
selection, final checkpoint); the cosine schedule still spans ``steps``, so a cut run ends at a
higher learning rate than a run planned that short.

Checkpoints: as :func:`sciflow.models.causal_pinn.train`, the loop hands its whole state to
``on_checkpoint`` as tensors and primitive containers (read back with ``weights_only=True``)
and continues from such a dict given as ``resume_state``, bit for bit (same device and thread
count); where and how it is written is the caller's business (``sciflow train`` uses
:class:`sciflow.training.checkpoint.CheckpointManager`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import torch

from sciflow.data.batches import PopulationBatch
from sciflow.models._state import clone_state
from sciflow.models.meta_flow_matching.config import Config
from sciflow.models.meta_flow_matching.model import MetaFlowMatching

SELECTIONS = ("last", "best_val")
#: Steps averaged into each logged training loss.
LOSS_WINDOW = 50


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of :func:`train` (the ``train:`` section of ``sciflow/configs/mfm_*.yaml``).

    lr decays as ``lr * (f + (1 - f) (1 + cos(pi s / steps)) / 2)`` with ``f = lr_final_fraction``
    (1: constant). Validation runs every ``eval_every`` steps and after the last. ``seed`` seeds the
    loop's randomness (populations, points, rotations, flow-matching times and couplings); the
    model's initialisation is the caller's (:func:`init_model`). ``time_budget_s``: stop after the
    step that passes this many seconds of process CPU time, counted across resumes like
    ``TrainResult.train_cpu_s`` (``None``: no limit; the one field a resumed run may change).
    """

    steps: int = 2000
    lr: float = 1e-3
    lr_final_fraction: float = 1.0
    populations_per_step: int = 8
    points_per_population: int = 128
    augment_rotation: bool = False
    eval_every: int = 500
    selection: str = "last"
    seed: int = 0
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "populations_per_step", "points_per_population", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.lr_final_fraction <= 1:
            raise ValueError(f"TrainConfig.lr_final_fraction must be in [0, 1], got {self.lr_final_fraction}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"TrainConfig.selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"TrainConfig.time_budget_s (CPU seconds) must be > 0 or None, got {self.time_budget_s}")


@dataclass
class TrainResult:
    """What :func:`train` reports: ``history`` entries ``{"step", "train_loss", "val"}`` (the mean
    loss of the last :data:`LOSS_WINDOW` steps; ``val`` is ``None`` without ``validate``), the best
    validation score and its step, the steps done, whether ``TrainConfig.time_budget_s`` ended the
    run before ``TrainConfig.steps``, and the process CPU / wall seconds of the run across resumes."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    best_step: int = 0
    selection: str = "last"
    steps: int = 0
    stopped_by_budget: bool = False
    train_cpu_s: float = 0.0
    train_wall_s: float = 0.0


def init_model(cfg: Config, seed: int) -> MetaFlowMatching:
    """A model initialised from ``seed`` without touching the global random state (the same
    parameters as ``torch.manual_seed(seed); MetaFlowMatching(cfg)``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MetaFlowMatching(cfg)


@torch.no_grad()
def predict(model: MetaFlowMatching, batch: PopulationBatch, chunk: int = 16) -> torch.Tensor:
    """The transported source populations ``(batch, n, dim)``, ``chunk`` populations at a time
    (memory); the model is put in eval mode."""
    model.eval()
    return torch.cat([model.transport(batch.index(slice(i, i + chunk)))[0] for i in range(0, len(batch), chunk)])


def subsample(batch: PopulationBatch, pops: torch.Tensor, n: int, generator: torch.Generator) -> PopulationBatch:
    """Populations ``pops`` with ``n`` random points each (the same points in source and target);
    all points when ``n`` is at least the population size."""
    size = batch.source.shape[1]
    if n >= size:
        return batch.index(pops)
    idx = torch.stack([torch.randperm(size, generator=generator)[:n] for _ in range(len(pops))])

    def gather(x: torch.Tensor) -> torch.Tensor:
        return torch.gather(x[pops], 1, idx[..., None].expand(-1, -1, x.shape[-1]))

    ids = None if batch.population_id is None else batch.population_id[pops]
    return PopulationBatch(source=gather(batch.source), target=gather(batch.target), population_id=ids)


def random_rotation(batch: PopulationBatch, generator: torch.Generator) -> PopulationBatch:
    """Each 2-D population (source and target together) rotated about the origin by its own
    angle ``theta ~ U[0, 2 pi)``."""
    if batch.source.shape[-1] != 2:
        raise ValueError(f"augment_rotation needs 2-D populations, got dim {batch.source.shape[-1]}")
    theta = 2 * math.pi * torch.rand(batch.source.shape[0], generator=generator)
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).to(batch.source)  # (B, 2, 2)
    return PopulationBatch(source=batch.source @ rot.transpose(1, 2), target=batch.target @ rot.transpose(1, 2),
                           population_id=batch.population_id)


FREE_ON_RESUME = frozenset({"time_budget_s"})  # TrainConfig fields a resumed run may change


def resume_mismatch(model_cfg: Config, cfg: TrainConfig, state: Mapping[str, Any]) -> str | None:
    """Why ``state`` cannot resume a run of ``(model_cfg, cfg)``: not a meta-flow-matching training
    state, or written for other configs (the first differing field is named; :data:`FREE_ON_RESUME`
    fields may differ or be missing, as in a state written before they existed); ``None`` if it can."""
    if not isinstance(state, Mapping) or state.get("kind") != "mfm":
        return "not a meta-flow-matching training state (no kind 'mfm')"
    for name, now in (("model_config", asdict(model_cfg)), ("train_config", asdict(cfg))):
        saved = state.get(name)
        if not isinstance(saved, Mapping):
            return f"the resume state has no {name}"
        free = FREE_ON_RESUME if name == "train_config" else frozenset()
        for key in sorted((set(now) | set(saved)) - free):
            if key not in saved or key not in now:
                return f"{name}.{key} is missing {'there' if key not in saved else 'here'} (another sciflow version?)"
            if saved[key] != now[key]:
                return (f"the resume state was written for another {name}: "
                        f"{key} = {saved[key]!r} there, {now[key]!r} here")
    return None


def train(model: MetaFlowMatching, train_set: PopulationBatch, cfg: TrainConfig, *,
          validate: Callable[[MetaFlowMatching], float] | None = None,
          device: torch.device | str = "cpu", log: Callable[[str], None] | None = None,
          checkpoint_every: int | None = None, on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
          resume_state: Mapping[str, Any] | None = None) -> TrainResult:
    """Train ``model`` on ``train_set`` (populations ``(P, N, dim)``, paired source/target) per ``cfg``.

    The model is moved to ``device`` and left in the selected state. Randomness comes from a
    generator seeded with ``cfg.seed`` on the host (populations, points, rotations); on an
    accelerator the flow-matching times and couplings are drawn from a second generator on the
    device, seeded the same way, so no step moves random numbers between devices. Loss values
    stay on the device until a validation step reads them (no host sync per step).

    ``cfg.time_budget_s``: after each step the process CPU seconds of the run (this call's plus
    those its ``resume_state`` records; a host clock, no device sync) are compared with the budget;
    once past it, the loop stops after that step (``result.steps`` < ``cfg.steps``,
    ``result.stopped_by_budget``), validates it if it was not a validation step, and ends as after
    the last step: selection, the ``done`` checkpoint. The learning-rate schedule is not refitted:
    the cosine decays over ``cfg.steps`` whether or not the budget cuts the run.

    Checkpoints: with ``checkpoint_every = N``, ``on_checkpoint(state)`` every ``N`` steps and at
    the end (``phase = "done"``); ``state`` holds copies of the model's, Adam's and the scheduler's
    state dicts, the generators' states, ``step``, the recent losses, the history, the best score,
    step and state, CPU and wall seconds, and both configs. ``train(..., resume_state=state)``
    continues from it; a state of other configs is a ``ValueError`` naming the first differing
    field (:func:`resume_mismatch`; ``time_budget_s`` may change); a ``done`` state, a budget-stopped
    one included, restores the selected model at once: a finished run is not extended.
    """
    if (checkpoint_every is None) != (on_checkpoint is None):
        raise ValueError("checkpoint_every and on_checkpoint must be given together")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if train_set.target is None:
        raise ValueError("train: train_set needs targets (PopulationBatch.target)")
    if cfg.selection == "best_val" and validate is None:
        raise ValueError("TrainConfig.selection='best_val' needs a validate callable")
    device = torch.device(device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    f = cfg.lr_final_fraction
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))))
    g = torch.Generator().manual_seed(cfg.seed)
    g_dev = g if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    res = TrainResult(selection=cfg.selection)
    best_state: dict[str, torch.Tensor] | None = None
    recent: list[torch.Tensor] = []  # detached losses of the last LOSS_WINDOW steps
    spent_cpu = spent_wall = 0.0
    if resume_state is not None:
        if (why := resume_mismatch(model.cfg, cfg, resume_state)) is not None:
            raise ValueError(f"cannot resume: {why}")
        s = resume_state
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["adam"])
        sched.load_state_dict(s["scheduler"])
        if (s["generator_device"] is None) != (g_dev is g):
            raise ValueError(f"cannot resume: the state was written on another kind of device than {device} "
                             "(its flow-matching draws came from a generator there); resume on the same device")
        g.set_state(s["generator"])
        if g_dev is not g:
            g_dev.set_state(s["generator_device"])
        recent = [x.to(device) for x in s["recent_losses"]]
        res = TrainResult(**clone_state(s["result"]))
        best_state = clone_state(s["best_state"])
        spent_cpu, spent_wall = res.train_cpu_s, res.train_wall_s
    t0, c0 = time.perf_counter() - spent_wall, time.process_time() - spent_cpu

    def state(phase: str) -> dict[str, Any]:
        res.train_cpu_s, res.train_wall_s = time.process_time() - c0, time.perf_counter() - t0
        return clone_state({"kind": "mfm", "phase": phase, "step": res.steps, "model_config": asdict(model.cfg),
                      "train_config": asdict(cfg), "model": model.state_dict(), "adam": opt.state_dict(),
                      "scheduler": sched.state_dict(), "generator": g.get_state(),
                      "generator_device": None if g_dev is g else g_dev.get_state(),
                      "recent_losses": [x.cpu() for x in recent], "result": asdict(res), "best_state": best_state})

    def validation(step: int) -> None:  # the history entry of ``step`` and the best state
        nonlocal best_state
        losses = torch.stack(recent).tolist()
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"non-finite flow-matching loss by step {step}: {losses[-1]}")
        val = None if validate is None else float(validate(model))
        res.history.append({"step": step, "train_loss": math.fsum(losses) / len(losses), "val": val})
        if log is not None:
            log(f"  [{model.cfg.conditioning} seed {cfg.seed}] step {step} loss {res.history[-1]['train_loss']:.4f}"
                + ("" if val is None else f" val {val:.4f}") + f" ({time.process_time() - c0:.0f} cpu-s)")
        if val is not None and val < res.best_val:
            res.best_val, res.best_step, best_state = val, step, copy.deepcopy(model.state_dict())

    budget = cfg.time_budget_s
    done = resume_state is not None and resume_state["phase"] == "done"
    for step in range(res.steps + 1, 0 if done else cfg.steps + 1):
        model.train()
        pops = torch.randperm(len(train_set), generator=g)[:cfg.populations_per_step]
        batch = subsample(train_set, pops, cfg.points_per_population, g)
        if cfg.augment_rotation:
            batch = random_rotation(batch, g)
        out = model.loss(batch.to(device), generator=g_dev)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        sched.step()
        recent = [*recent[-(LOSS_WINDOW - 1):], out.total.detach()]
        res.steps = step
        out_of_time = budget is not None and step < cfg.steps and time.process_time() - c0 > budget
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            validation(step)
        if out_of_time:
            res.stopped_by_budget = True
            if log is not None:
                log(f"  time budget of {budget:g} CPU s spent: stopped after step {step} of {cfg.steps}")
            break
        if on_checkpoint is not None and step % checkpoint_every == 0 and step < cfg.steps:
            on_checkpoint(state("train"))
    if cfg.selection == "best_val":
        model.load_state_dict(best_state)
    if done:
        return res
    if on_checkpoint is not None:
        on_checkpoint(state("done"))  # stamps res with the run's CPU and wall seconds, as saved
    else:
        res.train_cpu_s, res.train_wall_s = time.process_time() - c0, time.perf_counter() - t0
    return res
