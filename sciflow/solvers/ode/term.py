"""The equation, separate from the method (diffrax's decomposition): an ODE term."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

__all__ = ["ODETerm"]


class ODETerm:
    """``dy/dt = f(t, y)``.

    ``f(t, y)`` receives ``y`` of shape ``(*batch, *state)`` and ``t`` either as a 0-d tensor (one
    clock for the whole batch) or, with per-trajectory stepping, of shape ``(*batch, 1, ..., 1)``
    (one time per trajectory, broadcastable against ``y``); write ``f`` with broadcasting
    (``torch.sin(t) * y``) and it works in both cases. It returns ``dy/dt`` of ``y``'s shape.
    """

    kind = "ode"  # declared capability: checked against ``solver.term_kinds``

    def __init__(self, vector_field: Callable[[Tensor, Tensor], Tensor]):
        if not callable(vector_field):
            raise TypeError(f"ODETerm needs a callable f(t, y), got {type(vector_field).__name__}")
        self.vector_field = vector_field

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        return self.vector_field(t, y)

    def __repr__(self) -> str:
        return f"ODETerm({getattr(self.vector_field, '__name__', type(self.vector_field).__name__)})"
