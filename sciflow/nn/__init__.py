"""Shared neural-network layers. Imports nothing else of sciflow.

MLPs (plain, modified, weight-factorised), input embeddings (Fourier features, exact periodic),
graph layers (k-NN graph, GCN), wavelet transforms (DWT/IDWT on PyWavelets filter banks),
the diffusion U-Net and the Fourier neural operator.
"""

from sciflow.nn.factorized import FactorizedLinear, dense
from sciflow.nn.fno import FNO, FNO1d, FNO2d, FNO3d, SpectralConv
from sciflow.nn.fourier import FourierFeatures, PeriodicEmbedding
from sciflow.nn.gnn import GCN, GCNConv, gather_neighbours, knn_graph, l2_normalize, mean_pool
from sciflow.nn.mlp import MLP, activation
from sciflow.nn.modified_mlp import ModifiedMLP
from sciflow.nn.unet import UNet, sinusoidal_embedding
from sciflow.nn.wavelets import DWT, IDWT, FilterBank, dwt, dwtn, idwt, idwtn, wavedecn, waverecn

__all__ = [
    "MLP", "activation", "ModifiedMLP", "FactorizedLinear", "dense", "FourierFeatures",
    "PeriodicEmbedding", "GCN", "GCNConv", "gather_neighbours", "knn_graph", "l2_normalize",
    "mean_pool", "DWT", "IDWT", "FilterBank", "dwt", "dwtn", "idwt", "idwtn", "wavedecn",
    "waverecn", "UNet", "sinusoidal_embedding", "FNO", "FNO1d", "FNO2d", "FNO3d", "SpectralConv",
]
