r"""Gaussian heads for point models and the heteroscedastic losses that train them.

A point network :math:`f_\theta` becomes a heteroscedastic Gaussian predictor by emitting a mean and
a variance, :math:`p(y\mid x)=\mathcal N(\mu_\theta(x), \sigma^2_\theta(x))`, trained by the
Gaussian NLL (Nix & Weigend 1994; Lakshminarayanan et al. 2017, eq. 1) or by β-NLL (Seitzer et
al. 2022, eq. 4), which multiplies each point's NLL by the stop-gradient factor
:math:`\operatorname{sg}(\sigma^{2\beta})` so that badly fitted high-variance points still pull
on the mean (β = 0 is the NLL, β = 1 gives the MSE gradient for the mean).

:class:`PointForecaster` and :class:`GaussianForecaster` wrap any ``nn.Module`` mapping a flat
state to a flat forecast into a :class:`~sciflow.models.base.SciflowModel` on
:class:`~sciflow.data.batches.TrajectoryBatch`: the input is the first state ``values[:, 0]`` and
the prediction is the rest ``values[:, 1:]`` (``(batch, horizon, *state)``). A regression
``x -> y`` is the special case ``values = stack([x, y], 1)`` with ``horizon = 1``.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor, nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel


def _check_shapes(mean: Tensor, var: Tensor, y: Tensor) -> None:
    if not (mean.shape == var.shape == y.shape):
        raise ValueError(f"mean, var and y must share one shape, got {tuple(mean.shape)}, {tuple(var.shape)} and "
                         f"{tuple(y.shape)}")


def gaussian_nll_loss(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    r"""Mean Gaussian NLL :math:`\tfrac12[\log\sigma^2 + (y-\mu)^2/\sigma^2]` (constant dropped).

    A training loss: shapes are checked (free), the sign of ``var`` is not (a host sync per step);
    the heads produce ``var`` through a softplus."""
    _check_shapes(mean, var, y)
    return 0.5 * (torch.log(var) + (y - mean) ** 2 / var).mean()


def beta_nll_loss(mean: Tensor, var: Tensor, y: Tensor, beta: float = 0.5) -> Tensor:
    r"""β-NLL (Seitzer et al. 2022, eq. 4): :math:`\operatorname{mean}\big(\operatorname{sg}(\sigma^{2\beta})
    \cdot \tfrac12[\log\sigma^2 + (y-\mu)^2/\sigma^2]\big)`; ``beta=0`` is the plain NLL."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    _check_shapes(mean, var, y)
    nll = 0.5 * (torch.log(var) + (y - mean) ** 2 / var)
    if beta > 0:
        nll = nll * var.detach() ** beta
    return nll.mean()


class GaussianHead(nn.Module):
    r"""Split features ``(..., 2k)`` into a mean ``(..., k)`` and a variance
    :math:`\operatorname{softplus}(r) + \sigma^2_{\min}` ``(..., k)``."""

    def __init__(self, min_variance: float = 1e-6) -> None:
        super().__init__()
        if min_variance < 0:
            raise ValueError(f"min_variance must be >= 0, got {min_variance}")
        self.min_variance = min_variance

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        if features.shape[-1] % 2:
            raise ValueError(f"GaussianHead needs an even last axis (mean, variance), got {features.shape[-1]}")
        mean, raw = features.chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw) + self.min_variance


class GaussianPredictive(abc.ABC):
    """Marker for models whose predictive distribution is Gaussian with known moments.

    Ensembles and MC dropout use :meth:`predict_mean_var` to form exact mixture moments instead
    of estimating them from samples.
    """

    @abc.abstractmethod
    def predict_mean_var(self, batch: TrajectoryBatch) -> tuple[Tensor, Tensor]:
        """Mean and variance, each ``(batch, *prediction)``."""


class _Forecaster(SciflowModel):
    batch_type: ClassVar[type] = TrajectoryBatch

    def __init__(self, net: nn.Module, horizon: int, out_factor: int) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.net, self.horizon, self._k = net, horizon, out_factor

    def _raw(self, batch: TrajectoryBatch) -> Tensor:
        self.check_batch(batch)
        if batch.values.shape[1] not in (1, self.horizon + 1):
            raise ValueError(f"{type(self).__name__} has horizon {self.horizon}: values need "
                             f"{self.horizon + 1} time steps (or 1 for input only), got {batch.values.shape[1]}")
        x0 = batch.values[:, 0]
        state = x0.shape[1:]
        out = self.net(x0.reshape(x0.shape[0], -1))
        return out.reshape(x0.shape[0], self._k, self.horizon, *state)

    def _target(self, batch: TrajectoryBatch) -> Tensor:
        if batch.values.shape[1] != self.horizon + 1:
            raise ValueError(f"loss needs values with {self.horizon + 1} time steps, got {batch.values.shape[1]}")
        return batch.values[:, 1:]


class PointForecaster(_Forecaster):
    """Deterministic map ``values[:, 0] -> values[:, 1:]`` trained by MSE.

    ``net``: ``(batch, prod(state)) -> (batch, horizon * prod(state))``. ``sample`` returns
    ``n_samples`` copies of the prediction (dropout layers, if active, make them differ).
    """

    stochastic: ClassVar[bool] = False

    def __init__(self, net: nn.Module, horizon: int = 1) -> None:
        super().__init__(net, horizon, 1)

    def forward(self, batch: TrajectoryBatch) -> Tensor:
        return self._raw(batch)[:, 0]

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        mse = ((self(batch) - self._target(batch)) ** 2).mean()
        return LossOutput(mse, {"mse": mse.detach()})

    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        pred = self(batch)
        return pred.unsqueeze(0).expand(n_samples, *pred.shape)


class GaussianForecaster(_Forecaster, GaussianPredictive):
    r"""Heteroscedastic Gaussian map ``values[:, 0] -> N(mu, sigma^2)`` over ``values[:, 1:]``.

    ``net``: ``(batch, prod(state)) -> (batch, 2 * horizon * prod(state))`` (means then raw
    variances); trained with β-NLL (``beta=0``: NLL). ``sample`` draws from the Gaussian.
    """

    stochastic: ClassVar[bool] = True

    def __init__(self, net: nn.Module, horizon: int = 1, beta: float = 0.5,
                 min_variance: float = 1e-6) -> None:
        super().__init__(net, horizon, 2)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta, self.min_variance = beta, min_variance

    def predict_mean_var(self, batch: TrajectoryBatch) -> tuple[Tensor, Tensor]:
        raw = self._raw(batch)
        return raw[:, 0], nn.functional.softplus(raw[:, 1]) + self.min_variance

    def forward(self, batch: TrajectoryBatch) -> Tensor:
        return self.predict_mean_var(batch)[0]

    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        mean, var = self.predict_mean_var(batch)
        y = self._target(batch)
        total = beta_nll_loss(mean, var, y, self.beta)
        return LossOutput(total, {"nll": gaussian_nll_loss(mean, var, y).detach(),
                                  "mse": ((mean - y) ** 2).mean().detach()})

    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        mean, var = self.predict_mean_var(batch)
        eps = torch.randn((n_samples, *mean.shape), generator=generator, dtype=mean.dtype,
                          device=mean.device if generator is None else generator.device).to(mean.device)
        return mean + var.sqrt() * eps
