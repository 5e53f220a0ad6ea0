"""Train / val / test recipes for the population datasets of :mod:`sciflow.data.populations`.

A recipe is a frozen dataclass (the ``data:`` section of ``sciflow/configs/mfm_*.yaml``) whose
:meth:`split` builds one split as a :class:`~sciflow.data.batches.PopulationBatch`, deterministic
by ``seed``. ``split(name, draw=1)`` is the same populations with fresh points: its target is the
"oracle" prediction, an independent sample of the true target distribution whose distance to
the target is the finite-sample floor of W1/W2/MMD/energy. Training populations are large and
subsampled per step by the training loop; held-out ones are evaluated at full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from sciflow.data.batches import PopulationBatch
from sciflow.data.populations import (aggregation_populations, letter_population, letter_split, letters,
                                      num_letter_populations)


@dataclass(frozen=True)
class LettersSplits:
    """Letters (Atanackovic et al. 2025, Sec. 5.1) split by letter: ``val_letters`` select
    hyper-parameters and the kept state, ``test_letters`` are reported, the rest of A-Z train.

    train: every training letter at ``n_rotations`` rotations, ``n_points`` points each;
    val / test: the first ``val_rotations`` / ``test_rotations`` rotations of the held-out letters,
    ``val_points`` / ``n_eval_points`` points; ``"seen"`` (when ``seen_letters > 0``): a diagnostic of
    ``seen_letters`` training letters (spread over the alphabet) at ``seen_rotations`` rotations never
    trained on, ``n_eval_points`` points: generalisation across rotations of known shapes rather
    than across shapes.
    """

    n_points: int = 1000
    n_eval_points: int = 1000
    n_rotations: int = 10
    noise_scale: float = 0.05
    source_noise_scale: float = 0.5
    val_letters: tuple[str, ...] = ("X", "K")
    val_rotations: int = 2
    val_points: int = 1000
    test_letters: tuple[str, ...] = ("Y", "G", "M")
    test_rotations: int = 4
    seen_letters: int = 0
    seen_rotations: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        letter_split(tuple(self.val_letters), tuple(self.test_letters))  # disjoint capitals
        for name in ("n_points", "n_eval_points", "n_rotations", "val_points", "seen_rotations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_rotations", "test_rotations"):
            if not 1 <= getattr(self, name) <= self.n_rotations:
                raise ValueError(f"{name} must be in [1, n_rotations={self.n_rotations}], got {getattr(self, name)}")
        if self.seen_letters < 0:
            raise ValueError(f"seen_letters must be >= 0, got {self.seen_letters}")

    @property
    def names(self) -> tuple[str, ...]:
        return ("train", "val", "test", "seen") if self.seen_letters else ("train", "val", "test")

    @property
    def num_populations(self) -> int:
        """Size of the population-id space (the one-hot of the CGFM baseline)."""
        return num_letter_populations(self.n_rotations)

    def _kw(self) -> dict[str, Any]:
        return dict(noise_scale=self.noise_scale, source_noise_scale=self.source_noise_scale, seed=self.seed)

    def split(self, name: str, draw: int = 0) -> PopulationBatch:
        if name not in self.names:
            raise ValueError(f"split must be one of {self.names}, got {name!r}")
        if name == "seen":
            return self._seen(draw)
        kw = dict(n_rotations=self.n_rotations, val_letters=tuple(self.val_letters),
                  test_letters=tuple(self.test_letters), draw=draw, **self._kw())
        if name == "train":
            return letters("train", n_points=self.n_points, **kw)
        rotations, n = ((self.val_rotations, self.val_points) if name == "val"
                        else (self.test_rotations, self.n_eval_points))
        b = letters(name, n_points=n, **kw)
        return b.index(torch.as_tensor([i for i in range(len(b)) if i % self.n_rotations < rotations]))

    def _seen_letters(self) -> tuple[str, ...]:
        """``seen_letters`` training letters spread over the alphabet."""
        train = letter_split(tuple(self.val_letters), tuple(self.test_letters))["train"]
        return train[::max(1, len(train) // self.seen_letters)][:self.seen_letters]

    def _seen(self, draw: int) -> PopulationBatch:
        pops = [letter_population(c, r, n_points=self.n_eval_points, draw=draw, **self._kw())
                for c in self._seen_letters()
                for r in range(self.n_rotations, self.n_rotations + self.seen_rotations)]
        as_t = lambda k: torch.as_tensor(np.stack([p[k] for p in pops]), dtype=torch.float32)  # noqa: E731
        return PopulationBatch(source=as_t(0), target=as_t(1))

    def row_labels(self, name: str) -> list[str]:
        """A label per population of a held-out split (its letter), without building the split."""
        chars, rot = {"val": (self.val_letters, self.val_rotations), "test": (self.test_letters, self.test_rotations),
                      "seen": (self._seen_letters(), self.seen_rotations)}[name]
        return [c for c in chars for _ in range(rot)]


@dataclass(frozen=True)
class AggregationSplits:
    """Aggregation/repulsion particles (:func:`~sciflow.data.populations.aggregation_populations`):
    ``n_train`` / ``n_val`` / ``n_test`` independent initial Gaussian mixtures (``n_points`` /
    ``val_points`` / ``n_eval_points`` particles), evolved for ``horizon`` time units with ``steps``
    RK4 steps; population ids are unique across the splits."""

    n_points: int = 256
    n_eval_points: int = 1000
    val_points: int = 256
    horizon: float = 1.0
    softening: float = 0.05
    steps: int = 50
    n_train: int = 192
    n_val: int = 8
    n_test: int = 10
    dim: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "steps", "dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_points", "n_eval_points", "val_points"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if not (self.horizon > 0 and self.softening > 0):
            raise ValueError(f"horizon and softening must be > 0, got {self.horizon}, {self.softening}")

    names = ("train", "val", "test")

    @property
    def num_populations(self) -> int:
        return self.n_train + self.n_val + self.n_test

    def _sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}

    def split(self, name: str, draw: int = 0) -> PopulationBatch:
        if name not in self.names:
            raise ValueError(f"split must be one of {self.names}, got {name!r}")
        sizes = self._sizes()
        points = {"train": self.n_points, "val": self.val_points, "test": self.n_eval_points}
        offset = {"train": 0, "val": self.n_train, "test": self.n_train + self.n_val}[name]
        return aggregation_populations(name, n_populations=sizes[name], n_points=points[name], dim=self.dim,
                                       horizon=self.horizon, softening=self.softening, steps=self.steps,
                                       seed=self.seed, id_offset=offset, draw=draw)

    def row_labels(self, name: str) -> list[str]:
        return [f"{name} {i}" for i in range(self._sizes()[name])]


def splits_class(data: Mapping[str, Any]) -> type[LettersSplits] | type[AggregationSplits]:
    """Which recipe a ``data:`` section describes: letters name held-out letters, the particle
    system a time horizon."""
    if "val_letters" in data or "test_letters" in data or "n_rotations" in data:
        return LettersSplits
    if "horizon" in data or "n_train" in data:
        return AggregationSplits
    raise ValueError("the data section names neither letters (val_letters / test_letters / n_rotations) "
                     "nor the particle system (horizon / n_train)")
