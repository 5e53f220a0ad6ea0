r"""Last-layer Laplace approximation: a Gaussian posterior over a trained network's final linear
layer, fitted after training in one pass over the data.

The network's last ``nn.Linear`` computes :math:`z = W\phi(x) + b` from the features
:math:`\phi(x)` of everything before it; with :math:`\tilde\phi = (\phi, 1)` and the rows
:math:`w_o` of :math:`\tilde W = (W, b)` (one per output), a Gaussian likelihood of noise
variance :math:`\sigma^2` and the prior :math:`w_o\sim\mathcal N(0, \lambda^{-1}I)`, the Laplace
approximation around the trained weights :math:`\tilde W^*` (MacKay 1992; for the last layer of a
deep network Kristiadi, Hein & Hennig 2020 and Daxberger et al. 2021, "Laplace Redux", Sec. 3 and
4) has the same precision for every output,

.. math::
    H = \sigma^{-2}\,\tilde\Phi^\top\tilde\Phi + \lambda I,\qquad
    w_o \sim \mathcal N(w_o^*, H^{-1}),

the generalised Gauss–Newton matrix of the last layer, which is exact here: the outputs are linear
in :math:`\tilde W`. The predictive of an output at :math:`x` is
:math:`\mathcal N\big(z^*(x),\ \tilde\phi(x)^\top H^{-1}\tilde\phi(x) + \sigma^2\big)` — the
epistemic term grows away from the training features (extrapolation), unlike a fixed-noise point
model's.

The prior precision :math:`\lambda` (when not given) maximises the Laplace approximation of the
marginal likelihood, by MacKay's fixed point (1992, "Bayesian interpolation", eq. 22)
:math:`\lambda = \gamma / \lVert\tilde W^*\rVert^2` with :math:`\gamma = O\sum_i e_i/(e_i + \lambda)`
the effective number of parameters (:math:`e_i`: eigenvalues of :math:`\sigma^{-2}\tilde\Phi^\top\tilde\Phi`,
:math:`O` outputs) — Laplace Redux's post-hoc "marglik" tuning. The noise :math:`\sigma^2` (when not
given) is the training residuals' mean square, which a flexible network underestimates: pass a
validation-fitted one (as the other methods' ``observation_noise``) for calibrated intervals.

Assumption, checked at :meth:`LastLayerLaplace.fit`: the model's prediction is the last layer's
output plus terms that do not depend on that layer (an identity or residual head; a reshape is
fine), so the predictive is Gaussian in closed form. A head that transforms ``z`` (``tanh``, a
scale) is refused with an error: :class:`~sciflow.uq.LinearizedLaplace` linearises any head.
Targets must be fully observed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from sciflow.models.base import SciflowModel
from sciflow.uq.base import Predictor, check_alpha, check_point_model, evaluating, observed_for, target_for
from sciflow.uq.prediction import Prediction

__all__ = ["LastLayerLaplace", "held_out_noise", "mackay_precision"]


def held_out_noise(mse: float, epistemic: Callable[[float], float], iters: int = 100, rtol: float = 1e-10) -> float:
    """The noise variance :math:`s` with :math:`s + \\text{epistemic}(s) = \\text{MSE}` on held-out
    data, by bisection on :math:`\\log s` in :math:`[10^{-6}\\text{MSE}, \\text{MSE}]` (at most
    ``iters`` halvings, to relative width ``rtol``): ``epistemic(s)`` is the mean epistemic variance
    there with the posterior re-fitted for noise :math:`s` — increasing in :math:`s` (a noisier
    likelihood, a smaller evidence-optimal prior precision), so the root is unique. The plain
    fixed point :math:`s \\leftarrow \\text{MSE} - \\text{epistemic}(s)` oscillates where the
    epistemic variance reacts strongly to :math:`s` (more weights than data). The lower end when the
    epistemic variance alone reaches the MSE there."""
    lo, hi = max(1e-6 * mse, 1e-12), max(mse, 1e-12)
    if lo + epistemic(lo) >= mse:
        return lo
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        if mid + epistemic(mid) < mse:
            lo = mid
        else:
            hi = mid
        if hi <= lo * (1 + rtol):
            break
    return math.sqrt(lo * hi)


def mackay_precision(e: Tensor, norm2: float, outputs: int, iters: int = 200) -> float:
    """MacKay's evidence fixed point :math:`\\lambda = \\gamma/\\lVert w\\rVert^2`,
    :math:`\\gamma = O\\sum_i e_i/(e_i+\\lambda)`: ``e`` the eigenvalues of the data precision,
    ``norm2`` the squared norm of the trained weights, ``outputs`` :math:`O` (the number of times
    each eigenvalue repeats)."""
    lam = 1.0
    for _ in range(iters):
        gamma = outputs * float((e / (e + lam)).sum())
        new = max(gamma, 1e-12) / max(norm2, 1e-300)
        if abs(new - lam) <= 1e-10 * lam:
            return new
        lam = new
    return lam


def _last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"LastLayerLaplace: {type(model).__name__} has no nn.Linear layer; pass last_layer=")
    return layers[-1]


class LastLayerLaplace(Predictor):
    """Laplace posterior over ``last_layer`` (default: the model's last ``nn.Linear`` in module
    order) of a trained :class:`~sciflow.models.base.SciflowModel` (a point model: ``sample``
    returns its prediction). ``prior_precision`` :math:`\\lambda` and ``observation_noise``
    :math:`\\sigma^2` (a variance): fitted when ``None`` (see the module docstring).
    ``n_samples``: predictive draws per :meth:`predict` (joint over the outputs of each input: one
    weight draw each, plus the observation noise)."""

    def __init__(self, model: SciflowModel, last_layer: nn.Linear | None = None, alpha: float = 0.1, *,
                 prior_precision: float | None = None, observation_noise: float | None = None,
                 n_samples: int = 100) -> None:
        check_point_model(model, "LastLayerLaplace")
        layer = _last_linear(model) if last_layer is None else last_layer
        if not isinstance(layer, nn.Linear) or not any(m is layer for m in model.modules()):
            raise ValueError("LastLayerLaplace: last_layer must be an nn.Linear inside the model")
        for name, v in (("prior_precision", prior_precision), ("observation_noise", observation_noise)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.model, self.layer, self.alpha, self.n_samples = model, layer, check_alpha(alpha), n_samples
        self.prior_precision, self.observation_noise = prior_precision, observation_noise
        self._given = (prior_precision, observation_noise)
        self.root: Tensor | None = None     # R with H^-1 = R R^T, (D, D)
        self._gram: Tensor | None = None    # Phi~^T Phi~ of the fit batches

    # -- the features and the prediction in one forward ------------------------------------------
    @torch.no_grad()
    def _forward(self, batch: Any, bias_shift: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(features (N, D) with the bias column, prediction (*event))``; ``bias_shift``: added
        to the layer's output (for the check of the head)."""
        seen: dict[str, Tensor] = {}

        def hook(module, inputs, output):
            seen["phi"] = inputs[0]
            if bias_shift is not None:
                return output + bias_shift.to(output)
            return None

        handle = self.layer.register_forward_hook(hook)
        try:
            with evaluating(self.model):
                pred = self.model.sample(batch, 1)[0]
        finally:
            handle.remove()
        if "phi" not in seen:
            raise ValueError("LastLayerLaplace: the model's sample() never called last_layer")
        phi = seen["phi"].reshape(-1, self.layer.in_features)
        if self.layer.bias is not None:
            phi = torch.cat([phi, torch.ones_like(phi[:, :1])], 1)
        if phi.shape[0] * self.layer.out_features != pred.numel():
            raise ValueError(f"LastLayerLaplace: last_layer produces {phi.shape[0] * self.layer.out_features} "
                             f"values, the prediction has {pred.numel()} ({tuple(pred.shape)}); the prediction "
                             f"must be the layer's output (plus terms independent of it)")
        return phi, pred

    def _check_head(self, batch: Any, pred: Tensor) -> None:
        """The prediction moves one-for-one with the layer's output (in its order)."""
        g = torch.Generator().manual_seed(0)
        shift = torch.randn(self.layer.out_features, generator=g, dtype=torch.float64)
        scale = 1e-3 * (1.0 + float(pred.abs().max()))
        _, moved = self._forward(batch, bias_shift=scale * shift)
        rows = pred.numel() // self.layer.out_features
        want = (scale * shift).to(pred).expand(rows, -1).reshape(pred.shape)
        if not torch.allclose(moved - pred, want, rtol=1e-3, atol=1e-4 * scale):
            raise ValueError("LastLayerLaplace: the prediction is not the last layer's output plus terms independent "
                             "of it (a transform such as tanh or a scale follows the layer); pass the layer whose "
                             "output is the prediction, or use LinearizedLaplace (any head)")

    # -- fitting -----------------------------------------------------------------------------------
    def _rows(self, batches: Iterable[Any], check_head: bool = False) -> Iterator[tuple[Tensor, float, int]]:
        """Per batch: the features (float64, with the bias column), the residuals' sum of squares
        and their count; targets must be fully observed; ``check_head``: on the first batch."""
        for i, batch in enumerate(batches):
            phi, pred = self._forward(batch)
            y = target_for(batch, pred)
            obs = observed_for(batch, pred)
            if obs is not None and not bool(obs.all()):
                raise ValueError("LastLayerLaplace needs fully observed targets (the batch has a target_mask "
                                 "with missing entries)")
            if check_head and i == 0:
                self._check_head(batch, pred)
            yield phi.double(), float(((y - pred).double() ** 2).sum()), y.numel()

    def fit(self, batches: Iterable[Any]) -> "LastLayerLaplace":
        """One pass over ``batches``: :math:`\\tilde\\Phi^\\top\\tilde\\Phi`, the residuals, then
        :math:`\\sigma^2` and :math:`\\lambda` (if not given) and :math:`H^{-1}`."""
        gram, sq, n = None, 0.0, 0
        for phi, sq_b, n_b in self._rows(batches, check_head=True):
            gram = phi.T @ phi if gram is None else gram + phi.T @ phi
            sq, n = sq + sq_b, n + n_b
        if gram is None:
            raise ValueError("LastLayerLaplace.fit: no batches")
        self._gram = gram
        self.observation_noise = self._given[1] if self._given[1] is not None else max(sq / n, 1e-12)
        self._posterior()
        return self

    def _posterior(self) -> None:
        r""":math:`\lambda` (MacKay, unless given) and the root of :math:`H^{-1}` for the current
        :math:`\sigma^2`."""
        e, V = torch.linalg.eigh(self._gram / self.observation_noise)
        e = e.clamp_min(0)
        w = self._weights()
        prior = self._given[0]
        self.prior_precision = prior if prior is not None else mackay_precision(e, float((w ** 2).sum()), w.shape[0])
        self.root = V / (e + self.prior_precision).sqrt()        # V diag(1/sqrt(e + λ))
        self._eig = e

    def fit_noise(self, batches: Iterable[Any], iters: int = 100) -> "LastLayerLaplace":
        r"""Fit :math:`\sigma^2` on held-out ``batches`` (after :meth:`fit`): the noise that makes the
        mean predictive variance equal the mean squared error there, :math:`\sigma^2 = \mathrm{MSE}
        - \overline{\tilde\phi^\top H^{-1}\tilde\phi}`, with :math:`H` (and :math:`\lambda`,
        unless given) re-fitted for each :math:`\sigma^2` (:func:`held_out_noise`) — the epistemic
        term grows with :math:`\sigma^2`, so fitting the noise once, with the training noise's
        posterior, would over-cover."""
        if self.root is None:
            raise RuntimeError("LastLayerLaplace: call fit(batches) before fit_noise")
        rows = list(self._rows(batches))
        feats, sq, n = [r[0] for r in rows], sum(r[1] for r in rows), sum(r[2] for r in rows)
        if not feats:
            raise ValueError("LastLayerLaplace.fit_noise: no batches")
        phi, mse = torch.cat(feats), sq / n

        def epistemic(noise: float) -> float:
            self.observation_noise = noise
            self._posterior()
            return float((phi @ self.root).square().sum(1).mean())

        epistemic(held_out_noise(mse, epistemic, iters))
        return self

    def _weights(self) -> Tensor:
        w = self.layer.weight.detach()
        if self.layer.bias is not None:
            w = torch.cat([w, self.layer.bias.detach().unsqueeze(1)], 1)
        return w.double()

    def log_marginal_likelihood(self, prior_precision: float | None = None) -> float:
        """The :math:`\\lambda`-dependent part of the Laplace log evidence,
        :math:`\\tfrac{OD}2\\log\\lambda - \\tfrac\\lambda2\\lVert\\tilde W^*\\rVert^2
        - \\tfrac O2\\sum_i\\log(e_i+\\lambda)`
        (``prior_precision`` default: the fitted one)."""
        if self.root is None:
            raise RuntimeError("LastLayerLaplace: call fit(batches) first")
        lam = self.prior_precision if prior_precision is None else prior_precision
        w = self._weights()
        O, D = w.shape
        return float(0.5 * O * D * math.log(lam) - 0.5 * lam * (w ** 2).sum()
                     - 0.5 * O * torch.log(self._eig + lam).sum())

    # -- prediction --------------------------------------------------------------------------------
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        if self.root is None:
            raise RuntimeError("LastLayerLaplace: call fit(batches) before predict")
        phi, pred = self._forward(batch)
        a = phi.to(self.root) @ self.root                      # (N, D): phi^T H^-1 phi = |a|^2
        O = self.layer.out_features
        epistemic = a.square().sum(1, keepdim=True).expand(-1, O)
        var = (epistemic + self.observation_noise).reshape(pred.shape).to(pred.dtype)
        dev = pred.device if generator is None else generator.device
        z = torch.randn((self.n_samples, O, a.shape[1]), generator=generator, dtype=a.dtype, device=dev).to(a.device)
        eps = torch.randn((self.n_samples, *pred.shape), generator=generator, dtype=pred.dtype, device=dev)
        draws = torch.einsum("nd,sod->sno", a, z).reshape(self.n_samples, *pred.shape).to(pred.dtype)
        samples = pred + draws + math.sqrt(self.observation_noise) * eps.to(pred.device)
        return Prediction.from_gaussian(pred, var, self.alpha, samples=samples)
