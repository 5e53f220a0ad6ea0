"""sciflow.uq: predictive distributions from any model, and the scores that check them.

Methods (each a :class:`Predictor` returning a :class:`Prediction`): :class:`SamplingPredictor`
(``model.sample``), :class:`DeepEnsemble`, :class:`MCDropout`, :class:`HMC` / :class:`NUTS`,
:class:`LastLayerLaplace`, :class:`LinearizedLaplace`, :class:`SWAG`, :class:`MixturePredictor` (MultiSWAG),
:class:`SplitConformal` around any of them; :class:`AdaptiveConformal` (ACI, DtACI),
:class:`QuantileTracker` and :class:`ConformalPID` (with a :class:`ARScorecaster`) for forecast
streams under distribution shift (by name: :func:`online_conformal`). Gaussian heads:
:class:`GaussianForecaster`, :func:`beta_nll_loss`.
Scores: :mod:`sciflow.uq.scores`; population distances: :mod:`sciflow.uq.distances`; MCMC
diagnostics: :mod:`sciflow.uq.diagnostics`; figures: :mod:`sciflow.uq.plots`; one-call scoring:
:func:`evaluate`. See ``docs/uq.md`` for which method to use when.
"""

from sciflow.uq.adaptive_conformal import ACIResult, AdaptiveConformal
from sciflow.uq.base import Predictor, observed_for, target_for
from sciflow.uq.bayes import GaussianLikelihood, GaussianPrior, Likelihood, LossLikelihood, Prior
from sciflow.uq.conformal_pid import ConformalPID
from sciflow.uq.conformal import (AbsoluteResidual, ConformalScore, NormalizedResidual, QuantileScore,
                                  SplitConformal)
from sciflow.uq.diagnostics import (ConvergenceDiagnostics, convergence_diagnostics, ess_bulk, ess_tail, rhat,
                                    split_rhat)
from sciflow.uq.ensemble import DeepEnsemble
from sciflow.uq.evaluate import evaluate, score_prediction
from sciflow.uq.heads import (GaussianForecaster, GaussianHead, GaussianPredictive, PointForecaster,
                              beta_nll_loss, gaussian_nll_loss)
from sciflow.uq.hmc import HMC, HMCResult
from sciflow.uq.laplace import LastLayerLaplace
from sciflow.uq.linearized_laplace import LinearizedLaplace
from sciflow.uq.mc_dropout import MCDropout
from sciflow.uq.mixture import MixturePredictor
from sciflow.uq.nuts import NUTS
from sciflow.uq.online_conformal import ONLINE_CONFORMAL, online_conformal
from sciflow.uq.prediction import Prediction
from sciflow.uq.quantile_tracking import QuantileTracker
from sciflow.uq.registry import UQ_METHODS
from sciflow.uq.sampling import SamplingPredictor
from sciflow.uq.scorecasting import ARScorecaster, Scorecaster
from sciflow.uq.swag import SWAG

__all__ = [
    "Predictor", "Prediction", "target_for", "observed_for", "SamplingPredictor", "DeepEnsemble", "MCDropout",
    "HMC", "NUTS", "LastLayerLaplace", "LinearizedLaplace", "SWAG", "MixturePredictor",
    "HMCResult", "SplitConformal", "AdaptiveConformal", "ACIResult", "QuantileTracker", "ConformalPID",
    "Scorecaster", "ARScorecaster", "online_conformal",
    "ONLINE_CONFORMAL", "ConformalScore", "AbsoluteResidual",
    "NormalizedResidual",
    "QuantileScore", "Prior", "GaussianPrior", "Likelihood", "GaussianLikelihood", "LossLikelihood",
    "GaussianHead", "GaussianPredictive", "GaussianForecaster", "PointForecaster", "beta_nll_loss",
    "gaussian_nll_loss", "rhat", "split_rhat", "ess_bulk", "ess_tail", "convergence_diagnostics",
    "ConvergenceDiagnostics", "evaluate", "score_prediction",
    "UQ_METHODS",
]
