"""Graph layers over point populations: chunked k-nearest-neighbour graphs and GCN layers.

A population is a point cloud ``x: (*batch, n, dim)``. Its k-NN graph is stored as a neighbour
table ``(*batch, n, k)`` of indices into the same population (a fixed-degree adjacency list),
so message passing is a gather, batched over populations, with no scatter and no ``n x n`` matrix.

Used by meta flow matching (Atanackovic et al., ICLR 2025, Sec. 4.1) to embed an initial
population; plain PyTorch, no torch-geometric.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def knn_graph(x: Tensor, k: int, *, chunk_size: int = 1024, loop: bool = False) -> Tensor:
    """Exact k nearest neighbours (Euclidean) of every point within its own population.

    Args:
        x: ``(*batch, n, dim)`` populations (each ``batch`` entry is searched independently).
        k: neighbours per point; ``k <= n - 1`` (``k <= n`` when ``loop=True``).
        chunk_size: query points processed at once. Peak memory is
            ``O(batch * (chunk_size * n + n * k))`` instead of the ``O(batch * n^2)`` of a full
            distance matrix; the result is exact (not approximate) for any ``chunk_size``.
        loop: include the point itself as its own first neighbour.

    Returns:
        ``(*batch, n, k)`` int64 neighbour indices, nearest first. Ties are broken by
        :func:`torch.topk` and are therefore unspecified.

    Squared distances are computed as ``|q|^2 + |x|^2 - 2 q.x`` (one matmul per chunk); on
    exact ties or near-duplicate points the order may differ from a direct ``(q - x)^2`` sum
    at rounding level.
    """
    if x.ndim < 2:
        raise ValueError(f"knn_graph: x must be (*batch, n, dim), got shape {tuple(x.shape)}")
    n = x.shape[-2]
    kmax = n if loop else n - 1
    if not 1 <= k <= kmax:
        raise ValueError(f"knn_graph: need 1 <= k <= {kmax} for a population of {n} points "
                         f"(loop={loop}), got k={k}")
    if chunk_size < 1:
        raise ValueError(f"knn_graph: chunk_size must be >= 1, got {chunk_size}")
    if not torch.is_floating_point(x):
        raise TypeError(f"knn_graph: x must be floating point, got {x.dtype}")
    batch_shape = x.shape[:-2]
    xb = x.detach().reshape(-1, n, x.shape[-1])  # (B, n, dim); indices carry no gradient
    sq = (xb * xb).sum(-1)  # (B, n)
    out = torch.empty(xb.shape[0], n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        q = xb[:, start:stop]  # (B, c, dim)
        d2 = torch.baddbmm(sq[:, start:stop, None] + sq[:, None, :], q, xb.transpose(1, 2),
                           alpha=-2.0)  # (B, c, n)
        rows = torch.arange(stop - start, device=x.device)
        if loop:
            d2[:, rows, rows + start] = -math.inf  # self first, whatever the rounding
        else:
            d2[:, rows, rows + start] = math.inf
        out[:, start:stop] = d2.topk(k, dim=-1, largest=False, sorted=True).indices
    return out.reshape(*batch_shape, n, k)


def gather_neighbours(h: Tensor, neighbours: Tensor) -> Tensor:
    """Features of each point's neighbours: ``h (B, n, c)``, ``neighbours (B, n, k)`` ->
    ``(B, n, k, c)``."""
    B, n, c = h.shape
    k = neighbours.shape[-1]
    offset = (torch.arange(B, device=h.device) * n).view(B, 1, 1)
    flat = (neighbours + offset).reshape(-1)
    return h.reshape(B * n, c).index_select(0, flat).view(B, n, k, c)


class GCNConv(nn.Module):
    """Graph convolution of Kipf & Welling (ICLR 2017, eq. 2) on a k-NN neighbour table.

    ``H' = D^{-1/2} (A + I) D^{-1/2} H W + b`` where ``A_ij = 1`` iff ``j`` is among the ``k``
    nearest neighbours of ``i`` (messages flow from neighbours to the point, as in
    torch-geometric's ``knn_graph`` + ``GCNConv``) and ``D`` is the in-degree of ``A + I``.
    Every point receives exactly ``k`` messages plus its self-loop, so ``D = (k + 1) I`` and the
    normalised operator is the neighbourhood mean ``(h_i + sum_j h_j) / (k + 1)``: we use that
    closed form instead of materialising edge weights.

    Input ``h: (B, n, in_features)``, ``neighbours: (B, n, k)``; output ``(B, n, out_features)``.
    The linear map is applied before aggregation when it shrinks the features (cheaper gather),
    after it otherwise; both orders give the same result by linearity.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.xavier_uniform_(self.weight)  # Glorot, as in Kipf & Welling

    def propagate(self, h: Tensor, neighbours: Tensor) -> Tensor:
        """``D^{-1/2} (A + I) D^{-1/2} h`` for the fixed-in-degree k-NN graph."""
        k = neighbours.shape[-1]
        return (h + gather_neighbours(h, neighbours).sum(-2)) / (k + 1)

    def forward(self, h: Tensor, neighbours: Tensor) -> Tensor:
        if h.ndim != 3 or h.shape[-1] != self.in_features:
            raise ValueError(f"GCNConv: h must be (batch, n, {self.in_features}), got {tuple(h.shape)}")
        if neighbours.shape[:2] != h.shape[:2]:
            raise ValueError(f"GCNConv: neighbours {tuple(neighbours.shape)} do not match "
                             f"h {tuple(h.shape)} on (batch, n)")
        if self.out_features < self.in_features:
            out = self.propagate(h @ self.weight, neighbours)
        else:
            out = self.propagate(h, neighbours) @ self.weight
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class GCN(nn.Module):
    """A stack of :class:`GCNConv` layers with ReLU between them (none after the last),
    as in Kipf & Welling's two-layer model extended to ``depth`` layers.

    ``(B, n, in_features)`` -> ``(B, n, out_features)``.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, depth: int = 3) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"GCN depth must be >= 1, got {depth}")
        dims = [in_features] + [hidden] * (depth - 1) + [out_features]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, h: Tensor, neighbours: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            h = conv(h, neighbours)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h


def mean_pool(h: Tensor) -> Tensor:
    """Permutation-invariant readout: ``(*batch, n, c) -> (*batch, c)`` mean over points."""
    return h.mean(dim=-2)


def l2_normalize(z: Tensor, eps: float = 1e-12) -> Tensor:
    """``z / max(|z|_2, eps)`` along the last axis."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)
