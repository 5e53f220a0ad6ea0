r"""Neural-operator surrogates of PDE trajectories (Li et al., "Fourier Neural Operator for
Parametric Partial Differential Equations", ICLR 2021) as :class:`SciflowModel`\ s.

Given the first ``H = history`` states :math:`u(t_0), \dots, u(t_{H-1})` (and optionally a forcing
:math:`f(t_i)` on the same grid) the model predicts :math:`u(t_H), \dots, u(t_{T-1})`:

* **one-shot, space–time** (paper Sec. 5.3, "FNO-3D"): one operator
  :math:`\mathcal G_\theta : (t, x) \mapsto u(t, x)` on the space–time grid whose input at every
  :math:`(t_i, x)` is the history stacked as channels, :math:`[u(t_0, x), \dots, u(t_{H-1}, x),
  f(t_i, x), t_i, x]` (the history is broadcast along time, as in the authors' code);
* **one-shot, space only** (paper Sec. 5.1, Burgers ``u0 -> u(t=1)``): an operator on
  :math:`x` whose output channels are the ``horizon`` target steps;
* **autoregressive** (paper Sec. 5.3, "FNO-2D"; the U-Net baseline): a spatial operator
  :math:`u(t_{i+1}) = \mathcal G_\theta(u(t_{i-H+1}), \dots, u(t_i)[, f(t_{i+1})])` applied
  recurrently; training unrolls the whole horizon (``unroll=None``, as the paper) or segments of
  ``unroll`` steps restarted from the data.

Loss (paper Sec. 5, the ``LpLoss`` of the reference code): relative L2 per sample over the
predicted steps in physical units, averaged over the batch,
:math:`\frac1B\sum_b \|\hat u_b - u_b\|_2 / \|u_b\|_2`; or the MSE of normalised states. Deviation:
the authors' time-stepping script sums per-step relative errors; here the error of the whole
predicted trajectory is used for all variants (the quantity reported in the paper's tables).

Inputs are standardised per physical channel with statistics set by :meth:`fit_scaler` (stored
as buffers, so checkpoints reproduce the preprocessing); the paper's Navier–Stokes code uses no
normalisation, its Darcy code a per-point Gaussian normaliser.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.neural_operator.config import Config
from sciflow.models.neural_operator.networks import build_backbone

__all__ = ["NeuralOperator", "relative_l2"]


def relative_l2(pred: Tensor, truth: Tensor, *, reduce: bool = True) -> Tensor:
    r"""Per-sample relative L2 error :math:`\|p_b - y_b\|_2 / \|y_b\|_2` over all axes but the
    first, averaged over samples when ``reduce`` (Li et al. 2021, ``LpLoss`` with ``p = 2``)."""
    if pred.shape != truth.shape:
        raise ValueError(f"relative_l2: prediction shape {tuple(pred.shape)} != truth shape {tuple(truth.shape)}")
    diff = (pred - truth).flatten(1).norm(dim=1)
    ref = truth.flatten(1).norm(dim=1).clamp_min(torch.finfo(truth.dtype).tiny)
    err = diff / ref
    return err.mean() if reduce else err


class NeuralOperator(SciflowModel):
    """FNO / U-Net trajectory surrogate on :class:`~sciflow.data.batches.TrajectoryBatch`.

    ``forward(history, n_steps, condition=None)``: ``history (batch, H, channels, *space)``
    physical units; ``condition (batch, H + n_steps, condition_channels, *space)`` -> predicted
    ``(batch, n_steps, channels, *space)``.
    ``sample(batch, n)``: ``(n, *batch.values.shape)``, the whole trajectory with the given
    history copied in front of the prediction (copies of the deterministic prediction, or
    MC-dropout draws when ``dropout > 0`` and the model is in training mode).
    """

    stochastic: ClassVar[bool] = False
    batch_type: ClassVar[type] = TrajectoryBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Config()
        self.net = build_backbone(cfg)
        self.register_buffer("loc", torch.zeros(cfg.channels))
        self.register_buffer("scale", torch.ones(cfg.channels))
        n_cond = max(cfg.condition_channels, 1)
        self.register_buffer("condition_loc", torch.zeros(n_cond))
        self.register_buffer("condition_scale", torch.ones(n_cond))

    # ------------------------------------------------------------------ layout and scaling
    def _channels_first(self, values: Tensor, channels: int, what: str) -> Tensor:
        """``(batch, time, [channels,] *space) -> (batch, time, channels, *space)``."""
        d = self.cfg.dim
        if values.ndim == 2 + d and channels == 1:
            return values.unsqueeze(2)
        if values.ndim == 3 + d and values.shape[2] == channels:
            return values
        raise ValueError(f"{what} must be (batch, time, {channels}, {d} space axes)"
                         + (f" or (batch, time, {d} space axes)" if channels == 1 else "")
                         + f", got {tuple(values.shape)}")

    def _stats_shape(self, stat: Tensor) -> Tensor:
        return stat.reshape(1, 1, -1, *([1] * self.cfg.dim))

    @torch.no_grad()
    def fit_scaler(self, data: TrajectoryBatch | Tensor, condition: Tensor | None = None) -> None:
        """Per-channel mean and standard deviation of the training trajectories: a
        :class:`TrajectoryBatch` (its ``condition`` is the forcing) or ``values (batch, time,
        [channels,] *space)`` with an optional ``condition`` (the interface of ``WDNO.fit_scaler``)."""
        if isinstance(data, TrajectoryBatch):
            values, condition = data.values, data.condition if condition is None else condition
        else:
            values = data
        v = self._channels_first(values, self.cfg.channels, "values").transpose(0, 2).flatten(1)
        self.loc.copy_(v.mean(1).to(self.loc))
        self.scale.copy_(v.std(1).clamp_min(1e-8).to(self.scale))
        if condition is not None and self.cfg.condition_channels:
            c = self._channels_first(condition, self.cfg.condition_channels, "condition").transpose(0, 2).flatten(1)
            self.condition_loc.copy_(c.mean(1).to(self.condition_loc))
            self.condition_scale.copy_(c.std(1).clamp_min(1e-8).to(self.condition_scale))

    def _normalise(self, u: Tensor) -> Tensor:
        return (u - self._stats_shape(self.loc)) / self._stats_shape(self.scale)

    def _denormalise(self, z: Tensor) -> Tensor:
        return z * self._stats_shape(self.scale) + self._stats_shape(self.loc)

    def _condition(self, condition: Tensor | None, n_time: int) -> Tensor | None:
        cc = self.cfg.condition_channels
        if cc == 0:
            return None
        if condition is None:
            raise ValueError(f"this model has condition_channels={cc}: pass the forcing as TrajectoryBatch.condition")
        c = self._channels_first(condition, cc, "condition")
        if c.shape[1] != n_time:
            raise ValueError(f"condition has {c.shape[1]} time steps, the trajectory {n_time}")
        return (c - self._stats_shape(self.condition_loc)) / self._stats_shape(self.condition_scale)

    # ------------------------------------------------------------------ prediction
    def _one_shot(self, z_hist: Tensor, n_steps: int, cond: Tensor | None) -> Tensor:
        cfg = self.cfg
        B, H, C = z_hist.shape[:3]
        space = z_hist.shape[3:]
        if cfg.space_time:
            hist = z_hist.reshape(B, H * C, 1, *space).expand(B, H * C, n_steps, *space)
            parts = [hist] if cond is None else [hist, cond[:, H:].transpose(1, 2)]
            out = self.net(torch.cat(parts, dim=1))  # (B, C, n_steps, *space)
            return out.transpose(1, 2)
        if n_steps != cfg.horizon:
            raise ValueError(f"this one-shot model predicts horizon={cfg.horizon} steps, the batch asks for {n_steps}")
        parts = [z_hist.reshape(B, H * C, *space)]
        if cond is not None:
            parts.append(cond[:, H:].reshape(B, -1, *space))
        out = self.net(torch.cat(parts, dim=1))  # (B, n_steps * C, *space)
        return out.reshape(B, n_steps, C, *space)

    def _autoregressive(self, z_hist: Tensor, n_steps: int, cond: Tensor | None) -> Tensor:
        B, H, C = z_hist.shape[:3]
        space = z_hist.shape[3:]
        window = z_hist.reshape(B, H * C, *space)
        preds = []
        for k in range(n_steps):
            inp = window if cond is None else torch.cat([window, cond[:, H + k]], dim=1)
            nxt = self.net(inp)  # (B, C, *space)
            preds.append(nxt)
            window = torch.cat([window[:, C:], nxt], dim=1)
        return torch.stack(preds, dim=1)

    def _predict_normalised(self, z_hist: Tensor, n_steps: int, cond: Tensor | None) -> Tensor:
        if self.cfg.rollout == "autoregressive":
            return self._autoregressive(z_hist, n_steps, cond)
        return self._one_shot(z_hist, n_steps, cond)

    def forward(self, history: Tensor, n_steps: int, condition: Tensor | None = None) -> Tensor:
        cfg = self.cfg
        hist = self._channels_first(history, cfg.channels, "history")
        if hist.shape[1] != cfg.history:
            raise ValueError(f"history has {hist.shape[1]} steps, the model was built for history={cfg.history}")
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        cond = self._condition(condition, cfg.history + n_steps)
        return self._denormalise(self._predict_normalised(self._normalise(hist), n_steps, cond))

    def _steps(self, batch: TrajectoryBatch) -> int:
        n_steps = batch.values.shape[1] - self.cfg.history
        if n_steps < 1:
            raise ValueError(f"trajectories of {batch.values.shape[1]} steps leave nothing to predict after "
                             f"history={self.cfg.history}")
        if self.cfg.horizon is not None and n_steps != self.cfg.horizon:
            raise ValueError(f"this model predicts horizon={self.cfg.horizon} steps after history={self.cfg.history}; "
                             f"the batch has {batch.values.shape[1]} time steps")
        return n_steps

    def predict(self, batch: TrajectoryBatch) -> Tensor:
        """The whole trajectory ``batch.values.shape``: given history followed by the prediction."""
        self.check_batch(batch)
        n_steps = self._steps(batch)
        H = self.cfg.history
        pred = self.forward(batch.values[:, :H], n_steps, batch.condition)
        return torch.cat([batch.values[:, :H], pred.reshape(pred.shape[0], n_steps, *batch.values.shape[2:])], dim=1)

    # ------------------------------------------------------------------ protocol
    def _segments(self, z: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Autoregressive training segments of ``unroll`` steps restarted from the data."""
        H, T = self.cfg.history, z.shape[1]
        k = min(int(self.cfg.unroll), T - H)  # type: ignore[arg-type]
        starts = list(range(H, T - k + 1, k))
        if starts[-1] + k < T:
            starts.append(T - k)  # the last segment ends at the final step
        idx = torch.tensor([list(range(s - H, s + k)) for s in starts], device=z.device)  # (S, H + k)
        zz = z[:, idx].flatten(0, 1)  # (B * S, H + k, C, *space)
        cc = None if cond is None else cond[:, idx].flatten(0, 1)
        return zz[:, :H], zz[:, H:], cc

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        self.check_batch(batch)
        cfg = self.cfg
        n_steps = self._steps(batch)
        z = self._normalise(self._channels_first(batch.values, cfg.channels, "values"))
        cond = self._condition(batch.condition, z.shape[1])
        if cfg.rollout == "autoregressive" and cfg.unroll is not None and cfg.unroll < n_steps:
            z_hist, z_target, cond = self._segments(z, cond)  # segments carry their own forcing
            z_pred = self._autoregressive(z_hist, z_target.shape[1], cond)
        else:
            z_hist, z_target = z[:, :cfg.history], z[:, cfg.history:]
            z_pred = self._predict_normalised(z_hist, n_steps, cond)
        mse = (z_pred - z_target).pow(2).mean()
        rel = relative_l2(self._denormalise(z_pred), self._denormalise(z_target))
        total = rel if cfg.loss == "relative_l2" else mse
        return LossOutput(total, {"relative_l2": rel.detach(), "mse": mse.detach()})

    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if self.training and self.cfg.dropout > 0:  # MC dropout: independent masks per draw
            B = batch.batch_size
            big = batch.index(torch.arange(B, device=batch.values.device).repeat(n_samples))
            out = self.predict(big)
            return out.reshape(n_samples, B, *out.shape[1:])
        pred = self.predict(batch)
        return pred.unsqueeze(0).expand(n_samples, *pred.shape)
