"""The SDE term: drift, diffusion and the noise type that says how they meet ``dW``."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from sciflow.solvers.sde.noise import Diagonal, NoiseType

VectorField = Callable[[Tensor, Tensor], Tensor]


class SDETerm:
    """``dy = f(t, y) dt + g(t, y) ⊙ dW`` with ``⊙`` fixed by ``noise`` (see :mod:`.noise`).

    ``drift(t, y)`` returns the state's shape ``(*batch, *state)``; ``diffusion(t, y)`` the shape
    ``noise.diffusion_shape(y.shape)``. ``t`` is passed as a 0-d tensor of the state's dtype.
    Whether ``dW`` is read in the Itô or Stratonovich sense is the solver's declared ``calculus``.
    """

    kind = "sde"  # declared capability, checked against ``solver.term_kinds`` (ODE solvers refuse it)

    def __init__(self, drift: VectorField, diffusion: VectorField, noise: NoiseType | None = None) -> None:
        if not callable(drift) or not callable(diffusion):
            raise TypeError("SDETerm needs callable drift(t, y) and diffusion(t, y)")
        noise = Diagonal() if noise is None else noise
        if not isinstance(noise, NoiseType):
            raise TypeError(f"noise must be a NoiseType instance (Diagonal(), Scalar(), ...), got {noise!r}")
        self.drift = drift
        self.diffusion = diffusion
        self.noise = noise

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.drift(t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(t, y)

    def g_prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return self.noise.prod(g, dw)

    def __repr__(self) -> str:
        return f"SDETerm(noise={self.noise!r})"
