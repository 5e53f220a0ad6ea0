"""``sdeint``: fixed-step SDE integration with save times, torchdiffeq-shaped output."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from sciflow.solvers._checks import check_term_kind
from sciflow.solvers._precision import AutocastField, autocast_dtype, working_state
from sciflow.solvers.ode.controller import PIController
from sciflow.solvers.sde.adaptive import check_adaptive, integrate_adaptive_sde
from sciflow.solvers.sde.base import SDESolver
from sciflow.solvers.sde.brownian import (BrownianPath, VirtualBrownianTree, _as_float_grid, check_brownian,
                                         grid_increments, seed_from)
from sciflow.solvers.sde.euler_maruyama import EulerMaruyama
from sciflow.solvers.sde.noise import NoiseType
from sciflow.solvers.sde.per_sample import integrate_per_sample
from sciflow.solvers.sde.reversible_adjoint import ReversibleAdjoint
from sciflow.solvers.sde.reversible_heun import ReversibleHeun
from sciflow.solvers.sde.term import SDETerm, VectorField
from sciflow.solvers.sde.torchsde_backend import TorchSDE


def step_grid(save: list[float], dt: float | None) -> tuple[list[float], list[int]]:
    """Step times covering the save times, and the index of each save time in them.

    Each save interval ``[t_k, t_{k+1}]`` is cut into ``ceil((t_{k+1} - t_k) / dt)`` equal steps,
    so every save time is hit exactly and no step exceeds ``dt``.
    """
    if dt is None:
        return list(save), list(range(len(save)))
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    grid = [save[0]]
    where = [0]
    for a, b in zip(save[:-1], save[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        h = (b - a) / n
        grid.extend(a + k * h for k in range(1, n))
        grid.append(b)
        where.append(len(grid) - 1)
    return grid, where


def _check_y0(y0: Tensor) -> None:
    if not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a tensor, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise TypeError(f"y0 must be floating point, got {y0.dtype}")
    if not torch.isfinite(y0).all():
        raise ValueError("y0 contains NaN or inf")


def sdeint(
    drift: VectorField,
    diffusion: VectorField,
    y0: Tensor,
    t: Tensor | Sequence[float],
    *,
    noise: NoiseType | None = None,
    solver: SDESolver | TorchSDE | None = None,
    dt: float | None = None,
    brownian: BrownianPath | None = None,
    generator: torch.Generator | None = None,
    controller: PIController | None = None,
    adjoint: ReversibleAdjoint | None = None,
    return_stats: bool = False,
):
    """Solve ``dy = drift(t, y) dt + diffusion(t, y) ⊙ dW`` and return ``y`` at the times ``t``.

    Args:
        drift, diffusion: ``f(t, y)``, ``g(t, y)`` with ``t`` a 0-d tensor; shapes per ``noise``.
        y0: initial state ``(*batch, *state)``.
        t: save times ``(time,)``, strictly increasing; ``t[0]`` is the initial time. Or
            per-sample grids ``(*batch, time)`` (fixed steps only; see
            :mod:`sciflow.solvers.sde.per_sample`): the fields then get ``t`` shaped
            ``(*batch, 1, ..., 1)``, ``brownian`` lives on the normalised clock ``[0, time - 1]``,
            and ``dt`` bounds every sample's step.
        noise: a :class:`~sciflow.solvers.sde.noise.NoiseType` (default ``Diagonal()``).
        solver: an :class:`SDESolver` (default :class:`EulerMaruyama`; also ``Milstein``,
            ``StratonovichHeun``, ``SRI``, ``SRA1``, ``ReversibleHeun``) or a :class:`TorchSDE`
            backend. The SDE is read in the solver's ``calculus`` (Itô or Stratonovich).
        dt: step size; each save interval is split into equal steps no longer than ``dt``.
            ``None`` steps from save time to save time.
        brownian: a :class:`BrownianPath` of shape ``noise.increment_shape(y0.shape)`` covering
            the step grid; default: increments pre-sampled on the step grid from ``generator``.
        generator: random source for the default Brownian increments (or, with ``controller``,
            for the default tree's seed).
        controller: a :class:`~sciflow.solvers.ode.controller.PIController` for adaptive steps
            (see :mod:`sciflow.solvers.sde.adaptive`): needs ``brownian`` to be a
            :class:`VirtualBrownianTree` (default: one on ``[t[0], t[-1]]`` seeded from
            ``generator``) and a solver with an embedded estimate (``Milstein``,
            ``StratonovichHeun``, ``SRI``, ``SRA1``). First step ``controller.dt0``, else ``dt``,
            else ``(t[-1] - t[0]) / 64``.
        adjoint: :class:`~sciflow.solvers.sde.reversible_adjoint.ReversibleAdjoint` for gradients in
            memory independent of the number of steps, exact for the computed solution (with
            ``ReversibleHeun``, fixed steps, a shared grid); default: autograd through the steps.
        return_stats: also return a dict of work counters (as ``odeint``): ``n_steps`` for fixed
            steps; ``n_accepted``, ``n_rejected``, ``step_sizes`` (accepted, floats) for adaptive.

    Returns:
        ``(time, *batch, *state)``. Raises if the state became non-finite, naming the first
        save time at which it did (checked once, after the solve: no host sync per step).
    """
    y0 = working_state(y0)  # a half-precision state under autocast is integrated in float32
    if isinstance(y0, Tensor) and (dtype := autocast_dtype(y0.device.type)) is not None:
        # the solver's arithmetic outside autocast, drift and diffusion inside it (sciflow.solvers._precision)
        dev = y0.device.type
        with torch.autocast(dev, enabled=False):
            return sdeint(AutocastField(drift, dev, dtype), AutocastField(diffusion, dev, dtype), y0, t,
                          noise=noise, solver=solver, dt=dt, brownian=brownian, generator=generator,
                          controller=controller, adjoint=adjoint, return_stats=return_stats)
    if isinstance(solver, TorchSDE):
        if controller is not None:
            raise ValueError("controller= is for sciflow's SDE solvers; for torchsde's adaptive stepping "
                             "use TorchSDE(method, adaptive=True, rtol=..., atol=...)")
        _check_y0(y0)
        save = _as_float_grid(t, "t")
        ys = solver.integrate(SDETerm(drift, diffusion, noise), y0, save, dt=dt, brownian=brownian,
                              generator=generator)
        return (ys, {}) if return_stats else ys  # torchsde reports no work counters
    solver = EulerMaruyama() if solver is None else solver
    term = SDETerm(drift, diffusion, noise)
    check_term_kind(term, solver)  # an ODE solver handed an SDE raises here, naming both
    if not isinstance(solver, SDESolver):
        raise TypeError(f"sdeint needs an SDESolver (EulerMaruyama, Milstein, SRI, ...) or TorchSDE, got {solver!r}")
    solver.check_noise(term.noise)
    _check_y0(y0)
    if adjoint is not None:
        _check_adjoint(adjoint, solver, t, controller)
    if isinstance(t, Tensor) and t.ndim > 1:
        if controller is not None:
            raise ValueError("per-sample time grids t: (*batch, time) are supported for fixed steps only; "
                             "pass controller=None, or solve with a shared 1-D t")
        ys, n_steps = integrate_per_sample(term, solver, y0, t, dt, brownian, generator)
        return (ys, {"n_steps": n_steps}) if return_stats else ys
    save = _as_float_grid(t, "t")
    if controller is not None:
        stats: dict = {}
        ys = _sdeint_adaptive(term, solver, y0, save, dt, brownian, generator, controller, stats)
        return (ys, stats) if return_stats else ys
    grid, where = step_grid(save, dt)
    n = len(grid) - 1
    dws, i10s = grid_increments(brownian, grid, term.noise, y0, levy_area=solver.needs_levy_area,
                                generator=generator)
    dws = dws.to(y0.dtype)
    if i10s is not None:
        i10s = i10s.to(y0.dtype)

    ts = torch.tensor(grid, dtype=y0.dtype, device=y0.device)
    hs = [b - a for a, b in zip(grid[:-1], grid[1:])]
    with torch.no_grad():  # one shape check up front: a mis-shaped g would broadcast silently later
        term.noise.check(term.g(ts[0], y0), y0)

    if adjoint is not None:
        ys = adjoint.solve(term, y0, ts, hs, dws, where)
        _check_finite(ys, save)
        return (ys, {"n_steps": n}) if return_stats else ys
    y = y0
    state = solver.init(term, ts[0], y0)
    out = [y0]
    k = 1
    t_steps = ts.unbind(0)  # 0-d views made once, not indexed per step
    dw_steps = dws.unbind(0)
    i10_steps = i10s.unbind(0) if i10s is not None else [None] * n
    for i in range(n):
        y, state = solver.step(term, t_steps[i], hs[i], y, dw_steps[i], i10_steps[i], state)
        if where[k] == i + 1:
            out.append(y)
            k += 1
    ys = torch.stack(out)
    _check_finite(ys, save)
    return (ys, {"n_steps": n}) if return_stats else ys


def _check_adjoint(adjoint, solver: SDESolver, t, controller) -> None:
    if not isinstance(adjoint, ReversibleAdjoint):
        raise TypeError(f"adjoint must be a ReversibleAdjoint, got {adjoint!r}")
    if not isinstance(solver, ReversibleHeun):
        raise ValueError(f"ReversibleAdjoint inverts the reversible Heun step; solve with solver=ReversibleHeun(), "
                         f"got {solver!r}")
    if controller is not None:
        raise ValueError("ReversibleAdjoint is for fixed steps; pass controller=None")
    if isinstance(t, Tensor) and t.ndim > 1:
        raise ValueError(f"ReversibleAdjoint needs one time grid shared by the batch (t of shape (time,)), got t of "
                         f"shape {tuple(t.shape)}")


def _sdeint_adaptive(term: SDETerm, solver: SDESolver, y0: Tensor, save: list[float], dt: float | None,
                     brownian: BrownianPath | None, generator: torch.Generator | None,
                     controller: PIController, stats: dict) -> Tensor:
    if not isinstance(controller, PIController):
        raise TypeError(f"controller must be a PIController, got {controller!r}")
    check_adaptive(solver, term, brownian)
    inc_shape = term.noise.increment_shape(y0.shape)
    if brownian is None:
        seed = seed_from(generator, 2**62)
        brownian = VirtualBrownianTree(save[0], save[-1], inc_shape, seed=seed, dtype=y0.dtype, device=y0.device)
    check_brownian(brownian, inc_shape, term.noise, y0.shape)
    with torch.no_grad():
        term.noise.check(term.g(torch.tensor(save[0], dtype=y0.dtype, device=y0.device), y0), y0)
    if controller.dt0 is not None:
        dt0 = controller.dt0
    elif dt is not None:
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
        dt0 = dt
    else:
        dt0 = (save[-1] - save[0]) / 64
    ys = integrate_adaptive_sde(term, solver, y0, save, controller, brownian, dt0, stats)
    _check_finite(ys, save)
    return ys


def _check_finite(ys: Tensor, save: list[float]) -> None:
    finite = torch.isfinite(ys.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise FloatingPointError(
            f"SDE state became non-finite (NaN/inf) by save time t={save[first]!r} (index {first}); "
            "reduce dt or check the drift/diffusion"
        )
