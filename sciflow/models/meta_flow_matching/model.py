"""Meta flow matching: flow matching conditioned on an embedding of the initial population.

Atanackovic, Zhang, Amos, Blanchette, Lee, Bengio, Tong & Neklyudov, "Meta Flow Matching:
Integrating Vector Fields on the Wasserstein Manifold", ICLR 2025 (arXiv 2408.14608).

A population ``p0`` (a point cloud) evolves into ``p1``. MFM learns one vector field
``v_t(x | phi(p0))`` for all populations, where ``phi`` is a GNN embedding of ``p0``
(:class:`~.conditioning.PopulationEncoder`), by the conditional flow-matching objective on
straight paths (paper eq. 12, Algorithm 1)::

    L(theta, omega) = E_{p0, (x0, x1) ~ pi(p0, p1), t ~ U[0,1]}
                      || v_t((1 - t) x0 + t x1 | phi_omega(p0); theta) - (x1 - x0) ||^2

with the encoder ``omega`` and the field ``theta`` trained jointly, as Algorithm 1 states.
Deviations, each deliberate:
- The official code alternates optimiser steps between the field (with a cached, detached
  embedding) and the GNN; we differentiate the joint loss in one backward pass, so any
  optimiser/trainer works unchanged.
- The official code minimises ``|v|^2 - 2 v.u`` (same gradient, offset by ``-|u|^2``); we use
  ``|v - u|^2`` so the loss is zero exactly when the field equals the path velocity.
Prediction integrates ``dx/dt = v_t(x | phi(p0))`` from the source population at t = 0 to
t = 1 (adaptive dopri5 or a fixed-step method with an NFE budget).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sciflow.data.batches import PopulationBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.meta_flow_matching._flow_ode import integrate_flow
from sciflow.models.meta_flow_matching.config import Config
from sciflow.models.meta_flow_matching.conditioning import (NoConditioning, PopulationEncoder,
                                                           PopulationIdOneHot)
from sciflow.models.meta_flow_matching.coupling import exact_ot_pairing, sinkhorn_pairing
from sciflow.models.meta_flow_matching.field import ConditionalVectorField


def _build_conditioner(cfg: Config) -> torch.nn.Module:
    if cfg.conditioning == "population":
        return PopulationEncoder(cfg.dim, cfg.gnn_hidden, cfg.embedding_dim, cfg.gnn_layers,
                                 cfg.knn_k, cfg.knn_chunk_size)
    if cfg.conditioning == "population_id":
        return PopulationIdOneHot(cfg.num_populations)
    return NoConditioning()


class MetaFlowMatching(SciflowModel):
    """MFM (``conditioning="population"``) and its FM / CGFM baselines, one pipeline.

    ``loss(PopulationBatch) -> LossOutput`` with ``source, target: (batch, n, dim)``;
    ``sample(PopulationBatch, n_samples) -> (n_samples, batch, n, dim)``: the source population
    pushed through the learned flow. The flow is deterministic given the source population, so
    ``stochastic = False`` and the ``n_samples`` copies are one prediction expanded (no copy).
    """

    stochastic: ClassVar[bool] = False
    batch_type: ClassVar[type] = PopulationBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.conditioner = _build_conditioner(cfg)
        self.field = ConditionalVectorField(
            cfg.dim, self.conditioner.out_features, width=cfg.field_width, depth=cfg.field_depth,
            activation=cfg.activation, time_embedding_dim=cfg.time_embedding_dim,
            fourier_features=cfg.fourier_features, fourier_scale=cfg.fourier_scale,
            fourier_seed=cfg.fourier_seed)

    # ------------------------------------------------------------------ checks
    def _check(self, batch: PopulationBatch, need_target: bool) -> None:
        self.check_batch(batch)
        if batch.source.shape[-1] != self.cfg.dim:
            raise ValueError(f"{type(self).__name__}: source has dim {batch.source.shape[-1]}, "
                             f"Config.dim is {self.cfg.dim}")
        if need_target:
            if batch.target is None:
                raise ValueError(f"{type(self).__name__}.loss needs PopulationBatch.target")
            if batch.target.shape != batch.source.shape:
                raise ValueError(f"{type(self).__name__}.loss pairs points: target "
                                 f"{tuple(batch.target.shape)} must match source {tuple(batch.source.shape)}")

    # ------------------------------------------------------------------ pieces
    def condition(self, batch: PopulationBatch) -> Tensor:
        """``(batch, cond)``: phi(p0) for MFM, the one-hot id for CGFM, empty for FM."""
        return self.conditioner.condition(batch)

    def velocity(self, t: Tensor | float, x: Tensor, c: Tensor) -> Tensor:
        """``v_t(x | c)``: ``x (batch, n, dim)``, ``c (batch, cond)`` -> ``(batch, n, dim)``."""
        return self.field(t, x, c)

    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Partner of every source point under ``Config.coupling`` (see :mod:`.coupling`)."""
        if self.cfg.coupling == "exact":
            return exact_ot_pairing(x0, x1)
        if self.cfg.coupling == "sinkhorn":
            return sinkhorn_pairing(x0, x1, epsilon=self.cfg.sinkhorn_epsilon,
                                    iterations=self.cfg.sinkhorn_iterations, generator=generator)
        return x1

    # ------------------------------------------------------------------ protocol
    def loss(self, batch: PopulationBatch, *, generator: torch.Generator | None = None) -> LossOutput:
        """Flow-matching loss on straight paths, averaged over populations and points.

        ``t ~ U[0, 1]`` independently per point (drawn with ``generator``);
        ``x_t = (1 - t) x0 + t x1``, target velocity ``u = x1 - x0``;
        ``L = mean_{b, i} |v_t(x_t | c_b) - u|^2`` (sum over ``dim``).
        """
        self._check(batch, need_target=True)
        x0 = batch.source
        x1 = self.pair(x0, batch.target, generator)
        c = self.condition(batch)
        t = torch.rand(x0.shape[:-1], generator=generator, device=x0.device, dtype=x0.dtype)
        xt = x0 + t[..., None] * (x1 - x0)
        v = self.velocity(t, xt, c)
        fm = ((v - (x1 - x0)) ** 2).sum(-1).mean()
        return LossOutput(total=fm, terms={"flow_matching": fm.detach()})

    @torch.no_grad()
    def transport(self, batch: PopulationBatch, *, solver: str | None = None, nfe: int | None = None,
                  rtol: float | None = None, atol: float | None = None,
                  times: Tensor | None = None, condition: Tensor | None = None) -> tuple[Tensor, dict]:
        """Push ``batch.source`` through the flow from t = 0 to 1.

        Returns ``(x, stats)``: ``x`` is ``(batch, n, dim)`` at t = 1, or ``(time, batch, n, dim)``
        at ``times`` when given; ``stats`` has the number of field evaluations ``nfe``.
        The condition is computed once (one GNN pass), then only the field is evaluated.
        ``condition (batch, cond)`` replaces it when given: a cached embedding, one computed from
        a subsample of a very large population, or (as a diagnostic) another population's.
        """
        self._check(batch, need_target=False)
        cfg = self.cfg
        c = self.condition(batch) if condition is None else condition
        if c.shape != (batch.source.shape[0], self.field.cond_features):
            raise ValueError(f"transport: condition must be ({batch.source.shape[0]}, "
                             f"{self.field.cond_features}), got {tuple(c.shape)}")
        return integrate_flow(lambda t, x: self.velocity(t, x, c), batch.source,
                              solver=solver or cfg.solver, nfe=nfe or cfg.nfe,
                              rtol=rtol or cfg.rtol, atol=atol or cfg.atol, times=times)

    @torch.no_grad()
    def sample(self, batch: PopulationBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        """Predicted target populations ``(n_samples, batch, n, dim)`` (deterministic flow;
        ``generator`` is unused and accepted for the protocol)."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        x1, _ = self.transport(batch)
        return x1.unsqueeze(0).expand(n_samples, *x1.shape)
