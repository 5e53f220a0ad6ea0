"""Shared neural-network layers. Imports nothing else of sciflow."""

from sciflow.nn.mlp import MLP, activation

__all__ = ["MLP", "activation"]
from sciflow.nn.gnn import GCN, GCNConv, gather_neighbours, knn_graph, l2_normalize, mean_pool  # noqa: E402

__all__ += ["GCN", "GCNConv", "gather_neighbours", "knn_graph", "l2_normalize", "mean_pool"]
from sciflow.nn.factorized import FactorizedLinear, dense  # noqa: E402
from sciflow.nn.fourier import FourierFeatures, PeriodicEmbedding  # noqa: E402
from sciflow.nn.modified_mlp import ModifiedMLP  # noqa: E402

__all__ += ["FactorizedLinear", "dense", "FourierFeatures", "PeriodicEmbedding", "ModifiedMLP"]
from sciflow.nn.wavelets import DWT, IDWT, FilterBank, dwt, dwtn, idwt, idwtn, wavedecn, waverecn  # noqa: E402
from sciflow.nn.unet import UNet, sinusoidal_embedding  # noqa: E402
from sciflow.nn.fno import FNO, FNO1d, FNO2d, FNO3d, SpectralConv  # noqa: E402

__all__ += ["DWT", "IDWT", "FilterBank", "dwt", "dwtn", "idwt", "idwtn", "wavedecn", "waverecn"]
__all__ += ["UNet", "sinusoidal_embedding", "FNO", "FNO1d", "FNO2d", "FNO3d", "SpectralConv"]
