"""Samplers for ε-prediction diffusion models: DDPM ancestral, DDIM(η), DPM-Solver++(2M).

The network is a callable ``eps_model(x, t) -> ε̂`` with ``x: (batch, *data)`` and
``t: (batch,)`` the continuous time in ``(0, t_max]`` of a
:class:`~sciflow.solvers.generative.schedules.NoiseSchedule` (``x_t = α_t x_0 + σ_t ε``).
Every sampler walks a strictly decreasing time grid ``t_max = t_0 > t_1 > ... > t_n = t_min``
with one network evaluation per step (``nfe = n``) and applies the optional conditioning hook
``condition(x, t)`` to the state after every step (replacement conditioning, e.g. WDNO).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.solvers.generative._common import CountedModel, check_nfe, check_x, log_snr_time_grid, \
    uniform_time_grid, check_grid, Condition, Model, check_finite_output
from sciflow.solvers.generative.schedules import NoiseSchedule


class DiffusionSampler:
    """Interface: ``evals_per_step`` and ``run(model, schedule, x, grid, generator, condition)``."""

    evals_per_step: int = 1

    def run(self, model: CountedModel, schedule: NoiseSchedule, x: Tensor, grid: list[float],
            generator: torch.Generator | None, condition: Condition | None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _coefficients(schedule: NoiseSchedule, grid: list[float]) -> tuple[list[float], list[float], list[float]]:
    t = torch.tensor(grid, dtype=torch.float64)
    return schedule.alpha(t).tolist(), schedule.sigma(t).tolist(), schedule.log_snr(t).tolist()


def _tvec(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


class DDIM(DiffusionSampler):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) in ``(α, σ)`` form, for VP and VE schedules.

    From ``s`` to ``t < s`` with ``x̂_0 = (x_s - σ_s ε̂) / α_s``:

    .. math::
        x_t = α_t x̂_0 + \\sqrt{σ_t^2 - c^2}\\,ε̂ + c\\,ξ, \\qquad
        c = η \\frac{σ_t}{σ_s} σ_{s|t}, \\quad σ_{s|t}^2 = σ_s^2 - (α_s/α_t)^2 σ_t^2

    ``η = 0`` is deterministic (a first-order solver of the probability-flow ODE); ``η = 1`` is
    the DDPM ancestral step with the posterior variance ``β̃`` (see :class:`DDPM`).
    """

    def __init__(self, eta: float = 0.0) -> None:
        if not (math.isfinite(eta) and eta >= 0):
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta = float(eta)

    def run(self, model, schedule, x, grid, generator, condition):
        alpha, sigma, _ = _coefficients(schedule, grid)
        for i in range(len(grid) - 1):
            a_s, s_s, a_t, s_t = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
            eps = model(x, grid[i])
            x0 = (x - s_s * eps) / a_s
            c = 0.0
            if self.eta > 0:
                var_st = max(s_s**2 - (a_s / a_t) ** 2 * s_t**2, 0.0)
                c = self.eta * s_t / s_s * math.sqrt(var_st)
            x = a_t * x0 + math.sqrt(max(s_t**2 - c * c, 0.0)) * eps
            if c > 0:
                x = x + c * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            if condition is not None:
                x = condition(x, _tvec(grid[i + 1], x))
        return x

    def __repr__(self):
        return f"DDIM(eta={self.eta})"


class DDPM(DDIM):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) for a continuous schedule.

    Each step samples the exact Gaussian posterior ``q(x_t | x_s, x_0 = x̂_0)``: mean
    ``(α_{s|t} σ_t²/σ_s²) x_s + (α_t σ_{s|t}²/σ_s²) x̂_0``, variance ``σ_{s|t}² σ_t² / σ_s²``
    (the ``β̃`` choice of Ho et al.; Kingma et al. 2021, eq. 28). Algebraically this is
    :class:`DDIM` with ``η = 1``.
    """

    def __init__(self) -> None:
        super().__init__(eta=1.0)

    def __repr__(self):
        return "DDPM()"


class DPMSolverPP2M(DiffusionSampler):
    """DPM-Solver++(2M), the multistep second-order data-prediction solver (Lu et al. 2022,
    "DPM-Solver++: Fast solver for guided sampling of diffusion probabilistic models", Alg. 2).

    With ``λ = log(α/σ)``, ``h_i = λ_{t_i} - λ_{t_{i-1}}``, ``x̂_0^{(i)}`` the data prediction at
    ``t_{i-1}``, ``r_i = h_{i-1} / h_i``:

    .. math::
        D_i = (1 + \\tfrac{1}{2 r_i}) x̂_0^{(i)} - \\tfrac{1}{2 r_i} x̂_0^{(i-1)}, \\qquad
        x_{t_i} = \\frac{σ_{t_i}}{σ_{t_{i-1}}} x_{t_{i-1}} - α_{t_i} (e^{-h_i} - 1) D_i

    and the first step uses ``D_1 = x̂_0^{(1)}`` (DPM-Solver++(1) = DDIM). One evaluation per step.
    """

    def run(self, model, schedule, x, grid, generator, condition):
        alpha, sigma, lam = _coefficients(schedule, grid)
        x0_prev, h_prev = None, None
        for i in range(len(grid) - 1):
            eps = model(x, grid[i])
            x0 = (x - sigma[i] * eps) / alpha[i]
            h = lam[i + 1] - lam[i]
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
            x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * math.expm1(-h) * d
            if condition is not None:
                x = condition(x, _tvec(grid[i + 1], x))
            x0_prev, h_prev = x0, h
        return x


def sample_diffusion(
    eps_model: Model,
    schedule: NoiseSchedule,
    x_init: Tensor,
    *,
    sampler: DiffusionSampler | None = None,
    nfe: int = 50,
    t_min: float = 1e-3,
    t_max: float | None = None,
    time_grid: list[float] | Tensor | None = None,
    log_snr_spacing: bool = False,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    return_nfe: bool = False,
):
    """Draw samples by running ``sampler`` from ``x_init ~ p(x_{t_max})`` down to ``t_min``.

    Args:
        eps_model: ``ε̂(x, t)``, ``x: (batch, *data)``, ``t: (batch,)``.
        schedule: the noise schedule the model was trained with.
        x_init: the starting state, e.g. ``schedule.prior_std() * randn(batch, *data)``.
        sampler: :class:`DDPM`, :class:`DDIM` (default, ``η = 0``), :class:`DPMSolverPP2M` or
            :class:`~sciflow.solvers.generative.probability_flow.ProbabilityFlow`.
        nfe: budget of network evaluations; fixed-step samplers take ``nfe // evals_per_step``
            steps, adaptive ones raise :class:`NFEBudgetExceeded` if they would need more.
        t_min, t_max: end and start times (``t_max`` defaults to ``schedule.t_max``).
        time_grid: explicit decreasing grid (overrides ``nfe``'s step count; must fit the budget).
        log_snr_spacing: grid equally spaced in log-SNR instead of in ``t``.
        condition: ``condition(x, t) -> x`` applied after every step (replacement conditioning).
        generator: randomness of stochastic samplers.
        return_nfe: also return the number of evaluations used.

    Returns:
        ``x_{t_min}`` of ``x_init``'s shape (and the NFE used).
    """
    from sciflow.solvers.generative.probability_flow import ProbabilityFlow

    sampler = DDIM(0.0) if sampler is None else sampler
    if not isinstance(sampler, (DiffusionSampler, ProbabilityFlow)):
        raise TypeError(f"sampler must be a diffusion sampler (DDPM, DDIM, DPMSolverPP2M, ProbabilityFlow), "
                        f"got {sampler!r}; flow-matching samplers go to sample_flow")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (LinearVP(), CosineVP(), SigmoidVP(), VE()), "
                        f"got {schedule!r}")
    check_x(x_init, "x_init")
    t_max = schedule.t_max if t_max is None else float(t_max)
    if time_grid is not None:
        grid = time_grid.tolist() if isinstance(time_grid, Tensor) else [float(t) for t in time_grid]
    elif isinstance(sampler, ProbabilityFlow):
        grid = [t_max, float(t_min)]
    else:
        n = check_nfe(nfe, sampler.evals_per_step, sampler)
        grid = (log_snr_time_grid(schedule, n, t_max, float(t_min)) if log_snr_spacing
                else uniform_time_grid(n, t_max, float(t_min)))
    check_grid(grid, schedule)
    if isinstance(sampler, DiffusionSampler) and (len(grid) - 1) * sampler.evals_per_step > nfe:
        raise ValueError(f"time_grid of {len(grid) - 1} steps needs more than nfe={nfe} evaluations")
    model = CountedModel(eps_model, budget=nfe, what="eps_model")
    if isinstance(sampler, ProbabilityFlow):
        x = sampler.run(model, schedule, x_init, grid, nfe, condition)
    else:
        x = sampler.run(model, schedule, x_init, grid, generator, condition)
    check_finite_output(x, f"sample_diffusion ({sampler!r})")
    return (x, model.calls) if return_nfe else x
