r"""Linearised Laplace over a subnetwork: a Gaussian posterior over any chosen weights of a trained
network (default: its last linear layer), the generalised Gauss–Newton precision and the
linearised ("GLM") predictive — for heads that :class:`~sciflow.uq.LastLayerLaplace` refuses.

Around the trained weights :math:`\theta^*` the prediction is replaced by its first-order expansion
in the chosen weights :math:`\theta_S` (the others held at their trained values),

.. math::
    f_{\text{lin}}(x;\theta_S) = f(x;\theta^*) + J(x)\,(\theta_S - \theta_S^*),\qquad
    J(x) = \partial f(x;\theta^*)/\partial\theta_S,

the network's generalised linear model (Immer, Korzepa & Bauer, AISTATS 2021, "Improving
predictions of Bayesian neural nets via local linearization", arXiv:2008.08400). With a Gaussian
likelihood of noise variance :math:`\sigma^2` and the prior
:math:`\theta_S\sim\mathcal N(0,\lambda^{-1}I)`, the Laplace posterior is
:math:`\mathcal N(\theta_S^*, H^{-1})` with the generalised Gauss–Newton precision

.. math::
    H = \sigma^{-2}\textstyle\sum_n J(x_n)^\top J(x_n) + \lambda I

(Daxberger et al., NeurIPS 2021, "Laplace Redux"; exact for the linearised model), and the
predictive at :math:`x` is :math:`\mathcal N\big(f(x;\theta^*),\ J(x)H^{-1}J(x)^\top +
\sigma^2 I\big)` — Immer et al.'s "GLM predictive", which does not underfit as drawing the
nonlinear network under the same posterior does. Choosing :math:`\theta_S` is subnetwork
inference (Daxberger, Nalisnick, Allingham, Antorán & Hernández-Lobato, ICML 2021); all weights
of a small network is the full linearised Laplace. With :math:`\theta_S` the last layer and the
prediction its output, the linearisation is exact and this equals
:class:`~sciflow.uq.LastLayerLaplace` (which uses the layer's Kronecker structure and is cheaper);
here whatever follows the chosen weights may be any differentiable map — a scale, a permutation,
a solver (the last layer of a neural ODE's vector field).

:math:`\lambda` (when not given) is MacKay's evidence fixed point :math:`\lambda =
\gamma/\lVert\theta_S^*\rVert^2`, :math:`\gamma = \sum_i e_i/(e_i+\lambda)` over the eigenvalues
:math:`e_i` of :math:`\sigma^{-2}\sum_n J_n^\top J_n` (MacKay 1992, eq. 22); :math:`\sigma^2` (when
not given) the training residuals' mean square, or fitted on held-out data by :meth:`fit_noise`.
With ``noise_dims`` the noise variance differs between groups of entries (one per lead time of a
forecast, say): a heteroscedastic Gaussian likelihood, :math:`H = \sum_k G_k/\sigma_k^2 +
\lambda I` with :math:`G_k` the Gauss–Newton sum over group :math:`k`.

Cost: the Jacobian's columns :math:`Jv` are forward-mode products (``torch.func.jvp``, vectorised
over chunks of ``chunk_size`` tangents with ``vmap``; one by one, with a warning, where the model
does not allow it), so fitting costs about :math:`D = \dim\theta_S` forward passes per batch and
holds a batch's Jacobian (:math:`D` × its outputs) in memory — pass batches small enough; a
prediction costs the same again (its variance and draws come from :math:`JR`, :math:`RR^\top =
H^{-1}`). Meant for :math:`D` up to a few thousand. The Jacobian is that of the computed prediction
with the solver's step sizes held fixed (adaptive steps are chosen from the primal values).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from sciflow.models.base import SciflowModel
from sciflow.uq._weights import ModelCall, WeightSpace
from sciflow.uq.base import Predictor, check_alpha, check_point_model, evaluating, observed_for, target_for
from sciflow.uq.laplace import held_out_noise, mackay_precision
from sciflow.uq.prediction import Prediction

__all__ = ["LinearizedLaplace"]

Observed = Callable[[Any, Tensor], "Tensor | None"]
LINEAR_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)    # the default subnetwork: the last of these


def subnetwork(model: nn.Module, params: Any) -> list[str]:
    """The names of the weights ``params`` selects: ``None`` the last linear layer (``nn.Linear``
    or a convolution, such as a neural operator's 1×1 projection; in module order),
    ``"all"`` every parameter, a module or a sequence of modules their parameters, a sequence of
    strings those parameter names."""
    named = dict(model.named_parameters())
    if params is None:
        layers = [m for m in model.modules() if isinstance(m, LINEAR_LAYERS) and any(True for _ in m.parameters())]
        if not layers:
            raise ValueError(f"LinearizedLaplace: {type(model).__name__} has no nn.Linear or convolution layer; "
                             "pass params=")
        params = layers[-1]
    if isinstance(params, str):
        if params != "all":
            raise ValueError(f"LinearizedLaplace: params={params!r}: pass 'all', parameter names, or modules")
        return list(named)
    if isinstance(params, nn.Module):
        params = [params]
    ids = {id(p): k for k, p in named.items()}
    chosen: set[str] = set()
    for item in params:
        if isinstance(item, nn.Module):
            found = [ids.get(id(p)) for p in item.parameters()]
            if not found or None in found:
                raise ValueError(f"LinearizedLaplace: {type(item).__name__} is not a module of the model with "
                                 "parameters")
            chosen.update(found)
        elif item in named:
            chosen.add(item)
        else:
            raise ValueError(f"LinearizedLaplace: {item!r} is not a parameter of {type(model).__name__} "
                             f"(parameters: {', '.join(named)})")
    if not chosen:
        raise ValueError("LinearizedLaplace: params selects no weights")
    return [k for k in named if k in chosen]


class LinearizedLaplace(Predictor):
    """Linearised Laplace over the weights ``params`` of a trained point
    :class:`~sciflow.models.base.SciflowModel` (see :func:`subnetwork` for the choices; default the
    last ``nn.Linear`` or convolution). ``prior_precision`` :math:`\\lambda` and ``observation_noise``
    :math:`\\sigma^2` (a variance): fitted when ``None``. ``noise_dims``: prediction axes (>= 1)
    along which the noise variance may differ — ``(1,)`` one :math:`\\sigma_k^2` per lead time of a
    forecast ``(batch, time, ...)``; the likelihood is then heteroscedastic, :math:`H = \\sum_k
    G_k/\\sigma_k^2 + \\lambda I` with :math:`G_k` the Gauss–Newton sum over group :math:`k`'s
    entries (memory: one :math:`D\\times D` matrix per group); a group with no observed entry in
    :meth:`fit` and :meth:`fit_noise` (a forecast's given steps) gets no noise. ``n_samples``:
    predictive draws per :meth:`predict` (joint over the outputs of each call). ``chunk_size``:
    tangents per vectorised forward-mode pass (memory: that many forward passes at once).

    ``observed`` (:meth:`fit`, :meth:`fit_noise`): ``(batch, prediction) -> bool mask or None``,
    the entries that enter the likelihood (default :func:`~sciflow.uq.base.observed_for`: an
    irregular batch's ``target_mask``); a forecast passes one that leaves out its given steps."""

    def __init__(self, model: SciflowModel, params: Any = None, alpha: float = 0.1, *,
                 prior_precision: float | None = None, observation_noise: float | None = None,
                 noise_dims: Sequence[int] = (), n_samples: int = 100, chunk_size: int = 64) -> None:
        check_point_model(model, "LinearizedLaplace")
        names = subnetwork(model, params)
        for name, v in (("prior_precision", prior_precision), ("observation_noise", observation_noise)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v}")
        if n_samples < 1 or chunk_size < 1:
            raise ValueError(f"n_samples and chunk_size must be >= 1, got {n_samples} and {chunk_size}")
        self.noise_dims = tuple(sorted({int(d) for d in noise_dims}))
        if any(d < 1 for d in self.noise_dims):
            raise ValueError(f"noise_dims are prediction axes after the batch axis (>= 1), got {tuple(noise_dims)}")
        self.model, self.alpha, self.n_samples, self.chunk_size = model, check_alpha(alpha), n_samples, chunk_size
        frozen = [k for k, _ in model.named_parameters() if k not in set(names)]
        self.weights = WeightSpace(model, frozen, who="LinearizedLaplace", rows="Jacobian columns")
        self._call = ModelCall(model, False)
        self.prior_precision = prior_precision
        self._given = (prior_precision, observation_noise)
        self.noise: Tensor | None = None    # sigma_k^2, shape: the noise_dims' sizes (() for one)
        self.root: Tensor | None = None     # R with H^-1 = R R^T, (D, D) float64
        self._grams: Tensor | None = None   # G_k (K, D, D) of the fit batches, K groups of shape _shape
        self._shape: tuple[int, ...] = ()
        self._basis: tuple[Tensor, Tensor] | None = None  # eigendecomposition of G_0 when K = 1
        self._eig: Tensor | None = None     # spectrum of sum_k G_k / sigma_k^2
        self._norm2 = math.nan
        self.noise_fit: dict[str, Any] = {}

    @property
    def n_params(self) -> int:
        """:math:`D`, the number of weights with a posterior."""
        return self.weights.dim

    @property
    def observation_noise(self) -> float | Tensor | None:
        """:math:`\\sigma^2`: a float, or one per group (a tensor over the ``noise_dims``)."""
        if self.noise is None or self.noise.dim() == 0:
            return None if self.noise is None else float(self.noise)
        return self.noise

    # -- the prediction and its Jacobian-vector products ---------------------------------------------
    def _products(self, batch: Any, tangents: Tensor) -> tuple[Tensor, Tensor]:
        """``(prediction, J v for each row v of tangents (k, D) -> (k, *prediction shape))``."""
        theta = self.weights.flat()
        fixed = self.weights.fixed

        def f(th: Tensor) -> Tensor:
            return functional_call(self._call, self.weights.unflatten(th) | fixed, (batch,))

        def column(v: Tensor) -> Tensor:
            return jvp(f, (theta,), (v,))[1]

        with evaluating(self.model):
            with torch.no_grad():
                pred = f(theta)
            if not bool(torch.isfinite(pred).all()):
                raise FloatingPointError("LinearizedLaplace: the model's prediction has non-finite values")
            cols = torch.cat([self.weights.map(column, chunk) for chunk in tangents.to(theta).split(self.chunk_size)])
        return pred, cols

    def _groups(self, pred: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Each entry's noise group (an index tensor of ``pred``'s shape) and the groups' shape."""
        if self.noise_dims and self.noise_dims[-1] >= pred.dim():
            raise ValueError(f"noise_dims {self.noise_dims} do not fit a prediction of shape {tuple(pred.shape)}")
        shape = tuple(pred.shape[d] for d in self.noise_dims)
        idx = torch.zeros((), dtype=torch.long, device=pred.device)
        for d, n in zip(self.noise_dims, shape):
            view = [1] * pred.dim()
            view[d] = n
            idx = idx * n + torch.arange(n, device=pred.device).reshape(view)
        return idx.expand(pred.shape), shape

    def _rows(self, batches: Iterable[Any], observed: Observed) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
        """Per noise group over the observed entries of ``batches``: :math:`G_k = \\sum J^\\top J`
        (float64), the residuals' sum of squares and their count; and the groups' shape."""
        D = self.n_params
        theta = self.weights.flat()
        eye = torch.eye(D, dtype=theta.dtype, device=theta.device)
        grams = sq = n = shape = None
        for batch in batches:
            pred, jv = self._products(batch, eye)
            y = target_for(batch, pred)
            mask = observed(batch, pred)
            mask = torch.ones_like(pred, dtype=torch.bool) if mask is None else mask.to(pred.device).bool()
            if tuple(mask.shape) != tuple(pred.shape):
                raise ValueError(f"LinearizedLaplace: observed mask has shape {tuple(mask.shape)}, the prediction "
                                 f"{tuple(pred.shape)}")
            if not bool(torch.isfinite(y[mask]).all()):
                raise ValueError("LinearizedLaplace: the targets have non-finite values at observed entries (mark "
                                 "them unobserved)")
            group, this = self._groups(pred)
            if shape is None:
                shape, K = this, math.prod(this)
                grams = torch.zeros(K, D, D, dtype=torch.float64, device=theta.device)
                sq = torch.zeros(K, dtype=torch.float64, device=theta.device)
                n = torch.zeros(K, dtype=torch.float64, device=theta.device)
            elif this != shape:
                raise ValueError(f"LinearizedLaplace: the noise_dims {self.noise_dims} have sizes {this} in one "
                                 f"batch and {shape} in another")
            J = jv.reshape(D, -1)[:, mask.reshape(-1)].double()            # (D, observed entries)
            g = group[mask]
            for k in g.unique().tolist():
                Jk = J[:, g == k]
                grams[k] += Jk @ Jk.T
            r2 = (y - pred)[mask].double() ** 2
            sq.index_add_(0, g, r2)
            n.index_add_(0, g, torch.ones_like(r2))
        if n is None or not bool((n > 0).any()):
            raise ValueError("LinearizedLaplace: no batches (or no observed entries)")
        return grams, sq, n, shape

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, batches: Iterable[Any], observed: Observed = observed_for) -> "LinearizedLaplace":
        """One pass over ``batches``: :math:`G_k`, the residuals, then :math:`\\sigma_k^2` (the
        group's residual mean square, if not given), :math:`\\lambda` (if not given) and
        :math:`H^{-1}`."""
        grams, sq, n, shape = self._rows(batches, observed)
        self._grams, self._shape, self._basis = grams, shape, None
        self._norm2 = float(self.weights.flat().double().square().sum())    # ||theta_S*||^2 of the evidence
        given = self._given[1]
        noise = torch.full_like(sq, given) if given is not None else (sq / n.clamp_min(1)).clamp_min(1e-12)
        self._set_noise(torch.where(n > 0, noise, 0.0))     # a group never observed: no noise
        return self

    def _set_noise(self, noise: Tensor) -> None:
        """:math:`\\sigma_k^2` (flat, one per group), then :math:`\\lambda` (MacKay, unless given)
        and the root of :math:`H^{-1}`."""
        self.noise = noise.reshape(self._shape)
        if noise.numel() == 1:                       # one group: G's eigenvectors, its spectrum rescaled
            if self._basis is None:
                e, V = torch.linalg.eigh(self._grams[0])
                self._basis = (e.clamp_min(0), V)
            e, V = self._basis[0] / noise[0], self._basis[1]
        else:
            weight = torch.where(noise > 0, 1 / noise.clamp_min(1e-300), 0.0)    # G_k = 0 where sigma_k = 0
            e, V = torch.linalg.eigh(torch.einsum("kij,k->ij", self._grams, weight))
            e = e.clamp_min(0)
        prior = self._given[0]
        self.prior_precision = prior if prior is not None else mackay_precision(e, self._norm2, 1)
        self._eig = e
        self.root = V / (e + self.prior_precision).sqrt()

    def fit_noise(self, batches: Iterable[Any], observed: Observed = observed_for,
                  iters: int = 200) -> "LinearizedLaplace":
        r"""Fit :math:`\sigma_k^2` on held-out ``batches`` (after :meth:`fit`): the noise that makes
        each group's mean predictive variance there equal its mean squared error, :math:`\sigma_k^2
        = \mathrm{MSE}_k - \operatorname{tr}(H^{-1}G'_k)/n_k` (:math:`G'_k = \sum J^\top J` over
        the group's :math:`n_k` held-out entries), with :math:`H` (and :math:`\lambda`, unless
        given) re-fitted for each :math:`\sigma^2`: one group by bisection
        (:func:`~sciflow.uq.laplace.held_out_noise`, in :math:`G`'s eigenbasis), several by a damped
        fixed-point iteration on :math:`\log\sigma_k^2` (a ``RuntimeWarning`` if it has not
        settled after ``iters`` steps). ``noise_fit`` records how it ended."""
        if self.root is None:
            raise RuntimeError("LinearizedLaplace: call fit(batches) before fit_noise")
        grams, sq, n, shape = self._rows(batches, observed)
        if shape != self._shape:
            raise ValueError(f"LinearizedLaplace.fit_noise: noise groups {shape}, fitted with {self._shape}")
        mse = sq / n.clamp_min(1)
        if n.numel() == 1:                           # tr(H^-1 G') in G's fixed eigenbasis: O(D) per step
            V = self._basis[1]
            g = (V * (grams[0] @ V)).sum(0)               # diag(V^T G' V), one product

            def epistemic(noise: float) -> float:
                self._set_noise(torch.full_like(mse, noise))
                return float((g / (self._eig + self.prior_precision)).sum()) / float(n[0])

            epistemic(held_out_noise(float(mse[0]), epistemic, iters))
            self.noise_fit = {"method": "bisection", "converged": True}
            return self
        seen = n > 0                                 # the other groups keep their noise
        floor = (1e-6 * mse).clamp_min(1e-12)
        noise = torch.where(seen, self.noise.reshape(-1).clamp_min(1e-12), self.noise.reshape(-1))
        for step in range(iters):
            epistemic = torch.einsum("kij,ij->k", grams, self.root @ self.root.T) / n.clamp_min(1)
            target = torch.maximum(mse - epistemic, floor)
            gap = float(((target / noise).log().abs())[seen].max())
            if gap <= 1e-8:
                break
            # half a step in log sigma^2: the undamped map s <- MSE - epistemic(s) can oscillate
            noise = torch.where(seen, (noise * target).sqrt(), noise)
            self._set_noise(noise)
        self.noise_fit = {"method": "damped fixed point", "iterations": step + 1, "converged": gap <= 1e-8,
                          "max_log_gap": gap}
        if gap > 1e-8:
            warnings.warn(f"LinearizedLaplace.fit_noise: the noise variances have not settled after {iters} "
                          f"iterations (largest |log(target / current)| {gap:.3g}); raise iters", RuntimeWarning,
                          stacklevel=2)
        return self

    @property
    def effective_parameters(self) -> float:
        r""":math:`\gamma = \sum_i e_i/(e_i+\lambda)`, how many weights the data determine."""
        if self.root is None:
            raise RuntimeError("LinearizedLaplace: call fit(batches) first")
        return float((self._eig / (self._eig + self.prior_precision)).sum())

    def log_marginal_likelihood(self, prior_precision: float | None = None) -> float:
        r"""The :math:`\lambda`-dependent part of the Laplace log evidence,
        :math:`\tfrac D2\log\lambda - \tfrac\lambda2\lVert\theta_S^*\rVert^2 -
        \tfrac12\sum_i\log(e_i+\lambda)` (``prior_precision`` default: the fitted one)."""
        if self.root is None:
            raise RuntimeError("LinearizedLaplace: call fit(batches) first")
        lam = self.prior_precision if prior_precision is None else prior_precision
        return float(0.5 * self.n_params * math.log(lam) - 0.5 * lam * self._norm2
                     - 0.5 * torch.log(self._eig + lam).sum())

    # -- prediction --------------------------------------------------------------------------------
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        if self.root is None:
            raise RuntimeError("LinearizedLaplace: call fit(batches) before predict")
        pred, jr = self._products(batch, self.root.T)                  # rows: J r_i, r_i the columns of R
        group, shape = self._groups(pred)
        if shape != self._shape:
            raise ValueError(f"LinearizedLaplace.predict: noise groups {shape}, fitted with {self._shape}")
        noise = self.noise.reshape(-1)[group]                            # sigma^2 of each entry
        A = jr.reshape(self.n_params, -1).double()                       # (D, outputs): (J R)^T
        var = (A.square().sum(0).reshape(pred.shape) + noise).to(pred.dtype)
        dev = pred.device if generator is None else generator.device
        z = torch.randn((self.n_samples, self.n_params), generator=generator, dtype=A.dtype, device=dev)
        eps = torch.randn((self.n_samples, *pred.shape), generator=generator, dtype=pred.dtype, device=dev)
        draws = (z.to(A.device) @ A).reshape(self.n_samples, *pred.shape).to(pred.dtype)
        samples = pred + draws + noise.sqrt().to(pred.dtype) * eps.to(pred.device)
        return Prediction.from_gaussian(pred, var, self.alpha, samples=samples)
