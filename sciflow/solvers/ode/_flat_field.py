"""The flat layout of the stepping loops (:mod:`._integrate`, :mod:`._fixed_step`, :mod:`._shared_clock`).

Internal layout: ``y: (B, S)`` — ``B`` trajectories that each carry their own clock ``t: (B,)``
and step ``h: (B,)`` (``B = 1`` when the whole batch shares one clock, torchdiffeq-style), ``S``
state entries each; save times ``ts: (B, T)``, increasing (decreasing grids are mapped to
increasing ones by the caller with ``s = -t``).

:class:`FlatField` maps the user's ``f(t, y)`` on ``(*batch, *state)`` to that layout and counts its
evaluations in :class:`Stats`, the work counters every solve reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import Tensor

from .._checks import check_vector_field_output

__all__ = ["FlatField", "Stats"]


@dataclass
class Stats:
    """Work counters of one solve: vector-field evaluations (batched calls), loop iterations
    (attempted steps), accepted steps per trajectory ``(B,)`` (adaptive only), and for solvers
    that use ``∂f/∂y`` (``solver.jacobians_per_step > 0``) the batched Jacobian evaluations
    ``njev`` (``None`` otherwise; not included in ``nfe``)."""

    nfe: int = 0
    n_steps: int = 0
    n_accepted: Tensor | None = None
    njev: int | None = None

    def count_jacobians(self, solver, steps: int) -> None:
        """Add the Jacobian evaluations of ``steps`` attempted steps of ``solver``."""
        if solver.jacobians_per_step:
            self.njev = (self.njev or 0) + steps * solver.jacobians_per_step

    def as_dict(self) -> dict:
        d = {"nfe": self.nfe, "n_steps": self.n_steps}
        if self.njev is not None:
            d["njev"] = self.njev
        if self.n_accepted is not None:
            d["n_accepted"] = self.n_accepted
            d["n_rejected"] = self.n_steps - self.n_accepted
        return d


@dataclass
class FlatField:
    """Adapts the user's ``f(t, y)`` on ``(*batch, *state)`` to the flat ``(B,), (B, S)`` layout.

    ``shared_clock``: one time for the whole batch (``t`` passed as a 0-d tensor); otherwise ``t``
    is passed as ``(*batch, 1, ..., 1)``. ``direction = -1`` integrates ``s = -t`` forwards:
    ``dy/ds = -f(-s, y)``. ``finite_start``: also check that the first evaluation is finite (one
    host sync; adaptive solves, whose first step size a NaN there would poison; a fixed-step solve
    is checked once at its end instead).
    """

    f: Callable[[Tensor, Tensor], Tensor]
    y_shape: tuple[int, ...]
    batch_shape: tuple[int, ...]
    shared_clock: bool
    direction: int = 1
    finite_start: bool = False
    stats: Stats = field(default_factory=Stats)
    _checked: bool = False

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        tt = t.reshape(()) if self.shared_clock else t.reshape(
            self.batch_shape + (1,) * (len(self.y_shape) - len(self.batch_shape)))
        yy = y.reshape(self.y_shape)
        if self.direction < 0:
            tt = -tt
        out = self.f(tt, yy)
        if not self._checked:
            check_vector_field_output(out, yy, t=tt if self.finite_start else None)
            self._checked = True
        self.stats.nfe += 1
        out = out.reshape(y.shape)
        return -out if self.direction < 0 else out

    def raw(self, t: Tensor, y: Tensor) -> Tensor:
        """Same map without counting or checks (pure, for compiled loops; the caller counts)."""
        tt = t.reshape(()) if self.shared_clock else t.reshape(
            self.batch_shape + (1,) * (len(self.y_shape) - len(self.batch_shape)))
        if self.direction < 0:
            out = self.f(-tt, y.reshape(self.y_shape))
            return -out.reshape(y.shape)
        return self.f(tt, y.reshape(self.y_shape)).reshape(y.shape)
