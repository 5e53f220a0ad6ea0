"""The probability-flow ODE of a diffusion model, solved with any sciflow ODE solver."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sciflow.solvers.generative._common import Condition, CountedModel
from sciflow.solvers.generative.schedules import NoiseSchedule


class ProbabilityFlow:
    """Integrate ``dx/dt = f(t) x - ½ g(t)² ∇ log p_t(x)`` from ``t_max`` down to ``t_min``
    (Song et al. 2021, eq. 13), with the score ``∇ log p_t = -ε̂(x, t) / σ_t``:

    .. math::
        \\frac{dx}{dt} = f(t)\\,x + \\frac{g(t)^2}{2 σ_t}\\,ε̂(x, t)

    ``solver`` is any ``sciflow.solvers.ode`` solver object (default ``Dopri5()``). With
    ``adaptive=True`` (default: the solver's own ``adaptive`` flag) it steps with ``rtol``/``atol``
    and stops with :class:`~sciflow.solvers.generative._common.NFEBudgetExceeded` if the ``nfe``
    budget runs out; otherwise it takes ``nfe // stages`` equal steps and supports a per-step
    ``condition`` hook.
    """

    def __init__(self, solver: Any = None, *, rtol: float = 1e-5, atol: float = 1e-5,
                 adaptive: bool | None = None) -> None:
        self.solver = solver
        self.rtol, self.atol = rtol, atol
        self.adaptive = adaptive

    def __repr__(self):
        return f"ProbabilityFlow(solver={self.solver!r}, rtol={self.rtol}, atol={self.atol})"

    def run(self, model: CountedModel, schedule: NoiseSchedule, x: Tensor, grid: list[float], nfe: int,
            condition: Condition | None) -> Tensor:
        from sciflow.solvers.ode import Dopri5, odeint

        solver = Dopri5() if self.solver is None else self.solver
        if "ode" not in getattr(type(solver), "term_kinds", ()):
            raise TypeError(f"ProbabilityFlow needs an ODE solver (Dopri5(), Heun(), ...), got {solver!r}")

        def field(t: Tensor, y: Tensor) -> Tensor:
            # coefficients stay on the device: no host sync per evaluation
            t = t.reshape(())
            coef = 0.5 * schedule.g2(t) / schedule.sigma(t)
            return schedule.f(t) * y + coef * model(y, t)

        adaptive = bool(getattr(solver, "adaptive", False)) if self.adaptive is None else self.adaptive
        t_max, t_min = grid[0], grid[-1]
        if adaptive:
            if condition is not None:
                raise ValueError("ProbabilityFlow with an adaptive solver has no steps to condition after; "
                                 "use a fixed-step solver (Euler(), Heun(), RK4()) with condition=")
            ts = torch.tensor([t_max, t_min], dtype=x.dtype, device=x.device)
            return odeint(field, x, ts, solver=solver, rtol=self.rtol, atol=self.atol)[-1]
        n = max(nfe // int(solver.stages), 0)
        if n < 1:
            raise ValueError(f"nfe={nfe} is fewer than one step of {solver!r} ({solver.stages} evaluations)")
        h = (t_max - t_min) / n
        if condition is None:
            ts = torch.tensor([t_max, t_min], dtype=x.dtype, device=x.device)
            return odeint(field, x, ts, solver=solver, dt=h * (1 + 1e-9))[-1]
        steps = [t_max + (t_min - t_max) * i / n for i in range(n + 1)]
        for a, b in zip(steps[:-1], steps[1:]):
            ts = torch.tensor([a, b], dtype=x.dtype, device=x.device)
            x = odeint(field, x, ts, solver=solver, dt=h * (1 + 1e-9))[-1]
            if condition is not None:
                x = condition(x, torch.full((x.shape[0],), b, dtype=x.dtype, device=x.device))
        return x
