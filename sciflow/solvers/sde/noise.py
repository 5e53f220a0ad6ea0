"""Noise types of an SDE ``dy = f(t, y) dt + g(t, y) dW``: how ``g`` multiplies the Brownian increment.

A noise type fixes three things, declared once and checked at the boundary:

* the shape of the Brownian increment ``dW`` given the state shape ``(*batch, *state)``;
* the shape ``g(t, y)`` must return;
* the product ``g ⊙ dW`` that enters the update (a tensor of the state's shape).

====================  ==========================  ======================  ==================
noise type            ``g(t, y)`` shape            ``dW`` shape            ``g ⊙ dW``
====================  ==========================  ======================  ==================
:class:`Diagonal`     ``(*batch, *state)``         ``(*batch, *state)``    ``g * dW``
:class:`Scalar`       ``(*batch, *state)``         ``(*batch, 1, ..., 1)`` ``g * dW``
:class:`General`      ``(*batch, d, m)``           ``(*batch, m)``         ``(g @ dW)``
:class:`Additive`     as Diagonal or General,     as Diagonal or General  as Diagonal/General
                      but independent of ``y``
====================  ==========================  ======================  ==================

Terminology follows torchsde/diffrax and Kloeden & Platen (1992), ch. 10: *diagonal* noise has one
independent Brownian motion per state component, *scalar* noise a single Brownian motion shared by
all components, *general* an arbitrary ``d x m`` diffusion matrix, *additive* a diffusion that
does not depend on the state (so Itô and Stratonovich coincide and order-1.5 schemes need no
derivatives of ``g``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class NoiseType:
    """Base class. Subclasses set ``name`` and implement the three shape rules."""

    name: str = "abstract"
    #: ``g`` does not depend on ``y`` (Itô = Stratonovich; SRA schemes apply)
    additive: bool = False
    #: the diffusion commutes (Kloeden & Platen 10.3.13): Milstein needs no Lévy areas
    commutative: bool = False

    def increment_shape(self, y_shape: torch.Size) -> torch.Size:
        raise NotImplementedError

    def diffusion_shape(self, y_shape: torch.Size) -> torch.Size:
        raise NotImplementedError

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        raise NotImplementedError

    def check(self, g: Tensor, y: Tensor) -> None:
        """Raise naming both shapes if ``g`` does not fit this noise type for state ``y``."""
        want = self.diffusion_shape(y.shape)
        if g.shape != want:
            raise ValueError(
                f"{type(self).__name__} noise: diffusion returned shape {tuple(g.shape)} for a state of "
                f"shape {tuple(y.shape)}; expected {tuple(want)}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Diagonal(NoiseType):
    """One independent Brownian motion per state component: ``g`` has the state's shape.

    Milstein-type schemes are of strong order 1 for it only when ``g_i`` depends on ``y_i`` alone
    (commutative noise); with cross-dependence they drop to order 0.5 in the worst case.
    """

    name = "diagonal"
    commutative = True  # under the assumption above (documented, not checkable)

    def increment_shape(self, y_shape: torch.Size) -> torch.Size:
        return torch.Size(y_shape)

    def diffusion_shape(self, y_shape: torch.Size) -> torch.Size:
        return torch.Size(y_shape)

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return g * dw


class Scalar(NoiseType):
    """A single Brownian motion per batch element shared by every component of the state.

    ``state_ndim`` says how many trailing axes of ``y`` are state (the rest are batch).
    Scalar noise is always commutative, so Milstein is strong order 1.
    """

    name = "scalar"
    commutative = True

    def __init__(self, state_ndim: int = 1) -> None:
        if state_ndim < 0:
            raise ValueError(f"state_ndim must be >= 0, got {state_ndim}")
        self.state_ndim = state_ndim

    def increment_shape(self, y_shape: torch.Size) -> torch.Size:
        if len(y_shape) < self.state_ndim:
            raise ValueError(f"Scalar noise with state_ndim={self.state_ndim} got a state of shape {tuple(y_shape)}")
        nb = len(y_shape) - self.state_ndim
        return torch.Size(tuple(y_shape[:nb]) + (1,) * self.state_ndim)

    def diffusion_shape(self, y_shape: torch.Size) -> torch.Size:
        return torch.Size(y_shape)

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return g * dw

    def __repr__(self) -> str:
        return f"Scalar(state_ndim={self.state_ndim})"


class General(NoiseType):
    """``m`` Brownian motions mixed by a ``(d, m)`` diffusion matrix; the state is ``(*batch, d)``."""

    name = "general"

    def __init__(self, brownian_size: int) -> None:
        if brownian_size < 1:
            raise ValueError(f"brownian_size must be >= 1, got {brownian_size}")
        self.brownian_size = brownian_size

    def increment_shape(self, y_shape: torch.Size) -> torch.Size:
        if len(y_shape) < 1:
            raise ValueError("General noise needs a state with a trailing feature axis (*batch, d)")
        return torch.Size(tuple(y_shape[:-1]) + (self.brownian_size,))

    def diffusion_shape(self, y_shape: torch.Size) -> torch.Size:
        return torch.Size(tuple(y_shape) + (self.brownian_size,))

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return (g @ dw.unsqueeze(-1)).squeeze(-1)

    def __repr__(self) -> str:
        return f"General(brownian_size={self.brownian_size})"


class Additive(NoiseType):
    """State-independent diffusion ``g(t)``: elementwise (``brownian_size=None``) or a ``(d, m)`` matrix.

    ``diffusion`` is still called as ``g(t, y)`` (``y`` is passed for a uniform signature, and
    must not be used). Itô and Stratonovich interpretations coincide.
    """

    name = "additive"
    additive = True
    commutative = True

    def __init__(self, brownian_size: int | None = None) -> None:
        self._inner: NoiseType = Diagonal() if brownian_size is None else General(brownian_size)
        self.brownian_size = brownian_size

    def increment_shape(self, y_shape: torch.Size) -> torch.Size:
        return self._inner.increment_shape(y_shape)

    def diffusion_shape(self, y_shape: torch.Size) -> torch.Size:
        return self._inner.diffusion_shape(y_shape)

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return self._inner.prod(g, dw)

    def __repr__(self) -> str:
        return f"Additive(brownian_size={self.brownian_size})"
