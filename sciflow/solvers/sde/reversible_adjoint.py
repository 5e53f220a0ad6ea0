r"""The reversible Heun adjoint: gradients through an SDE solve in memory independent of the
number of steps, equal to backpropagation through the discretisation up to floating-point
rounding (Kidger, Foster, Li & Lyons, ICML 2021, "Efficient and accurate gradients for neural
SDEs", Sec. 3 and Algorithm 2).

The reversible Heun step (:class:`~sciflow.solvers.sde.reversible_heun.ReversibleHeun`) maps
:math:`(y_n, z_n)` to

.. math::
    z_{n+1} = 2y_n - z_n + f(t_n, z_n)h + g(t_n, z_n)\Delta W_n,\qquad
    y_{n+1} = y_n + \tfrac12\big(f(t_n, z_n) + f(t_{n+1}, z_{n+1})\big)h
              + \tfrac12\big(g(t_n, z_n) + g(t_{n+1}, z_{n+1})\big)\Delta W_n,

and is inverted in closed form:
:math:`z_n = 2y_{n+1} - z_{n+1} - f(t_{n+1}, z_{n+1})h - g(t_{n+1}, z_{n+1})\Delta W_n`, then
:math:`y_n` from the second line. So the forward pass keeps no graph and no intermediate states
(only the saved outputs and the Brownian increments), and the backward pass walks the steps in
reverse, rebuilding :math:`(y_n, z_n)` from :math:`(y_{n+1}, z_{n+1})` and backpropagating the
adjoint :math:`(a_y, a_z)` through that one step with autograd (two drift and two diffusion
evaluations per step, reusing the last step's :math:`f, g` for the inversion). Unlike the
continuous adjoint (torchsde's ``sdeint_adjoint`` with other methods), the gradient is that of the
computed solution, not of a second, backwards discretisation.

Gradients reach ``y0`` and the tensors named in ``adjoint_params`` (default: the parameters of
``drift`` and ``diffusion`` where they are ``nn.Module`` objects); tensors captured any other way
get none. Fixed steps on one time grid shared by the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from sciflow.solvers.sde.term import SDETerm

__all__ = ["ReversibleAdjoint"]


class ReversibleAdjoint:
    """O(1)-memory exact gradients for :class:`~sciflow.solvers.sde.reversible_heun.ReversibleHeun`
    solves (``sdeint(..., solver=ReversibleHeun(), adjoint=ReversibleAdjoint())``); see the module
    docstring."""

    def __init__(self, adjoint_params: Sequence[Tensor] | None = None) -> None:
        self.adjoint_params = None if adjoint_params is None else tuple(adjoint_params)
        for p in self.adjoint_params or ():
            if not isinstance(p, Tensor):
                raise TypeError(f"adjoint_params must be tensors, got {type(p).__name__}")

    def __repr__(self) -> str:
        n = "module parameters" if self.adjoint_params is None else f"{len(self.adjoint_params)} tensors"
        return f"ReversibleAdjoint(adjoint_params={n})"

    def params(self, term: SDETerm) -> tuple[Tensor, ...]:
        if self.adjoint_params is not None:
            found = self.adjoint_params
        else:
            found = tuple(p for m in (term.drift, term.diffusion) if isinstance(m, nn.Module) for p in m.parameters())
        seen, out = set(), []
        for p in found:                      # drift and diffusion may share parameters
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return tuple(out)

    def solve(self, term: SDETerm, y0: Tensor, ts: Tensor, hs: list[float], dws: Tensor,
              where: list[int]) -> Tensor:
        """The saves ``(len(where), *y0.shape)`` at the grid indices ``where`` of the step times
        ``ts``, differentiable by the reversible adjoint."""
        params = tuple(p for p in self.params(term) if p is not y0)     # y0's gradient comes once
        return _Reversible.apply((term, ts, hs, dws, where), y0, *params)


def _step(term: SDETerm, t0: Tensor, t1: Tensor, h: float, dw: Tensor, y: Tensor, z: Tensor, fz: Tensor,
          gz: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One reversible Heun step from ``(y, z)`` with ``f(t0, z), g(t0, z)`` given: ``(y1, z1, f1, g1)``."""
    z1 = 2 * y - z + fz * h + term.g_prod(gz, dw)
    f1, g1 = term.f(t1, z1), term.g(t1, z1)
    y1 = y + (0.5 * h) * (fz + f1) + 0.5 * term.g_prod(gz + g1, dw)
    return y1, z1, f1, g1


class _Reversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg, y0, *params):
        term, ts, hs, dws, where = cfg
        with torch.no_grad():
            y, z = y0, y0
            fz, gz = term.f(ts[0], z), term.g(ts[0], z)
            out, k = [y0], 1
            for i in range(len(hs)):
                y, z, fz, gz = _step(term, ts[i], ts[i + 1], hs[i], dws[i], y, z, fz, gz)
                if k < len(where) and where[k] == i + 1:
                    out.append(y)
                    k += 1
        ctx.cfg = cfg
        ctx.save_for_backward(y, z, *params)
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad_ys):
        term, ts, hs, dws, where = ctx.cfg
        y, z, *params = ctx.saved_tensors
        save_at = {w: k for k, w in enumerate(where)}
        a_y = grad_ys[-1].clone()
        a_z = torch.zeros_like(a_y)
        g_params = [torch.zeros_like(p) for p in params]
        with torch.no_grad():
            f1, g1 = term.f(ts[-1], z), term.g(ts[-1], z)
        for i in reversed(range(len(hs))):
            h, dw = hs[i], dws[i]
            with torch.no_grad():       # invert the step: (y_{i+1}, z_{i+1}) -> z_i
                z = 2 * y - z - f1 * h - term.g_prod(g1, dw)
            with torch.enable_grad():
                zz = z.detach().requires_grad_(True)
                f0, g0 = term.f(ts[i], zz), term.g(ts[i], zz)
                with torch.no_grad():   # ... and y_i (f, g at z_i from the graph's evaluation)
                    y = y - (0.5 * h) * (f0 + f1) - 0.5 * term.g_prod(g0 + g1, dw)
                yy = y.detach().requires_grad_(True)
                y1, z1, _, _ = _step(term, ts[i], ts[i + 1], h, dw, yy, zz, f0, g0)
                grads = torch.autograd.grad((y1, z1), (yy, zz, *params), (a_y, a_z), allow_unused=True)
            a_y, a_z = grads[0], grads[1]
            for j, gp in enumerate(grads[2:]):
                if gp is not None:
                    g_params[j] = g_params[j] + gp
            if i in save_at and i > 0:
                a_y = a_y + grad_ys[save_at[i]]
            f1, g1 = f0.detach(), g0.detach()
        grad_y0 = a_y + a_z + grad_ys[0]            # z_0 = y_0, and the save at t_0 is y_0 itself
        return (None, grad_y0, *g_params)
