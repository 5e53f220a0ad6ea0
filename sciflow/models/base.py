"""The model protocol every family implements and every consumer relies on.

The trainer, the UQ wrappers and the benchmarks call only :meth:`SciflowModel.loss` and
:meth:`SciflowModel.sample` (DESIGN.md, "Models own their loss and sampling").
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LossOutput:
    """A scalar training objective and its named parts.

    ``total`` is what the optimiser differentiates; ``terms`` are detached-for-logging parts
    (e.g. ``{"residual": ..., "ic": ...}``) that the trainer logs and that the non-finite guard
    names when a step is rejected.
    """

    total: Tensor
    terms: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.total, Tensor) or self.total.ndim != 0:
            raise ValueError(
                f"LossOutput.total must be a 0-d tensor, got "
                f"{type(self.total).__name__} with shape {getattr(self.total, 'shape', None)}"
            )


class SciflowModel(nn.Module, abc.ABC):
    """Abstract model protocol: an ``nn.Module`` with ``loss`` and ``sample``.

    Class attributes declare capabilities (checked once at the boundary, never by ``hasattr``):

    - ``stochastic``: ``sample`` draws from a predictive distribution (SDEs, diffusion, flows,
      VAEs). Deterministic models return ``n_samples`` copies of their point prediction, so UQ
      wrappers (ensembles, MC dropout, conformal) can treat every model alike.
    - ``batch_type``: the batch dataclass ``loss``/``sample`` accept.
    - ``config_class``: the family's frozen ``Config`` dataclass; ``cls(config_class(...))``
      builds the model (what configs and the CLI rely on).
    """

    stochastic: ClassVar[bool] = False
    batch_type: ClassVar[type] = object
    config_class: ClassVar[type] = object

    @abc.abstractmethod
    def loss(self, batch: Any) -> LossOutput:
        """Training objective on one batch."""

    @abc.abstractmethod
    def sample(
        self, batch: Any, n_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Predictions with a leading ``n_samples`` axis: ``(n_samples, *prediction_shape)``."""

    def fit_scaler(self, batch: Any) -> None:
        """Fit the data statistics the model stores as buffers (normalisation, coefficient scaling)
        from the training split; they travel with checkpoints. Called once before training by the
        CLI and the trainer's users. Default: the model has nothing to fit."""

    def check_batch(self, batch: Any) -> None:
        """Raise a clear ``TypeError`` if ``batch`` is not this model's batch type."""
        if self.batch_type is not object and not isinstance(batch, self.batch_type):
            raise TypeError(
                f"{type(self).__name__} takes {self.batch_type.__name__}, "
                f"got {type(batch).__name__}"
            )


def check_choices(cfg: Any) -> None:
    """Check every ``Literal[...]``-annotated field of the frozen config dataclass ``cfg``.

    YAML configs are checked by :mod:`sciflow.config`; this is the same check for a ``Config`` built
    in Python (call it from ``__post_init__``), so a misspelt solver or activation fails where it
    is written, not as a ``KeyError`` when the model is built.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp = hints.get(f.name)
        if typing.get_origin(tp) is Literal:
            value = getattr(cfg, f.name)
            allowed = typing.get_args(tp)
            if value not in allowed:
                raise ValueError(f"{type(cfg).__name__}.{f.name}={value!r} is not allowed; choose one of "
                                 f"{list(allowed)}")
