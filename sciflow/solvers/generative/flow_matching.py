"""Samplers for flow-matching models: integrate a learned velocity ``dx/dt = v(x, t)``.

Convention (Lipman et al. 2023, "Flow matching for generative modeling"; Atanackovic et al. 2025,
meta flow matching): ``t = 0`` is the source/noise end, ``t = 1`` the data end; the network is a
callable ``velocity(x, t)`` with ``x: (batch, *data)`` and ``t: (batch,)``. Every sampler takes an
``nfe`` budget (network evaluations) and an optional ``condition(x, t) -> x`` hook applied after
every step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.solvers.generative._common import Condition, CountedModel, Model, check_finite_output, check_nfe, check_x


class FlowSampler:
    """Interface: ``evals_per_step`` and ``run(model, x, t0, t1, nfe, condition) -> x``."""

    evals_per_step: int = 1

    def run(self, model: CountedModel, x: Tensor, t0: float, t1: float, nfe: int,
            condition: Condition | None) -> Tensor:
        n = check_nfe(nfe, self.evals_per_step, self)
        h = (t1 - t0) / n
        for i in range(n):
            t = t0 + i * h
            x = self.step(model, x, t, h)
            if condition is not None:
                x = condition(x, torch.full((x.shape[0],), t + h, dtype=x.dtype, device=x.device))
        return x

    def step(self, model: CountedModel, x: Tensor, t: float, h: float) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FlowEuler(FlowSampler):
    """Explicit Euler, order 1, one evaluation per step: ``x' = x + h v(x, t)``."""

    evals_per_step = 1

    def step(self, model, x, t, h):
        return x + h * model(x, t)


class FlowMidpoint(FlowSampler):
    """Explicit midpoint rule, order 2: ``x' = x + h v(x + h/2 v(x, t), t + h/2)``."""

    evals_per_step = 2

    def step(self, model, x, t, h):
        return x + h * model(x + (0.5 * h) * model(x, t), t + 0.5 * h)


class FlowHeun(FlowSampler):
    """Heun's method (explicit trapezoid), order 2: ``x' = x + h/2 (k1 + v(x + h k1, t + h))``."""

    evals_per_step = 2

    def step(self, model, x, t, h):
        k1 = model(x, t)
        k2 = model(x + h * k1, t + h)
        return x + (0.5 * h) * (k1 + k2)


class FlowAdaptive(FlowSampler):
    """Bogacki–Shampine 3(2) with FSAL and the standard step-size rule
    ``h ← h · clip(0.9 r^{-1/3}, 0.2, 5)`` (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4), with
    error control **per sample**: a step is accepted only
    if every batch element's RMS scaled error is ≤ 1. Three evaluations per attempted step plus one.

    Raises :class:`~sciflow.solvers.generative._common.NFEBudgetExceeded` if reaching ``t1`` would
    take more than ``nfe`` evaluations.
    ``condition`` is applied after every accepted step.
    """

    def __init__(self, rtol: float = 1e-4, atol: float = 1e-4, first_step: float | None = None) -> None:
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got {rtol}, {atol}")
        self.rtol, self.atol, self.first_step = rtol, atol, first_step

    def __repr__(self):
        return f"FlowAdaptive(rtol={self.rtol}, atol={self.atol})"

    def run(self, model, x, t0, t1, nfe, condition):
        check_nfe(nfe, 4, self)
        span = t1 - t0
        direction = 1.0 if span > 0 else -1.0
        t = t0
        h = self.first_step if self.first_step is not None else 0.05 * abs(span)
        k1 = model(x, t)
        while direction * (t1 - t) > 1e-12 * abs(span):
            h = min(h, abs(t1 - t))
            hs = direction * h
            k2 = model(x + (0.5 * hs) * k1, t + 0.5 * hs)
            k3 = model(x + (0.75 * hs) * k2, t + 0.75 * hs)
            x_new = x + hs * ((2 / 9) * k1 + (1 / 3) * k2 + (4 / 9) * k3)
            k4 = model(x_new, t + hs)
            err = hs * ((-5 / 72) * k1 + (1 / 12) * k2 + (1 / 9) * k3 + (-1 / 8) * k4)
            scale = self.atol + self.rtol * torch.maximum(x.abs(), x_new.abs())
            ratio = (err / scale).pow(2).flatten(1).mean(1).sqrt().max()
            r = float(ratio)  # one host sync per step: the accept/reject decision needs it
            if r <= 1.0:
                t = t + hs
                x, k1 = x_new, k4
                if condition is not None:
                    x = condition(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
                    k1 = model(x, t)  # the hook moved x: the FSAL derivative is stale
            factor = 5.0 if r == 0 else min(5.0, max(0.2, 0.9 * r ** (-1 / 3)))
            h = h * factor
        return x


def sample_flow(
    velocity: Model,
    x_init: Tensor,
    *,
    sampler: FlowSampler | None = None,
    nfe: int = 100,
    t0: float = 0.0,
    t1: float = 1.0,
    condition: Condition | None = None,
    return_nfe: bool = False,
):
    """Transport ``x_init`` (samples at ``t0``) along ``velocity`` to ``t1``.

    Args:
        velocity: ``v(x, t)``, ``x: (batch, *data)``, ``t: (batch,)``.
        x_init: ``(batch, *data)`` at time ``t0`` (noise for generation).
        sampler: :class:`FlowEuler` (default), :class:`FlowMidpoint`, :class:`FlowHeun`,
            :class:`FlowAdaptive`.
        nfe: budget of velocity evaluations; fixed-step samplers take ``nfe // evals_per_step``
            equal steps, the adaptive one raises ``NFEBudgetExceeded`` past it.
        condition: ``condition(x, t) -> x`` after every step.
        return_nfe: also return the number of evaluations used.
    """
    sampler = FlowEuler() if sampler is None else sampler
    if not isinstance(sampler, FlowSampler):
        raise TypeError(f"sampler must be a FlowSampler (FlowEuler, FlowMidpoint, FlowHeun, FlowAdaptive), "
                        f"got {sampler!r}; diffusion samplers go to sample_diffusion")
    check_x(x_init, "x_init")
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 != t1):
        raise ValueError(f"need finite t0 != t1, got t0={t0}, t1={t1}")
    model = CountedModel(velocity, budget=nfe, what="velocity")
    x = sampler.run(model, x_init, t0, t1, nfe, condition)
    check_finite_output(x, f"sample_flow ({sampler!r})")
    return (x, model.calls) if return_nfe else x

