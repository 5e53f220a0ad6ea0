"""Names the CLI uses for ``sciflow evaluate RUN --uq NAME`` -> builders of :class:`Predictor` objects.

Strings live only here, at the edge. Each builder takes the run's trained model(s) and keyword
options and returns a predictor ready for :func:`sciflow.uq.evaluate`:

- ``samples``: ``SamplingPredictor(model, n_samples)``.
- ``mc-dropout``: ``MCDropout(model, n_passes)`` (the model must contain dropout).
- ``ensemble``: ``DeepEnsemble(members)`` from several trained runs (``models=[...]``), or trained
  here from ``factory`` + ``train`` batches.
- ``hmc``: ``HMC(model, GaussianPrior(prior_scale), GaussianLikelihood(noise_std), train)`` run for
  ``n_samples``/``n_warmup``/``n_chains``.
- ``laplace``: ``LinearizedLaplace(model, params)`` (default the last linear layer) fitted on
  ``train`` (its Gauss–Newton matrix, the prior precision from the evidence), its noise on the
  ``calibration`` batches if given (one variance per ``noise_dims`` group); ``observed`` picks
  the entries of the likelihood.
- ``conformal``: ``SplitConformal`` (normalised scores when the base has a spread, absolute
  residuals for point models) around ``base`` (default ``samples``); ``evaluate`` calibrates it on
  the ``calibration`` batches.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from sciflow.models.base import SciflowModel
from sciflow.uq.base import Predictor, observed_for
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior
from sciflow.uq.conformal import AbsoluteResidual, NormalizedResidual, SplitConformal
from sciflow.uq.ensemble import DeepEnsemble
from sciflow.uq.hmc import HMC
from sciflow.uq.linearized_laplace import LinearizedLaplace
from sciflow.uq.mc_dropout import MCDropout
from sciflow.uq.sampling import SamplingPredictor


def _samples(model: SciflowModel, *, n_samples: int = 100, alpha: float = 0.1, **_: Any) -> Predictor:
    return SamplingPredictor(model, n_samples, alpha)


def _mc_dropout(model: SciflowModel, *, n_samples: int = 100, alpha: float = 0.1, **_: Any) -> Predictor:
    return MCDropout(model, n_samples, alpha)


def _ensemble(model: SciflowModel | None = None, *, models: Sequence[SciflowModel] | None = None,
              factory: Callable[[], SciflowModel] | None = None, train: Iterable[Any] | None = None,
              n_members: int = 5, steps: int = 1000, lr: float = 1e-3, seed: int = 0,
              alpha: float = 0.1, **_: Any) -> Predictor:
    if models is not None:
        return DeepEnsemble(models, alpha)
    if factory is None or train is None:
        raise ValueError("--uq ensemble needs several trained models (models=[...]) or factory= and train=")
    return DeepEnsemble.fit(factory, train, n_members=n_members, steps=steps, lr=lr, seed=seed, alpha=alpha)


def _hmc(model: SciflowModel, *, train: Iterable[Any] | None = None, prior_scale: float = 1.0,
         noise_std: float = 0.1, n_samples: int = 200, n_warmup: int = 200, n_chains: int = 4,
         n_leapfrog: int = 20, mass_matrix: str = "diag", seed: int = 0, alpha: float = 0.1, **_: Any) -> Predictor:
    if train is None:
        raise ValueError("--uq hmc needs the training batches (train=...) for the likelihood")
    hmc = HMC(model, GaussianPrior(prior_scale), GaussianLikelihood(noise_std), train, alpha=alpha)
    hmc.run(n_samples, n_warmup, n_chains, n_leapfrog=n_leapfrog, mass_matrix=mass_matrix,
            generator=torch.Generator().manual_seed(seed))
    return hmc


def _laplace(model: SciflowModel, *, train: Iterable[Any] | None = None,
             calibration: Iterable[Any] | None = None, params: Any = None, observed: Callable = observed_for,
             noise_dims: Sequence[int] = (), n_samples: int = 100, alpha: float = 0.1, **_: Any) -> Predictor:
    if train is None:
        raise ValueError("--uq laplace needs the training batches (train=...) for the Gauss-Newton matrix")
    lap = LinearizedLaplace(model, params, alpha, noise_dims=noise_dims, n_samples=n_samples).fit(train, observed)
    return lap if calibration is None else lap.fit_noise(calibration, observed)


def _conformal(model: SciflowModel, *, base: str = "samples", alpha: float = 0.1, **kw: Any) -> Predictor:
    if base == "conformal":
        raise ValueError("conformal cannot wrap itself")
    inner = UQ_METHODS[base](model, alpha=alpha, **kw)
    spread = not (isinstance(inner, SamplingPredictor) and inner.n_samples == 1)
    return SplitConformal(inner, alpha, NormalizedResidual() if spread else AbsoluteResidual())


UQ_METHODS: dict[str, Callable[..., Predictor]] = {
    "samples": _samples,
    "mc-dropout": _mc_dropout,
    "ensemble": _ensemble,
    "hmc": _hmc,
    "laplace": _laplace,
    "conformal": _conformal,
}
