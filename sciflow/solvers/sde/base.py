"""What every SDE solver declares and implements."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sciflow.solvers.sde.noise import NoiseType
from sciflow.solvers.sde.term import SDETerm


class SDESolver:
    """A one-step method for :class:`~sciflow.solvers.sde.term.SDETerm`.

    Declared capabilities (checked once by :func:`~sciflow.solvers.sde.sdeint.sdeint`):

    * ``calculus``: ``"ito"`` or ``"stratonovich"``: how the solver reads ``g dW``;
    * ``strong_order`` / ``weak_order``: for the general noise types it supports;
    * ``supported_noise``: the :class:`NoiseType` classes it is correct for;
    * ``needs_levy_area``: whether ``step`` needs ``I_(1,0) = ∫ (W_u - W_t) du``.

    ``init`` builds solver state carried between steps (``None`` for one-step methods);
    ``step(term, t, dt, y, dw, i10, state) -> (y_next, state)`` advances ``y`` from ``t`` to
    ``t + dt`` with the Brownian increment ``dw`` (and ``i10`` if declared).
    """

    #: term kinds this solver integrates (``ODETerm.kind == "ode"`` is refused with a clear error)
    term_kinds: tuple[str, ...] = ("sde",)
    calculus: str = "ito"
    strong_order: float = 0.5
    weak_order: float = 1.0
    supported_noise: tuple[type[NoiseType], ...] = ()
    needs_levy_area: bool = False

    def init(self, term: SDETerm, t0: Tensor, y0: Tensor) -> Any:
        return None

    def step(self, term: SDETerm, t: Tensor, dt: float, y: Tensor, dw: Tensor, i10: Tensor | None,
             state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def check_noise(self, noise: NoiseType) -> None:
        if not isinstance(noise, self.supported_noise):
            names = ", ".join(c.__name__ for c in self.supported_noise)
            raise ValueError(f"{type(self).__name__} supports noise types ({names}); got {noise!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
