"""k-NN graph (exactness, chunked memory bound), GCN normalisation and invariances."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sciflow.nn.gnn import GCN, GCNConv, gather_neighbours, knn_graph, l2_normalize, mean_pool


def _brute_force_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    d = ((x[..., :, None, :] - x[..., None, :, :]) ** 2).sum(-1)
    d.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return d.topk(k, dim=-1, largest=False).indices


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_knn_equals_brute_force(chunk_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 97, 3, generator=g, dtype=torch.float64)
    nb = knn_graph(x, 6, chunk_size=chunk_size)
    assert nb.shape == (3, 97, 6) and nb.dtype == torch.long
    assert torch.equal(nb, _brute_force_knn(x, 6))
    # nearest first and never the point itself
    assert not (nb == torch.arange(97)[None, :, None]).any()


def test_knn_loop_and_batch_shapes():
    x = torch.randn(2, 4, 30, 2, generator=torch.Generator().manual_seed(1))
    nb = knn_graph(x, 5, loop=True, chunk_size=8)
    assert nb.shape == (2, 4, 30, 5)
    assert torch.equal(nb[..., 0], torch.arange(30).expand(2, 4, 30))


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.max_numel = max(self.max_numel, o.numel())
        return out


def test_chunked_knn_bounds_memory():
    n, k, chunk = 2000, 8, 64
    x = torch.randn(1, n, 2, generator=torch.Generator().manual_seed(2))
    with _LargestTensor() as probe:
        nb = knn_graph(x, k, chunk_size=chunk)
    # no intermediate larger than one (chunk x n) distance block, far below n^2
    assert probe.max_numel <= chunk * n
    assert probe.max_numel < n * n / 20
    # and it is still exact: spot-check 50 rows against brute force on those rows
    rows = torch.arange(0, n, 40)
    d = ((x[0, rows, None, :] - x[0, None, :, :]) ** 2).sum(-1)
    d[torch.arange(len(rows)), rows] = float("inf")
    assert torch.equal(nb[0, rows], d.topk(k, largest=False).indices)


def test_knn_errors():
    x = torch.randn(2, 5, 2)
    with pytest.raises(ValueError, match="k <= 4"):
        knn_graph(x, 5)
    with pytest.raises(ValueError, match=r"\(\*batch, n, dim\)"):
        knn_graph(torch.randn(5), 2)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_graph(x, 2, chunk_size=0)


def test_gcnconv_matches_dense_kipf_welling():
    """Against D^-1/2 (A + I) D^-1/2 H W + b built densely from the neighbour table."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 40, 2, generator=g, dtype=torch.float64)
    h = torch.randn(2, 40, 5, generator=g, dtype=torch.float64)
    nb = knn_graph(x, 4)
    for fin, fout in ((5, 3), (5, 8)):  # both linear-first and aggregate-first orders
        conv = GCNConv(fin, fout).double()
        with torch.no_grad():
            conv.bias.normal_(generator=g)
        for b in range(2):
            A = torch.zeros(40, 40, dtype=torch.float64)
            A[torch.arange(40).repeat_interleave(4), nb[b].reshape(-1)] = 1.0  # row i <- nbrs
            A_hat = A + torch.eye(40, dtype=torch.float64)
            d = A_hat.sum(1)  # in-degree of A + I
            norm = A_hat / torch.sqrt(d[:, None] * d[None, :])
            ref = norm @ h[b] @ conv.weight + conv.bias
            torch.testing.assert_close(conv(h, nb)[b], ref)


def test_gather_neighbours():
    h = torch.arange(12.0).view(2, 3, 2)
    nb = torch.tensor([[[1], [2], [0]], [[2], [0], [1]]])
    out = gather_neighbours(h, nb)
    assert torch.equal(out[0, :, 0], h[0, [1, 2, 0]])
    assert torch.equal(out[1, :, 0], h[1, [2, 0, 1]])


def test_pooled_gcn_embedding_is_permutation_invariant():
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(0)
    x = torch.randn(2, 64, 2, generator=g, dtype=torch.float64)
    gcn = GCN(2, 16, 8, depth=3).double()

    def embed(p):
        return l2_normalize(mean_pool(gcn(p, knn_graph(p, 6))))

    perm = torch.randperm(64, generator=g)
    z, zp = embed(x), embed(x[:, perm])
    torch.testing.assert_close(z, zp)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2, dtype=torch.float64))
    # ... but not invariant to moving the points: different populations, different embeddings
    # (a pure rescaling would not do: with zero biases ReLU-GCN + L2 norm is scale invariant)
    assert (embed(x + 0.5) - z).abs().max() > 1e-3
    # node features are permutation-equivariant
    nb = knn_graph(x, 6)
    torch.testing.assert_close(gcn(x, nb)[:, perm], gcn(x[:, perm], knn_graph(x[:, perm], 6)))


def test_gcn_gradients_reach_all_parameters_and_points():
    x = torch.randn(2, 30, 2, requires_grad=True)
    gcn = GCN(2, 8, 4, depth=3)
    l2_normalize(mean_pool(gcn(x, knn_graph(x, 5)))).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in gcn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gcnconv_shape_errors():
    conv = GCNConv(3, 4)
    with pytest.raises(ValueError, match="h must be"):
        conv(torch.randn(2, 10, 2), torch.zeros(2, 10, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="do not match"):
        conv(torch.randn(2, 10, 3), torch.zeros(2, 9, 3, dtype=torch.long))
