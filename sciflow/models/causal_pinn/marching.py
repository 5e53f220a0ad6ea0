"""Time-marching (Wang, Sankaran & Perdikaris 2022, section 4): one causal PINN per time window,
each started from the previous window's prediction at its end, with checkpoints and exact resume
over all windows (each window is a :func:`~sciflow.models.causal_pinn.train.train` run)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from sciflow.models._state import clone_state
from sciflow.models.causal_pinn.config import Config
from sciflow.models.causal_pinn.model import CausalPINN
from sciflow.models.causal_pinn.problems import Problem, make_problem
from sciflow.models.causal_pinn.train import History, _dtype, resume_mismatch, train


@dataclass
class MarchedSolution:
    """Models of consecutive windows ``[edges[k], edges[k+1]]`` (each on local time)."""

    models: list[CausalPINN]
    edges: list[float]
    histories: list[History]

    @torch.no_grad()
    def predict(self, points: Tensor) -> Tensor:
        """``(N, dim)`` global-time points -> ``(N, channels)``."""
        t = points[:, 0].contiguous()
        k = torch.bucketize(t, torch.tensor(self.edges[1:-1], dtype=t.dtype, device=t.device), right=False)
        out = None
        for i, m in enumerate(self.models):
            sel = k == i
            if not bool(sel.any()):
                continue
            p = points[sel].clone()
            p[:, 0] -= self.edges[i]
            u = m.predict(p)
            if out is None:
                out = points.new_zeros(points.shape[0], u.shape[1])
            out[sel] = u
        return out


def march(cfg: Config, problem: Problem | None = None, *, device: torch.device | str = "cpu",
          time_budget_s: float | None = None,
          callback: Callable[[int, CausalPINN, History], bool | None] | None = None,
          checkpoint_every: int | None = None,
          on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
          resume_state: Mapping[str, Any] | None = None) -> MarchedSolution:
    """Time-marching (paper section 4): split ``t_span`` into ``cfg.time_windows`` windows; train
    one causal PINN per window on local time ``[0, dt]`` with the previous window's prediction at
    its end time as initial condition (exact: the previous network is evaluated, not
    interpolated). ``warm_start`` initialises each window from the previous parameters.
    ``time_budget_s`` (CPU seconds; default ``cfg.time_budget_s``) is shared by the windows: each
    gets an equal part of what is left; ``callback`` is passed to every window's :func:`train`
    (returning True ends that window).

    Checkpoints as in :func:`train`: ``on_checkpoint`` receives ``{"kind": "march", "phase":
    "march" | "done", "step"`` (steps of all windows so far), ``"windows"`` (``state_dict`` s of the
    finished windows), ``"histories"``, ``"window_steps"``, ``"window"`` (the current window's
    :func:`train` state), ``"window_budget_s"``, ``"cpu_s"``, ``"wall_s"``, ``"config"}``;
    ``resume_state`` continues from it, bit for bit (the finished windows are reloaded and their
    end states handed on as before; the current window resumes inside :func:`train`).
    """
    if (checkpoint_every is None) != (on_checkpoint is None):
        raise ValueError("checkpoint_every and on_checkpoint must be given together")
    problem = problem if problem is not None else make_problem(cfg.problem, cfg.t_final)
    time_budget_s = cfg.time_budget_s if time_budget_s is None else time_budget_s
    t0, t1 = problem.t_span
    n = cfg.time_windows
    edges = [t0 + (t1 - t0) * k / n for k in range(n + 1)]
    dt = edges[1] - edges[0]
    models, hists, window_steps = [], [], []
    finished, current, budget_now, spent_cpu, spent_wall = [], None, None, 0.0, 0.0
    if resume_state is not None:
        if (why := resume_mismatch(cfg, resume_state)) is not None:
            raise ValueError(f"cannot resume: {why}")
        if resume_state.get("kind") != "march":
            raise ValueError("cannot resume: not a time-marching state (resume it with train)")
        s = resume_state
        finished, current, budget_now = s["windows"], s["window"], s["window_budget_s"]
        hists = [History(**clone_state(h)) for h in s["histories"]]
        window_steps = [int(k) for k in s["window_steps"]]
        spent_cpu, spent_wall = float(s["cpu_s"]), float(s["wall_s"])
    start, wall0 = time.process_time() - spent_cpu, time.perf_counter() - spent_wall
    ic, hard = problem.initial_condition, problem.hard_ic

    def checkpoint(window: dict[str, Any] | None, budget: float | None, phase: str = "march") -> None:
        on_checkpoint(clone_state({
            "kind": "march", "phase": phase, "config": asdict(cfg),
            "step": sum(window_steps) + (int(window["step"]) if window is not None else 0),
            "windows": [m.state_dict() for m in models], "histories": [asdict(h) for h in hists],
            "window_steps": list(window_steps), "window": window, "window_budget_s": budget,
            "cpu_s": time.process_time() - start, "wall_s": time.perf_counter() - wall0}))

    for k in range(n):
        sub = problem.window(0.0, dt, initial_condition=ic, hard_ic=hard)
        model = CausalPINN(cfg, sub).to(device=device, dtype=_dtype(cfg))  # cast before loading: no rounding
        if k < len(finished):  # done before the interruption
            model.load_state_dict(finished[k])
        else:
            if cfg.warm_start and models:
                state = {k_: v for k_, v in models[-1].state_dict().items() if k_ != "net.hard_ic"}
                model.load_state_dict(state, strict=False)
            left = budget_now if current is not None else None if time_budget_s is None else \
                max(0.0, time_budget_s - (time.process_time() - start)) / (n - k)
            last: dict[str, Any] = {}

            def save(w: dict[str, Any], left=left, last=last) -> None:
                last["step"] = int(w["step"])
                if w["phase"] != "done":  # the window's end is saved below, with the window counted
                    checkpoint(w, left)

            hists.append(train(model, device=device, time_budget_s=left, callback=callback,
                               checkpoint_every=checkpoint_every, on_checkpoint=save if on_checkpoint else None,
                               resume_state=current))
            current = None
            window_steps.append(last.get("step", 0))  # known (and needed) only when checkpointing
        models.append(model)
        if on_checkpoint is not None and k >= len(finished):
            checkpoint(None, None, "done" if k == n - 1 else "march")
        prev = model
        if problem.hard_ic is not None:
            end = torch.tensor([[dt]], dtype=next(prev.parameters()).dtype, device=device)
            hard = tuple(float(v) for v in prev.predict(end)[0])
        else:
            def ic(xs: Tensor, prev=prev, dt=dt) -> Tensor:  # noqa: E306
                p = next(prev.parameters())
                pts = torch.cat([torch.full((xs.shape[0], 1), dt, dtype=p.dtype, device=p.device),
                                 xs.to(device=p.device, dtype=p.dtype)], dim=1)
                return prev.predict(pts).to(xs.device)
    return MarchedSolution(models, edges, hists)
