"""Neural ordinary differential equations (Chen, Rubanova, Bettencourt & Duvenaud, NeurIPS 2018).

The state follows ``dy/dt = f_θ(t, y)`` (eq. 1 of the paper) with ``f_θ`` an MLP; a forecast
from ``y(t_0)`` is ``y(t) = y(t_0) + ∫ f_θ`` computed by a shared sciflow solver, and training
minimises the trajectory mean squared error in normalised units

    L(θ) = 1/(B T D) Σ_b Σ_i ‖ z_θ(t_i; z_b(t_0)) − z_b(t_i) ‖²,   z = (y − loc) / scale,

which makes the loss comparable across state variables of different magnitude (Lorenz-63's
``z`` sits near 25, ``x`` near 0). ``loc``/``scale`` are buffers (saved in checkpoints), set from
the training data with :meth:`NeuralODE.fit_scaler`.

Deviation from the paper: the paper fits latent ODEs with a VAE for irregular data; this is the
plain "ODE-Net" regression of observed states, which is what a physical-dynamics user usually
wants for a fully observed system. Gradients default to direct backpropagation through the
solver (exact for the computed solution, fastest for short windows); the paper's continuous
adjoint is ``adjoint="backsolve"`` (``"backsolve-seminorm"``: with Kidger, Chen & Lyons' 2021
seminorm for the backward step control).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.neural_ode.config import Config
from sciflow.nn.mlp import MLP
from sciflow.solvers.ode import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, odeint
from sciflow.solvers.registry import SOLVERS


class VectorField(nn.Module):
    """``f_θ(t, z)``: an MLP on ``z`` (and ``t`` if time-dependent), acting on the last axis."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.time_dependent = cfg.time_dependent
        self.net = MLP(cfg.state_dim + int(cfg.time_dependent), cfg.state_dim, width=cfg.width,
                       depth=cfg.depth, activation_name=cfg.activation, dropout=cfg.dropout)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if self.time_dependent:
            z = torch.cat([z, t.to(z).expand(*z.shape[:-1], 1)], dim=-1)
        return self.net(z)


class NeuralODE(SciflowModel):
    """Neural ODE forecaster on :class:`~sciflow.data.batches.TrajectoryBatch`.

    ``forward(y0, times)``: ``y0 (batch, *state)``, ``times (time,)`` or ``(batch, time)`` with
    ``times[..., 0]`` the time of ``y0`` -> ``(batch, time, *state)``.
    ``loss(batch)``: forecast every window from its first value, MSE in normalised units.
    ``sample(batch, n)``: ``(n, batch, time, *state)``; copies of the forecast, or MC-dropout
    draws when ``dropout > 0`` and the module is in training mode.
    """

    stochastic: ClassVar[bool] = False
    batch_type: ClassVar[type] = TrajectoryBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config | None = None, *, solver: object | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Config()
        self.field = VectorField(cfg)
        self.solver = solver if solver is not None else SOLVERS[cfg.solver]()
        # adaptive solvers (embedded error estimate) use rtol/atol; fixed-step ones use dt
        self.adaptive = bool(getattr(self.solver, "adaptive", False))
        self.register_buffer("loc", torch.zeros(cfg.state_dim))
        self.register_buffer("scale", torch.ones(cfg.state_dim))

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_scaler(self, batch: TrajectoryBatch | Tensor) -> None:
        """Per-component mean and standard deviation over all leading axes of the training
        trajectories: a :class:`TrajectoryBatch` or its ``values (..., *state)``."""
        values = batch.values if isinstance(batch, TrajectoryBatch) else batch
        if values.shape[-1] != self.cfg.state_dim:
            raise ValueError(f"fit_scaler: values have {values.shape[-1]} state components, "
                             f"the model has state_dim={self.cfg.state_dim}")
        if not bool(torch.isfinite(values).all()):
            raise ValueError("fit_scaler: training values contain NaN or infinite entries")
        flat = values.reshape(-1, self.cfg.state_dim)
        self.loc.copy_(flat.mean(0).to(self.loc))
        self.scale.copy_(flat.std(0).clamp_min(1e-8).to(self.scale))

    def _normalise(self, y: Tensor) -> Tensor:
        return (y - self.loc) / self.scale

    def _denormalise(self, z: Tensor) -> Tensor:
        return z * self.scale + self.loc

    # ------------------------------------------------------------------ forecast
    def _adjoint(self):
        if self.cfg.adjoint.startswith("backsolve"):
            return BacksolveAdjoint(list(self.field.parameters()), seminorm=self.cfg.adjoint == "backsolve-seminorm")
        return CheckpointAdjoint() if self.cfg.adjoint == "checkpoint" else DirectAdjoint()

    def _dt(self, times: Tensor) -> float | None:
        if self.adaptive:
            return None
        if self.cfg.steps_per_interval == 1:
            return None
        # host read of one scalar per solve: the step size is a solver parameter, not data
        return float(times.diff(dim=-1).min()) / self.cfg.steps_per_interval

    def forward(self, y0: Tensor, times: Tensor) -> Tensor:
        state_shape = y0.shape[1:]
        if int(torch.tensor(state_shape).prod()) != self.cfg.state_dim:
            raise ValueError(f"NeuralODE(state_dim={self.cfg.state_dim}) got states of shape {tuple(state_shape)}")
        if times.ndim not in (1, 2) or times.shape[-1] < 1:
            raise ValueError(f"times must be (time,) or (batch, time), got {tuple(times.shape)}")
        p_dtype = next(self.field.parameters()).dtype
        if y0.dtype != p_dtype:
            raise TypeError(f"NeuralODE: the batch is {y0.dtype} but the model's parameters are {p_dtype}; "
                            f"use batch.to(device, dtype={p_dtype}) or model.to({y0.dtype})")
        z0 = self._normalise(y0.reshape(y0.shape[0], -1))
        t = times.to(z0)
        zs = odeint(self.field, z0, t, solver=self.solver, rtol=self.cfg.rtol, atol=self.cfg.atol,
                    dt=self._dt(t), adjoint=self._adjoint())  # (time, batch, D)
        ys = self._denormalise(zs.movedim(0, 1))
        return ys.reshape(y0.shape[0], t.shape[-1], *state_shape)

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        self.check_batch(batch)
        if batch.values.shape[1] < 2:
            raise ValueError(f"NeuralODE.loss needs trajectories of >= 2 time steps (the first is the initial "
                             f"state), got values of shape {tuple(batch.values.shape)}")
        pred = self.forward(batch.values[:, 0], batch.times)
        err = (self._normalise(pred.flatten(2)) - self._normalise(batch.values.flatten(2)))[:, 1:]
        mse = err.pow(2).mean()
        return LossOutput(mse, {"mse": mse.detach()})

    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        y0 = batch.values[:, 0]
        if self.training and self.cfg.dropout > 0:  # MC dropout: independent masks per copy
            B = y0.shape[0]
            times = batch.times if batch.times.ndim == 1 else batch.times.repeat(n_samples, 1)
            out = self.forward(y0.repeat(n_samples, *([1] * (y0.ndim - 1))), times)
            return out.reshape(n_samples, B, *out.shape[1:])
        pred = self.forward(y0, batch.times)
        return pred.unsqueeze(0).expand(n_samples, *pred.shape)
