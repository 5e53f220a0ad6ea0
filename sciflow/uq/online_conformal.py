"""Online conformal methods for forecast streams, by name: one constructor for the CLI and the
benchmarks. Each method has ``calibrate_scores(scores, observed)`` and ``run(predictions, y,
observed) -> ACIResult``.

``aci``: :class:`~sciflow.uq.adaptive_conformal.AdaptiveConformal` with one step size ``rate``
(default 0.005, Gibbs & Candès 2021); ``dtaci``: the same with the step-size grid
:data:`~sciflow.uq.adaptive_conformal.DTACI_GAMMAS` (Gibbs & Candès 2024; ``rate`` must be
``None``); ``quantile``: :class:`~sciflow.uq.quantile_tracking.QuantileTracker` (Angelopoulos,
Candès & Tibshirani 2023), ``rate`` its learning rate relative to the calibration scores;
``pid``: :class:`~sciflow.uq.conformal_pid.ConformalPID`, the same with its saturating error
integrator (``ki = csat = 1``) and, if given, a ``scorecaster``.
"""

from __future__ import annotations

from typing import Any, Callable

from sciflow.uq.adaptive_conformal import DTACI_GAMMAS, AdaptiveConformal
from sciflow.uq.conformal import ConformalScore
from sciflow.uq.conformal_pid import ConformalPID
from sciflow.uq.quantile_tracking import QuantileTracker
from sciflow.uq.scorecasting import Scorecaster


def _aci(alpha: float, rate: float | None, score: ConformalScore | None, delay: int, window: int | None) -> Any:
    return AdaptiveConformal(alpha, 0.005 if rate is None else rate, score, window, delay)


def _dtaci(alpha: float, rate: float | None, score: ConformalScore | None, delay: int, window: int | None) -> Any:
    if rate is not None:
        raise ValueError(f"dtaci chooses its own step size from {DTACI_GAMMAS}; got rate={rate} (leave it unset)")
    return AdaptiveConformal(alpha, DTACI_GAMMAS, score, window, delay)


def _quantile(alpha: float, rate: float | None, score: ConformalScore | None, delay: int, window: int | None) -> Any:
    if window is not None:
        raise ValueError("quantile tracking keeps no score memory: window does not apply")
    return QuantileTracker(alpha, lr=0.05 if rate is None else rate, score=score, delay=delay)


def _pid(alpha: float, rate: float | None, score: ConformalScore | None, delay: int, window: int | None,
         scorecaster: Scorecaster | None = None) -> Any:
    if window is not None:
        raise ValueError("conformal PID keeps no score memory: window does not apply")
    return ConformalPID(alpha, lr=0.05 if rate is None else rate, score=score, delay=delay, scorecaster=scorecaster)


ONLINE_CONFORMAL: dict[str, Callable[..., Any]] = {"aci": _aci, "dtaci": _dtaci, "quantile": _quantile, "pid": _pid}


def online_conformal(method: str, alpha: float = 0.1, *, rate: float | None = None,
                     score: ConformalScore | None = None, delay: int = 0, window: int | None = None,
                     scorecaster: Scorecaster | None = None) -> Any:
    """The online conformal method ``method`` (a key of :data:`ONLINE_CONFORMAL`) at miscoverage
    ``alpha``; ``rate``: its step size (``None``: the method's default); ``delay``: steps between
    issuing an interval and learning its truth, minus one; ``window``: ACI's rolling score memory;
    ``scorecaster``: conformal PID's score forecaster."""
    if method not in ONLINE_CONFORMAL:
        raise ValueError(f"unknown online conformal method {method!r}: allowed values: {', '.join(ONLINE_CONFORMAL)}")
    if scorecaster is not None:
        if method != "pid":
            raise ValueError(f"a scorecaster is part of conformal PID (method 'pid'), not of {method!r}")
        return _pid(alpha, rate, score, delay, window, scorecaster)
    return ONLINE_CONFORMAL[method](alpha, rate, score, delay, window)
