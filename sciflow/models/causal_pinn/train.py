"""The training loop: causal training with eps annealing, gradient-norm balancing, Adam with
exponential decay, an optional L-BFGS finish (time-marching over windows: :mod:`.marching`).

Plain PyTorch; :func:`train` is the whole loop (no framework), so a user can copy and change it.
Host syncs happen only every ``cfg.check_every`` steps (the stage test reads ``min w``).

Checkpoints and exact resume. :func:`train` hands its whole loop state to ``on_checkpoint`` as a
dict of tensors and primitive containers (``torch.load(..., weights_only=True)`` reads it back)
and continues from such a dict given as ``resume_state``. *Where* and *how* the dict is written
(atomically, keeping the last k, skipping corrupt files) is the caller's policy: ``sciflow train``
writes it with :mod:`sciflow.training.checkpoint`; this layer does no file I/O (models/ import
nothing of training/ or cli/, DESIGN.md). A resumed run replays the remaining steps with identical
inputs, so its parameters equal those of the uninterrupted run bit for bit (same device, dtype and
thread count).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from sciflow.data.batches import CollocationBatch
from sciflow.models._state import clone_state
from sciflow.models.causal_pinn.balancing import GradNormBalancer
from sciflow.models.causal_pinn.causal import AnnealedEpsilon, FixedEpsilon
from sciflow.models.causal_pinn.config import Config
from sciflow.models.causal_pinn.model import CausalPINN


@dataclass
class History:
    """What :func:`train` logs every ``check_every`` steps."""

    step: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # process CPU time (fair on a shared machine)
    total: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    epsilon: list[float] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)  # causal weights snapshots
    loss_weights: list[list[float]] = field(default_factory=list)
    stage_ends: list[int] = field(default_factory=list)

    def log(self, step: int, wall: float, out, eps: float, w: Tensor | None, lam: Tensor,
            cpu: float = float("nan")) -> None:
        self.step.append(step)
        self.wall_s.append(wall)
        self.cpu_s.append(cpu)
        self.total.append(float(out.total.detach()))
        for k, v in out.terms.items():
            self.terms.setdefault(k, []).append(float(v))
        self.epsilon.append(eps)
        self.weights.append([] if w is None else w.detach().cpu().tolist())
        self.loss_weights.append(lam.detach().cpu().tolist())


def _dtype(cfg: Config) -> torch.dtype:
    return torch.float64 if cfg.dtype == "float64" else torch.float32


def make_adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused single-kernel update where PyTorch offers it (floating parameters on
    CPU or CUDA; the same update rule as the default implementation), else the default one.
    Measured in ``benchmarks/pinn_throughput.py``."""
    params = list(model.parameters())
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True) if fusable else torch.optim.Adam(params, lr=lr)


def compiled_loss(model: CausalPINN) -> Callable:
    """``model.loss`` under ``torch.compile`` (AOTAutograd compiles its backward as well).
    Compilation costs tens of CPU seconds once per model (and per window when time-marching):
    worth it for long runs only, hence ``Config.compile`` is off by default. Needs an engine
    without double backward (``taylor``): AOTAutograd does not support double backward."""
    if model.engine.name not in ("taylor",):
        raise ValueError(f"Config.compile needs derivative_engine='taylor' (torch.compile's "
                         f"AOTAutograd has no double backward), got {model.engine.name!r}")
    fn = torch.compile(model.loss, dynamic=False)

    def loss(batch):
        return fn(batch)

    return loss


FREE_ON_RESUME = frozenset({"time_budget_s"})  # Config fields a resumed run may change


def resume_mismatch(cfg: Config, state: Mapping[str, Any]) -> str | None:
    """Why ``state`` cannot resume a run of ``cfg``: not a :func:`train` state, or written for
    another :class:`Config` (the first differing field is named; :data:`FREE_ON_RESUME` fields
    may differ, and a field the state lacks may be at its default); ``None`` if it can."""
    saved = state.get("config") if isinstance(state, Mapping) else None
    if not isinstance(saved, Mapping) or state.get("phase") not in ("adam", "lbfgs", "march", "done"):
        return "not a causal-PINN training state (no 'config' and 'phase' entries)"
    now, defaults = asdict(cfg), asdict(type(cfg)())
    for key, value in now.items():
        if key in FREE_ON_RESUME or (key not in saved and value == defaults[key]):
            continue  # when to stop may change; a field added since the state was written, at its default
        if key not in saved:
            return f"the resume state has no Config.{key} (written by another sciflow version?)"
        was = saved[key]
        if (list(was) if isinstance(was, tuple) else was) != (list(value) if isinstance(value, tuple) else value):
            return f"the resume state was written for another Config: {key} = {was!r} there, {value!r} here"
    extra = sorted(set(saved) - set(now))
    return f"the resume state has Config keys this version lacks: {extra}" if extra else None


def _batch_state(b: CollocationBatch) -> dict[str, Tensor | None]:
    """The tensors of ``b`` by field name (``CollocationBatch(**d)`` rebuilds it)."""
    return {"interior": b.interior, "initial": b.initial, "initial_values": b.initial_values,
            "boundary": b.boundary, "boundary_values": b.boundary_values}


def train(model: CausalPINN, *, device: torch.device | str = "cpu",
          time_budget_s: float | None = None,
          callback: Callable[[int, CausalPINN, History], bool | None] | None = None,
          checkpoint_every: int | None = None,
          on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
          resume_state: Mapping[str, Any] | None = None) -> History:
    """Train ``model`` per ``model.cfg``; returns the :class:`History`.

    Collocation points are redrawn every step from a generator seeded with ``cfg.seed``.
    With ``cfg.anneal`` the run walks through ``cfg.epsilon_schedule`` (Algorithm 1) and stops
    early once the last stage has ``min w > delta``; otherwise ``cfg.epsilon`` is fixed.
    ``cfg.lbfgs_steps`` L-BFGS iterations follow, on one batch or a new one every
    ``cfg.lbfgs_resample`` iterations. ``time_budget_s`` (default ``cfg.time_budget_s``) ends
    Adam after the first step that finishes past it (logged like a check) and L-BFGS at the next
    block boundary, counting seconds of process CPU time (``time.process_time``, all threads; the
    fair measure on a shared machine) spent by the run, including time spent in ``callback`` and,
    for a resumed run, the CPU seconds its state records (work lost after that checkpoint is not
    counted).
    ``callback(step, model, history)`` runs after every log entry; returning True stops Adam there
    (L-BFGS, if configured, still runs).

    Checkpoints: with ``checkpoint_every = N``, ``on_checkpoint(state)`` is called once at least
    ``N`` steps (Adam steps plus L-BFGS iterations) have passed since the last call, at the end
    of an Adam step or at an L-BFGS block boundary (every 100 iterations and every resample; the
    iterations of a block run inside one ``LBFGS.step``, whose state exists only between calls).
    L-BFGS's curvature pairs, line-search step and the block's batch are part of the state, so a
    resumed L-BFGS run is exact too. A last call comes at the end (``phase = "done"``).
    ``state`` holds copies of: the model's ``state_dict`` (parameters and the ``loss_weights``
    buffer, which is all :class:`GradNormBalancer` keeps), Adam's and the LR scheduler's state
    dicts, the collocation generator's state, the epsilon schedule's ``stage``/``finished``,
    the :class:`History`, ``step`` (total steps), ``adam_steps``, ``phase`` (``adam``, ``lbfgs``,
    ``done``), ``lbfgs_done`` (iterations of finished L-BFGS runs), ``lbfgs_block`` (``None`` or
    the current run's ``done`` iterations, ``batch`` and L-BFGS ``optimizer`` state), the CPU and
    wall seconds spent so far, and ``asdict(cfg)`` as ``config``. ``train(model,
    resume_state=state)`` continues from it; a state of another :class:`Config` is a
    ``ValueError`` naming the first differing field (:func:`resume_mismatch`); a ``done`` state
    returns its history at once.
    """
    cfg = model.cfg
    time_budget_s = cfg.time_budget_s if time_budget_s is None else time_budget_s
    if (checkpoint_every is None) != (on_checkpoint is None):
        raise ValueError("checkpoint_every and on_checkpoint must be given together")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    dtype = _dtype(cfg)
    model.to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = make_adam(model, cfg.lr)
    loss_fn = compiled_loss(model) if cfg.compile else model.loss
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cfg.decay_rate ** (s / cfg.decay_steps))
    schedule = AnnealedEpsilon(cfg.epsilon_schedule, cfg.delta) if (cfg.causal and cfg.anneal) \
        else FixedEpsilon(cfg.epsilon)
    balancer = GradNormBalancer(model.loss_weights, cfg.balance_every, cfg.balance_momentum) \
        if cfg.balance else None
    hist = History()
    adam_steps, phase, lbfgs_done, block = 0, "adam", 0, None
    spent_cpu = spent_wall = 0.0
    if resume_state is not None:
        if (why := resume_mismatch(cfg, resume_state)) is not None:
            raise ValueError(f"cannot resume: {why}")
        if resume_state.get("kind") == "march":
            raise ValueError("cannot resume: a time-marching state (resume it with march)")
        s = resume_state
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["adam"])
        sched.load_state_dict(s["scheduler"])
        gen.set_state(s["generator"])
        schedule.stage, schedule.finished = int(s["schedule"]["stage"]), bool(s["schedule"]["finished"])
        hist = History(**clone_state(s["history"]))
        adam_steps, phase, lbfgs_done, block = int(s["adam_steps"]), s["phase"], int(s["lbfgs_done"]), s["lbfgs_block"]
        spent_cpu, spent_wall = float(s["cpu_s"]), float(s["wall_s"])
        if phase == "done":
            return hist
    t0, c0 = time.perf_counter() - spent_wall, time.process_time() - spent_cpu
    problem = model.problem
    last_checkpoint = adam_steps + lbfgs_done + (int(block["done"]) if block else 0)

    def batch():
        return problem.sample(cfg.n_interior, cfg.n_initial, cfg.n_boundary, generator=gen,
                              dtype=dtype, device=device)

    def checkpoint(phase: str, block: Callable[[], dict] | None = None, done: int = 0, final: bool = False) -> None:
        """``on_checkpoint`` if due (``block()`` builds the current L-BFGS run's part lazily)."""
        nonlocal last_checkpoint
        step = adam_steps + lbfgs_done + done
        if on_checkpoint is None or not (final or step - last_checkpoint >= checkpoint_every):
            return
        on_checkpoint(clone_state({
            "step": step, "phase": phase, "adam_steps": adam_steps, "lbfgs_done": lbfgs_done,
            "lbfgs_block": None if block is None else block(), "config": asdict(cfg),
            "model": model.state_dict(), "adam": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": gen.get_state(), "schedule": {"stage": schedule.stage, "finished": schedule.finished},
            "history": asdict(hist), "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0}))
        last_checkpoint = step

    for step in range(adam_steps, cfg.steps if phase == "adam" else 0):
        model.epsilon = schedule.epsilon
        balance_now = balancer is not None and step > 0 and balancer.due(step)
        # the balancer differentiates each loss term separately (retain_graph): eager loss on
        # those steps, since compiled backward graphs run once
        out = model.loss(batch()) if balance_now else loss_fn(batch())
        if balance_now:
            balancer.update(model.loss_parts(), list(model.parameters()))
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        sched.step()
        adam_steps = step + 1
        last = step == cfg.steps - 1
        # the budget is read every step (a host clock, no device sync): a heavy config's
        # check_every steps can take far longer than the budget
        out_of_time = time_budget_s is not None and time.process_time() - c0 > time_budget_s
        if step % cfg.check_every == 0 or last or out_of_time:
            if not math.isfinite(float(out.total.detach())):
                raise FloatingPointError(f"non-finite loss at step {step}: {dict(out.terms)}")
            hist.log(step, time.perf_counter() - t0, out, schedule.epsilon, model.last_weights,
                     model.loss_weights, time.process_time() - c0)
            if callback is not None and callback(step, model, hist):
                break
            if cfg.causal and model.last_weights is not None and \
                    schedule.observe(float(model.last_weights.min())):
                hist.stage_ends.append(step)
                if schedule.finished:
                    break
            if out_of_time:
                break
        checkpoint("adam")
    every = cfg.lbfgs_resample or cfg.lbfgs_steps
    while lbfgs_done < cfg.lbfgs_steps and (time_budget_s is None or time.process_time() - c0 < time_budget_s):
        left = None if time_budget_s is None else time_budget_s - (time.process_time() - c0)
        n = min(every, cfg.lbfgs_steps - lbfgs_done)
        b = batch() if block is None else CollocationBatch(**block["batch"]).to(device)

        def on_block(done: int, opt_: torch.optim.LBFGS, b: CollocationBatch = b) -> None:
            checkpoint("lbfgs", lambda: {"done": done, "batch": _batch_state(b), "optimizer": opt_.state_dict()},
                       done)

        lbfgs(model, n, b, schedule.epsilon, hist, t0, c0, time_budget_s=left, resume=block,
              on_block=on_block if on_checkpoint is not None else None)
        lbfgs_done, block = lbfgs_done + n, None
        if lbfgs_done < cfg.lbfgs_steps:
            checkpoint("lbfgs")
    checkpoint("done", final=True)
    return hist


def lbfgs(model: CausalPINN, max_iter: int, batch, epsilon: float, hist: History, t0: float,
          c0: float = 0.0, time_budget_s: float | None = None, block: int = 100, *,
          resume: Mapping[str, Any] | None = None,
          on_block: Callable[[int, torch.optim.LBFGS], None] | None = None) -> None:
    """L-BFGS (strong Wolfe) on a fixed batch with the current causal weights recomputed.

    Runs in blocks of ``block`` iterations (the optimiser keeps its curvature history between
    blocks) so that ``time_budget_s`` CPU seconds can end it between blocks. ``on_block(done,
    optimizer)`` runs at every block boundary before the last; ``resume`` (``{"done": iterations,
    "optimizer": optimizer.state_dict()}`` taken there) continues an interrupted call exactly."""
    model.epsilon = epsilon
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, history_size=50,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        out = model.loss(batch)
        out.total.backward()
        return out.total

    start, done = time.process_time(), 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        done = int(resume["done"])
    while done < max_iter:
        n = min(block, max_iter - done)
        opt.param_groups[0]["max_iter"] = n
        opt.param_groups[0]["max_eval"] = n * 5 // 4
        opt.step(closure)
        done += n
        if time_budget_s is not None and time.process_time() - start > time_budget_s:
            break
        if on_block is not None and done < max_iter:
            on_block(done, opt)
    out = model.loss(batch)
    hist.log(hist.step[-1] + done if hist.step else done, time.perf_counter() - t0, out,
             epsilon, model.last_weights, model.loss_weights, time.process_time() - c0)
