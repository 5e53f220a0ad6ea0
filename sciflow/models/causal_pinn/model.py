"""The causal PINN model: ``loss(CollocationBatch) -> LossOutput`` and ``sample``.

Total loss (Wang, Sankaran & Perdikaris 2022, Algorithm 1; jaxpi's weighting):

    L = lambda_ic L_ic + lambda_bc L_bc + lambda_res (1/N_t) sum_i w_i L_r(t_i)

with ``L_r(t_i)`` the mean squared residual of the i-th chunk of the time-sorted collocation
points and ``w_i`` the detached causal weights of :mod:`.causal`. ``causal=False`` gives the plain
PINN, ``lambda_res mean(r^2)``. The lambdas live in the buffer ``loss_weights`` so that
:class:`~.balancing.GradNormBalancer` can update them in place.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from torch import Tensor

from sciflow.data.batches import CollocationBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.causal_pinn.causal import causal_weights, chunk_losses, sort_by_time
from sciflow.models.causal_pinn.config import Config
from sciflow.models.causal_pinn.derivatives import ENGINES
from sciflow.models.causal_pinn.network import make_network
from sciflow.models.causal_pinn.problems import PROBLEMS, Problem, make_problem


class CausalPINN(SciflowModel):
    """A physics-informed network for one :class:`Problem`, trained causally.

    ``sample`` is deterministic: it returns ``n_samples`` copies of the point prediction
    ``u(batch.interior)`` with shape ``(n_samples, N, channels)`` (the protocol's convention for
    deterministic models); uncertainty comes from ensembles over seeds
    (:func:`~sciflow.models.causal_pinn.evaluate.seed_ensemble`).
    """

    stochastic: ClassVar[bool] = False
    batch_type: ClassVar[type] = CollocationBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config = Config(), problem: Problem | None = None) -> None:
        super().__init__()
        if cfg.problem not in PROBLEMS and problem is None:
            raise ValueError(f"unknown problem {cfg.problem!r}; known: {sorted(PROBLEMS)}")
        self.cfg = cfg
        problem = problem if problem is not None else make_problem(cfg.problem, cfg.t_final)
        # (input axis, lo, hi) of the periodic axes imposed by soft loss terms (Raissi et al.)
        self.periodic_loss_axes: tuple[tuple[int, float, float], ...] = ()
        if not cfg.periodic_embedding and any(problem.periodic):
            if cfg.periodic_bc_loss:
                self.periodic_loss_axes = tuple((1 + i, float(lo), float(hi)) for i, ((lo, hi), p)
                                                in enumerate(zip(problem.space_bounds, problem.periodic)) if p)
            elif problem.boundary_value is None:
                raise ValueError(f"{problem.name} is periodic: use periodic_embedding=True or "
                                 f"periodic_bc_loss=True (periodicity as soft loss terms)")
            else:
                # e.g. Burgers: the same solution posed with its Dirichlet data on every boundary
                problem = replace(problem, periodic=tuple(False for _ in problem.periodic))
        self.problem = problem
        engine = cfg.derivative_engine
        if engine == "auto":
            # measured (CPU time per Adam step, one thread): Taylor mode is ~3.4x faster than
            # nested autograd for the KS 4th derivative; for second-order problems it is
            # 1.1-1.25x faster with the modified MLP (whose gates make the double-backward graph
            # large; Allen–Cahn, widths 64/128, 1024-2048 points) and on par or slower
            # (0.85-1.0x) with the plain MLP, where nested autograd is kept
            order = max(o for _, o in problem.derivatives)
            # (before fused Adam); with cfg.compile only Taylor mode compiles (no double backward)
            engine = "taylor" if order >= 3 or cfg.architecture == "modified_mlp" or cfg.compile \
                else "autograd"
        if engine not in ENGINES:
            raise ValueError(f"unknown derivative_engine {engine!r}; known: {sorted(ENGINES)} or 'auto'")
        self.engine = ENGINES[engine]()
        g = torch.Generator().manual_seed(cfg.seed)
        self.net = make_network(cfg, self.problem, generator=g,
                                hard_ic=None if self.problem.hard_ic is None
                                else torch.tensor(self.problem.hard_ic))
        self.register_buffer("loss_weights", torch.tensor([cfg.lambda_ic, cfg.lambda_bc, cfg.lambda_res]))
        self.epsilon = float(cfg.epsilon)
        self.last_weights: Tensor | None = None  # detached causal weights of the last loss call

    def forward(self, points: Tensor) -> Tensor:
        """``u(points)``: ``(N, dim) -> (N, channels)``."""
        return self.net(points)

    def residual(self, points: Tensor) -> Tensor:
        """PDE residuals ``(N, n_equations)`` at ``points``."""
        derivs = self.engine(self.net, points, self.problem.derivatives)
        return self.problem.residual(derivs)

    def loss(self, batch: CollocationBatch) -> LossOutput:
        self.check_batch(batch)
        cfg = self.cfg
        lam = self.loss_weights.clone()  # the balancer updates the buffer in place
        zero = batch.interior.new_zeros(())
        l_ic = zero
        if batch.initial is not None and batch.initial_values is not None:
            l_ic = (self.net(batch.initial) - batch.initial_values).pow(2).mean()
        l_bc = zero
        has_bc = batch.boundary is not None and batch.boundary_values is not None
        if has_bc:
            l_bc = (self.net(batch.boundary) - batch.boundary_values).pow(2).mean()
        if self.periodic_loss_axes:
            l_bc = l_bc + self.periodic_bc_loss(batch.interior)
            has_bc = True
        r2 = self.residual(sort_by_time(batch.interior)).pow(2).sum(dim=1)  # (N,)
        l_res = r2.mean()
        terms = {"ic": l_ic.detach(), "bc": l_bc.detach(), "residual": l_res.detach()}
        if cfg.causal:
            losses = chunk_losses(r2, cfg.n_chunks)
            w = causal_weights(losses, self.epsilon,
                               lam[0] * l_ic if (cfg.ic_in_weights and batch.initial is not None) else None)
            l_r = (w * losses).mean()
            self.last_weights = w
            terms["causal_residual"] = l_r.detach()
            terms["w_min"] = w.min()
        else:
            l_r = l_res
        total = lam[0] * l_ic + lam[1] * l_bc + lam[2] * l_r
        self._parts = (l_ic if batch.initial is not None else None,
                       l_bc if has_bc else None, l_r)
        return LossOutput(total, terms)

    def periodic_bc_loss(self, interior: Tensor) -> Tensor:
        """Periodicity as soft constraints (Raissi, Perdikaris & Karniadakis 2019, the continuous
        Allen–Cahn/Schrödinger setups): for each periodic axis ``a`` on ``[lo, hi]``,
        ``mean (u|_{x_a=lo} - u|_{x_a=hi})^2 + mean (d_a u|_{x_a=lo} - d_a u|_{x_a=hi})^2`` at
        ``cfg.n_boundary`` of the interior points (an even stride through them, so the times stay
        spread over the window whether or not the batch is sorted) moved onto both faces."""
        n = interior.shape[0]
        stride = max(1, n // max(1, self.cfg.n_boundary))
        base = interior[::stride][: self.cfg.n_boundary]
        out = interior.new_zeros(())
        for axis, lo, hi in self.periodic_loss_axes:
            faces = base.repeat(2, 1)
            faces[: base.shape[0], axis] = lo
            faces[base.shape[0]:, axis] = hi
            d = self.engine(self.net, faces, ((axis, 1),))
            u, du = d.value.chunk(2), d.d(axis, 1).chunk(2)
            out = out + (u[0] - u[1]).pow(2).mean() + (du[0] - du[1]).pow(2).mean()
        return out

    def loss_parts(self) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """The unweighted ``(ic, bc, residual)`` terms of the last :meth:`loss` call (with graph),
        for gradient-norm balancing."""
        return self._parts

    @torch.no_grad()
    def sample(self, batch: CollocationBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        u = self.net(batch.interior)
        return u.unsqueeze(0).expand(n_samples, *u.shape).clone()

    @torch.no_grad()
    def predict(self, points: Tensor, chunk: int = 65536) -> Tensor:
        """Point prediction at many points, in chunks: ``(N, dim) -> (N, channels)``."""
        return torch.cat([self.net(points[i:i + chunk]) for i in range(0, points.shape[0], chunk)])
