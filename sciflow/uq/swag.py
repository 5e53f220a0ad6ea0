r"""SWA-Gaussian (SWAG; Maddox, Izmailov, Garipov, Vetrov & Wilson, NeurIPS 2019, "A simple
baseline for Bayesian uncertainty in deep learning", Sec. 3–4 and Algorithm 1).

From a trained network, SGD at a constant, fairly large learning rate wanders around the basin it
found; SWAG collects the weights :math:`\theta_1, \dots, \theta_T` every ``collect_every`` steps and
fits a Gaussian to them: the stochastic weight average (SWA)
:math:`\bar\theta = \tfrac1T\sum_i\theta_i`, the diagonal
:math:`\Sigma_{\text{diag}} = \operatorname{diag}(\overline{\theta^2} - \bar\theta^2)` and the
low-rank part from the last :math:`K` deviations :math:`\hat D = [\theta_i - \bar\theta_i]`
(:math:`\bar\theta_i` the running mean when :math:`\theta_i` was collected, as in Algorithm 1).
Posterior draws (eq. 3–4 of the paper)

.. math::
    \tilde\theta = \bar\theta + \tfrac{1}{\sqrt 2}\,\Sigma_{\text{diag}}^{1/2} z_1
    + \tfrac{1}{\sqrt{2(K-1)}}\,\hat D z_2,\qquad z_1\sim\mathcal N(0, I_D),\ z_2\sim\mathcal N(0, I_K),

i.e. :math:`\mathcal N\big(\bar\theta, \tfrac12(\Sigma_{\text{diag}} + \hat D\hat D^\top/(K-1))\big)`;
the predictive is the network under ``n_samples`` draws (evaluated together with ``torch.func.vmap``),
plus ``observation_noise`` (a variance) if given — the aleatoric part, fitted on validation as for
the other point-network methods. The network's weights end at :math:`\bar\theta` (the SWA
solution, usually more accurate than the last SGD iterate).

Deviation from the paper: batch-norm statistics are not recomputed for each draw (the
networks here have none; a model with batch norm keeps its running statistics).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from sciflow.models.base import SciflowModel
from sciflow.uq._weights import ModelCall, WeightSpace
from sciflow.uq.base import Predictor, check_alpha, check_point_model, evaluating
from sciflow.uq.prediction import Prediction

__all__ = ["SWAG"]


class SWAG(Predictor):
    """SWAG around a trained :class:`~sciflow.models.base.SciflowModel` (a point model: ``sample``
    returns its prediction). ``rank`` :math:`K` (deviations kept, >= 2), ``n_samples`` weight
    draws per :meth:`predict`, ``observation_noise`` (a variance added to every draw),
    ``frozen``: parameter names held fixed (not trained, not sampled)."""

    def __init__(self, model: SciflowModel, alpha: float = 0.1, *, rank: int = 20, n_samples: int = 30,
                 observation_noise: float = 0.0, frozen: Sequence[str] = ()) -> None:
        check_point_model(model, "SWAG")
        if not isinstance(rank, int) or rank < 2:
            raise ValueError(f"rank must be an integer >= 2, got {rank!r}")
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        if not (math.isfinite(observation_noise) and observation_noise >= 0):
            raise ValueError(f"observation_noise must be a finite variance >= 0, got {observation_noise}")
        self.model, self.alpha, self.rank, self.n_samples = model, check_alpha(alpha), rank, n_samples
        self.observation_noise = observation_noise
        self.weights = WeightSpace(model, frozen, who="SWAG", rows="weight draws")
        self._call = ModelCall(model, False)
        self.mean: Tensor | None = None          # SWA weights (D,)
        self.diag: Tensor | None = None          # Sigma_diag (D,)
        self.deviations: Tensor | None = None    # D-hat (K, D), the last K deviations
        self.n_collected = 0
        self.loss_history: list[float] = []

    def fit(self, batches: Iterable[Any], *, steps: int, lr: float, collect_every: int = 1, momentum: float = 0.0,
            weight_decay: float = 0.0) -> "SWAG":
        """Train on with SGD at the constant rate ``lr`` for ``steps`` steps (cycling over
        ``batches``; the model's loss), collecting the weights after every ``collect_every``-th
        step; at least ``rank`` collections. The model's weights end at the SWA mean."""
        batches = list(batches)
        if not batches:
            raise ValueError("SWAG.fit: no batches")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        if not isinstance(collect_every, int) or collect_every < 1:
            raise ValueError(f"collect_every must be an integer >= 1, got {collect_every!r}")
        if steps // collect_every < self.rank:
            raise ValueError(f"SWAG.fit collects {steps // collect_every} weight vectors (steps // collect_every), "
                             f"fewer than rank = {self.rank}: raise steps or lower rank")
        named = dict(self.model.named_parameters())
        params = [named[k] for k in self.weights.names]
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        mean = sq = None
        devs: deque[Tensor] = deque(maxlen=self.rank)
        n = 0
        self.model.train()
        for step in range(steps):
            opt.zero_grad()
            loss = self.model.loss(batches[step % len(batches)]).total
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"SWAG.fit: the loss became non-finite at step {step} (lr = {lr} is too "
                                         f"large for this model)")
            loss.backward()
            opt.step()
            self.loss_history.append(float(loss.detach()))
            if (step + 1) % collect_every:
                continue
            theta = self.weights.flat().double()
            n += 1
            mean = theta.clone() if mean is None else mean + (theta - mean) / n
            sq = theta ** 2 if sq is None else sq + (theta ** 2 - sq) / n
            devs.append(theta - mean)
        self.model.eval()
        self.mean, self.n_collected = mean, n
        self.diag = (sq - mean ** 2).clamp_min(0)
        self.deviations = torch.stack(list(devs))
        with torch.no_grad():               # the model becomes the SWA solution
            for k, p in zip(self.weights.names, mean.split(self.weights.sizes)):
                named[k].copy_(p.reshape(named[k].shape))
        return self

    def sample_weights(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws :math:`\\tilde\\theta` ``(n, D)`` from the SWAG Gaussian (float64)."""
        if self.mean is None:
            raise RuntimeError("SWAG: call fit(batches, steps=..., lr=...) first")
        K, D = self.deviations.shape
        dev = self.mean.device if generator is None else generator.device
        z1 = torch.randn((n, D), generator=generator, dtype=torch.float64, device=dev).to(self.mean.device)
        z2 = torch.randn((n, K), generator=generator, dtype=torch.float64, device=dev).to(self.mean.device)
        return self.mean + math.sqrt(0.5) * self.diag.sqrt() * z1 + (z2 @ self.deviations) / math.sqrt(2 * (K - 1))

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        theta = self.sample_weights(self.n_samples, generator)
        with evaluating(self.model):
            f = self.weights.evaluate(self._call, theta.to(next(self.model.parameters()).dtype), batch)
        if self.observation_noise > 0:
            dev = f.device if generator is None else generator.device
            eps = torch.randn(f.shape, generator=generator, dtype=f.dtype, device=dev).to(f.device)
            f = f + math.sqrt(self.observation_noise) * eps
        return Prediction.from_samples(f, self.alpha)
