"""How gradients flow through a solve: direct autograd, backsolve adjoint, checkpointing.

* :class:`DirectAdjoint` — backpropagate through every operation of the solver ("discretise
  then optimise"): exact gradients of the computed solution; memory grows linearly with the
  number of steps (every stage's activations are kept).
* :class:`BacksolveAdjoint` — the continuous adjoint of Chen, Rubanova, Bettencourt & Duvenaud
  (NeurIPS 2018, "Neural ordinary differential equations", eqs. 4–5 and Appendix B; Pontryagin
  1962): solve forwards without a graph, then integrate the augmented system

  .. math::
      \\dot y = f(t, y, θ),\\quad \\dot a = -a^\\top \\partial_y f,\\quad \\dot g = -a^\\top \\partial_θ f

  backwards from ``t_N`` to ``t_0``, adding ``∂L/∂y(t_i)`` to ``a`` at each save time and
  restarting ``y`` from the stored forward value there (as torchdiffeq does, for stability).
  Memory is flat in the number of steps; gradients agree with the exact ones up to the solver
  tolerance. Parameters must be named: ``adjoint_params`` (default: ``f.parameters()`` if ``f``
  is an ``nn.Module``); tensors captured any other way receive no gradient. ``seminorm=True``
  (Kidger, Chen & Lyons, ICML 2021, "'Hey, that's not an ODE': faster ODE adjoints via
  seminorms", Sec. 3) controls the backward step size by the error of ``(y, a)`` only: the
  parameter-gradient channels ``g`` are integrals, ``ġ = -aᵀ∂_θ f``, that feed nothing back, so
  their local error need not limit the step — fewer backward steps at the same gradient accuracy.
* :class:`CheckpointAdjoint` — recompute instead of store: each interval between consecutive save
  times is a ``torch.utils.checkpoint`` segment, so only the states at save times are kept and one
  interval's graph is rebuilt at a time in the backward pass. Gradients are the exact ones of
  the computed solution (same steps replayed). Memory: ``O(T + steps per interval)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._core import check_inputs_of_solve, solve_grid
from ._flat_field import Stats
from .controller import ConstantStepSize, PIController
from .term import ODETerm

__all__ = ["DirectAdjoint", "BacksolveAdjoint", "CheckpointAdjoint"]


class DirectAdjoint:
    """Differentiate through the solver's operations with autograd (the default)."""

    @staticmethod
    def check_solver(solver) -> None:
        """Every solver can be differentiated through directly."""

    def run(self, term, solver, y0, ts, controller, *, batch_ndim=0, window=None, compile=False):
        ys, stats, _ = solve_grid(term, solver, y0, ts, controller, batch_ndim=batch_ndim, window=window,
                                  compile=compile)
        return ys, stats

    def __repr__(self) -> str:
        return "DirectAdjoint()"


class CheckpointAdjoint:
    """Recompute instead of store (``torch.utils.checkpoint``, non-reentrant).

    Each interval between consecutive save times is split into ``segments`` equal sub-intervals;
    each sub-interval is one checkpoint, so the forward pass keeps only the states at their
    boundaries and the backward pass rebuilds one sub-interval's graph at a time. With
    ``segments = 1`` the steps are exactly those of the direct solve (same gradients); more
    segments trade the peak memory of a long interval (``O(steps / segments)``) for boundaries
    the adaptive controller must hit.
    """

    def __init__(self, segments: int = 1):
        if segments < 1:
            raise ValueError(f"CheckpointAdjoint.segments must be >= 1, got {segments}")
        self.segments = segments

    @staticmethod
    def check_solver(solver) -> None:
        """Raise if ``solver`` cannot run under ``torch.utils.checkpoint``."""
        if not solver.checkpoint:
            raise ValueError(f"{type(solver).__name__} cannot be used with CheckpointAdjoint: its Jacobian "
                             f"(torch.func.vjp) cannot run under torch.utils.checkpoint's saved-tensor hooks; "
                             f"use DirectAdjoint()")

    def run(self, term, solver, y0, ts, controller, *, batch_ndim=0, window=None, compile=False):
        self.check_solver(solver)
        check_inputs_of_solve(term, solver, controller, y0, ts)     # the segments skip the checks
        T = ts.shape[-1]
        total = Stats()
        ys = [y0]
        y = y0
        h = None
        if ts.ndim > 1:
            batch_ndim = ts.ndim - 1
        m = self.segments
        if m > 1 and T > 1:  # refine the grid; the original save times are every m-th point
            frac = torch.arange(m, dtype=ts.dtype, device=ts.device) / m
            lo, hi = ts[..., :-1].unsqueeze(-1), ts[..., 1:].unsqueeze(-1)
            grid = torch.cat([(lo + (hi - lo) * frac).flatten(-2), ts[..., -1:]], -1)
        else:
            grid = ts
        for i in range(grid.shape[-1] - 1):
            seg = grid[..., i:i + 2]

            def segment(y_in: Tensor, seg=seg, h_in=h) -> tuple[Tensor, Tensor | None]:
                out, st, h_out = solve_grid(term, solver, y_in, seg, controller, batch_ndim=batch_ndim,
                                            window=window, h0=h_in, check_inputs=False,
                                            compile=compile)
                segment.stats = st
                return out[-1], (None if h_out is None else h_out.detach())

            if torch.is_grad_enabled():
                y, h = checkpoint(segment, y, use_reentrant=False)
            else:
                y, h = segment(y)
            total.nfe += segment.stats.nfe
            total.n_steps += segment.stats.n_steps
            if segment.stats.njev is not None:
                total.njev = (total.njev or 0) + segment.stats.njev
            if (i + 1) % m == 0:
                ys.append(y)
        return torch.stack(ys), total

    def __repr__(self) -> str:
        return f"CheckpointAdjoint(segments={self.segments})"


class BacksolveAdjoint:
    """Continuous adjoint (Chen et al. 2018) with explicitly named parameters.

    ``adjoint_params``: tensors whose gradient is wanted (default: ``f.parameters()`` when ``f`` is
    an ``nn.Module``, else none). ``solver``/``controller``: used for the backward solve
    (default: the forward ones). The backward solve shares one clock for the whole batch, so
    per-sample time grids are not supported here (use :class:`CheckpointAdjoint`).
    ``seminorm``: the backward error norm over the state and adjoint only (module docstring).
    """

    def __init__(self, adjoint_params: Sequence[Tensor] | None = None, *, solver=None,
                 controller: PIController | ConstantStepSize | None = None, seminorm: bool = False):
        self.adjoint_params = None if adjoint_params is None else tuple(adjoint_params)
        self.solver = solver
        self.controller = controller
        self.seminorm = bool(seminorm)

    def __repr__(self) -> str:
        n = "module parameters" if self.adjoint_params is None else f"{len(self.adjoint_params)} tensors"
        return f"BacksolveAdjoint(adjoint_params={n}{', seminorm=True' if self.seminorm else ''})"

    def check_solver(self, solver) -> None:
        """Raise if the backward solver (``self.solver``, else ``solver``) cannot integrate the
        adjoint system."""
        bsolver = self.solver or solver
        if not bsolver.backsolve:
            raise ValueError(
                f"{type(bsolver).__name__} cannot be the backward solver of BacksolveAdjoint: the adjoint "
                f"system's vector field calls torch.autograd.grad, which its Jacobian (torch.func) cannot "
                f"differentiate; use DirectAdjoint() (the exact gradient of the computed solution), or "
                f"BacksolveAdjoint(solver=Dopri5()) if the backward problem is not stiff")

    def run(self, term, solver, y0, ts, controller, *, batch_ndim=0, window=None, compile=False):
        if ts.ndim > 1:
            raise ValueError("BacksolveAdjoint needs one time grid shared by the batch (t of shape "
                             f"(time,)), got t of shape {tuple(ts.shape)}; use CheckpointAdjoint for "
                             "per-sample time grids")
        self.check_solver(solver)
        f = term.vector_field
        if self.adjoint_params is not None:
            params = self.adjoint_params
        elif isinstance(f, nn.Module):
            params = tuple(p for p in f.parameters())
        else:
            params = ()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"adjoint_params must be tensors, got {type(p).__name__}")
        params = tuple(p for p in params if p.requires_grad)
        stats = Stats()
        cfg = (term, solver, controller, self.solver or solver, self.controller or controller,
               batch_ndim, window, stats, compile, self.seminorm)
        ys = _Backsolve.apply(cfg, y0, ts, *params)
        return ys, stats


class _Backsolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, y0, ts, *params):
        term, solver, controller, _, _, batch_ndim, window, stats, compile, _ = cfg
        with torch.no_grad():
            ys, st, _ = solve_grid(term, solver, y0, ts, controller, batch_ndim=batch_ndim, window=window,
                                   compile=compile)
        stats.nfe, stats.n_steps, stats.n_accepted = st.nfe, st.n_steps, st.n_accepted
        ctx.cfg = cfg
        ctx.save_for_backward(ts, ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        term, _, _, bsolver, bcontroller, _, window, stats, _, seminorm = ctx.cfg
        ts, ys, *params = ctx.saved_tensors
        f = term.vector_field
        y_shape = ys.shape[1:]
        n = ys[0].numel()
        sizes = [p.numel() for p in params]

        def augmented(t: Tensor, z: Tensor) -> Tensor:
            y = z[:n].view(y_shape)
            a = z[n:2 * n].view(y_shape)
            with torch.enable_grad():
                y_ = y.detach().requires_grad_(True)
                fy = f(t, y_)
                grads = torch.autograd.grad(fy, (y_, *params), -a, allow_unused=True)
            parts = [fy.reshape(-1), grads[0].reshape(-1) if grads[0] is not None else torch.zeros_like(a).reshape(-1)]
            for g, p in zip(grads[1:], params):
                parts.append(torch.zeros(p.numel(), dtype=z.dtype, device=z.device) if g is None
                             else g.reshape(-1).to(z.dtype))
            return torch.cat(parts)

        aug_term = ODETerm(augmented)
        a = grad_ys[-1].reshape(-1)
        g = torch.zeros(sum(sizes), dtype=ys.dtype, device=ys.device)
        with torch.no_grad():
            for i in range(ts.shape[0] - 1, 0, -1):
                z = torch.cat([ys[i].reshape(-1), a, g])
                zs, st, _ = solve_grid(aug_term, bsolver, z, torch.stack([ts[i], ts[i - 1]]), bcontroller,
                                       window=window, check_inputs=False, norm_entries=2 * n if seminorm else None)
                stats.nfe += st.nfe
                stats.n_steps += st.n_steps
                z = zs[-1]
                a = z[n:2 * n] + grad_ys[i - 1].reshape(-1)
                g = z[2 * n:]
        grad_params = []
        offset = 0
        for p, size in zip(params, sizes):
            grad_params.append(g[offset:offset + size].view_as(p).to(p.dtype))
            offset += size
        return (None, a.view(y_shape), None, *grad_params)
