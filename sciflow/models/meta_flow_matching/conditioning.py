"""What the vector field is conditioned on: a population embedding phi(p0) (MFM), nothing (FM),
or a one-hot population id (CGFM).

Each conditioner maps a ``PopulationBatch`` to ``(batch, out_features)``; the field concatenates
it to its other inputs. Atanackovic et al., "Meta Flow Matching", ICLR 2025, Sec. 4.1 (the
population embedding) and Sec. 5 (the FM and CGFM baselines).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciflow.data.batches import PopulationBatch
from sciflow.nn.gnn import GCN, knn_graph, l2_normalize, mean_pool


class PopulationEncoder(nn.Module):
    """``phi(p0)``: k-NN graph over the source population -> GCN -> mean pool -> L2 normalise.

    ``source: (batch, n, dim)`` -> ``(batch, embedding_dim)`` unit vectors. The graph is exact
    k-NN built in query chunks (``O(n k + chunk n)`` memory, :func:`sciflow.nn.gnn.knn_graph`);
    ``k`` is clipped to ``n - 1`` for small populations. Mean pooling makes the embedding
    invariant to the order of the points (the population is a set). As in the official code
    the last GCN layer has no activation and the embedding is normalised to the unit sphere.
    """

    def __init__(self, dim: int, hidden: int, embedding_dim: int, layers: int, k: int,
                 chunk_size: int = 1024) -> None:
        super().__init__()
        self.k, self.chunk_size = k, chunk_size
        self.gcn = GCN(dim, hidden, embedding_dim, depth=layers)
        self.out_features = embedding_dim

    def forward(self, source: Tensor) -> Tensor:
        if source.ndim != 3:
            raise ValueError(f"PopulationEncoder: source must be (batch, n, dim), got {tuple(source.shape)}")
        n = source.shape[1]
        if n < 2:
            raise ValueError(f"PopulationEncoder: a population needs >= 2 points for a k-NN graph, got {n}")
        neighbours = knn_graph(source, min(self.k, n - 1), chunk_size=self.chunk_size)
        return l2_normalize(mean_pool(self.gcn(source, neighbours)))

    def condition(self, batch: PopulationBatch) -> Tensor:
        return self(batch.source)


class NoConditioning(nn.Module):
    """Plain flow matching: an empty ``(batch, 0)`` condition."""

    out_features = 0

    def condition(self, batch: PopulationBatch) -> Tensor:
        return batch.source.new_zeros(batch.source.shape[0], 0)


class PopulationIdOneHot(nn.Module):
    """CGFM: the one-hot vector of ``population_id`` over ``num_populations`` (as the official
    code, which concatenates it to the field's input). A held-out population's one-hot column
    meets first-layer weights that training never updated, so CGFM cannot generalise to it."""

    def __init__(self, num_populations: int) -> None:
        super().__init__()
        self.out_features = num_populations

    def condition(self, batch: PopulationBatch) -> Tensor:
        ids = batch.population_id
        if ids is None:
            raise ValueError("conditioning='population_id' needs PopulationBatch.population_id")
        if ids.ndim != 1 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"population_id must be an integer (batch,) tensor, "
                             f"got {ids.dtype} {tuple(ids.shape)}")
        # host check at the boundary only: an out-of-range id would silently wrap in one_hot
        if bool(((ids < 0) | (ids >= self.out_features)).any()):
            raise ValueError(f"population_id must lie in [0, {self.out_features}); got "
                             f"min {int(ids.min())}, max {int(ids.max())}")
        return nn.functional.one_hot(ids.long(), self.out_features).to(batch.source.dtype)
