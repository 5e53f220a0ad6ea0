"""Configuration of meta flow matching and its two baselines (one frozen dataclass)."""

from __future__ import annotations

import math
from dataclasses import dataclass

CONDITIONINGS = ("population", "none", "population_id")
#: The method each conditioning makes, by its name in the paper.
METHOD_NAMES = {"population": "MFM", "none": "FM", "population_id": "CGFM"}
COUPLINGS = ("paired", "exact", "sinkhorn")
SOLVERS = ("dopri5", "euler", "midpoint", "rk4")


@dataclass(frozen=True)
class Config:
    """Meta flow matching (Atanackovic et al., ICLR 2025) and baselines in one pipeline.

    conditioning: what the vector field ``v_t(x | c)`` is conditioned on —
        ``"population"``: MFM, ``c = phi(p0)`` a GCN embedding of the source population;
        ``"none"``: plain flow matching (FM), one field for all populations;
        ``"population_id"``: conditional generative flow matching (CGFM), ``c`` = one-hot of
        ``PopulationBatch.population_id`` over ``num_populations`` (cannot generalise to ids
        unseen in training: their input weights never receive a gradient).
    Defaults of the encoder/field follow the official letters configuration (k = 50, 3 GCN
    layers of width 64, decoder 4 x 512, 128 sinusoidal time features, 128 Fourier features of
    scale 2 pi x 0.01); the packaged YAMLs shrink them for CPU.
    coupling: how source and target points are paired for the straight paths —
        ``"paired"`` (as given by the data), ``"exact"`` (minibatch OT per population, Hungarian
        assignment on squared distances, on the host), ``"sinkhorn"`` (entropic OT plan on the
        device, a target index drawn for every source point from its row of the plan).
    solver / nfe / rtol / atol: integration of the learned field from t = 0 to 1 in ``sample``:
        adaptive ``"dopri5"`` with tolerances (official code: dopri5, 1e-4), or a fixed-step
        Runge–Kutta method with a budget of ``nfe`` field evaluations.
    """

    dim: int = 2
    conditioning: str = "population"
    num_populations: int = 0  # one-hot size, "population_id" only
    # population encoder phi(p0)
    knn_k: int = 50
    knn_chunk_size: int = 1024
    gnn_hidden: int = 64
    gnn_layers: int = 3
    embedding_dim: int = 64
    # conditional vector field
    field_width: int = 512
    field_depth: int = 4
    activation: str = "silu"
    time_embedding_dim: int = 128
    fourier_features: int = 128
    fourier_scale: float = 2 * math.pi * 0.01
    fourier_seed: int = 0
    # training
    coupling: str = "paired"
    sinkhorn_epsilon: float = 0.05  # relative to the mean squared cost
    sinkhorn_iterations: int = 100
    # sampling
    solver: str = "dopri5"
    nfe: int = 100
    rtol: float = 1e-4
    atol: float = 1e-4

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"Config.dim must be >= 1, got {self.dim}")
        for name, value, allowed in (("conditioning", self.conditioning, CONDITIONINGS),
                                     ("coupling", self.coupling, COUPLINGS),
                                     ("solver", self.solver, SOLVERS)):
            if value not in allowed:
                raise ValueError(f"Config.{name} must be one of {allowed}, got {value!r}")
        if self.conditioning == "population_id" and self.num_populations < 1:
            raise ValueError("Config.conditioning='population_id' needs num_populations >= 1")
        for name in ("knn_k", "knn_chunk_size", "gnn_hidden", "gnn_layers", "embedding_dim",
                     "field_width", "field_depth", "time_embedding_dim", "fourier_features",
                     "sinkhorn_iterations", "nfe"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.time_embedding_dim % 2:
            raise ValueError(f"Config.time_embedding_dim must be even, got {self.time_embedding_dim}")
        for name in ("fourier_scale", "sinkhorn_epsilon", "rtol", "atol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Config.{name} must be > 0, got {getattr(self, name)}")
