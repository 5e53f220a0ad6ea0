"""``Config`` of :class:`~sciflow.models.stable_sde.StableSDE`: one frozen dataclass for every kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from sciflow.models.base import check_choices

#: the stable classes of Oh, Lim & Kim (ICLR 2024), then the baselines on the same pipeline
Kind = Literal["lsde", "lnsde", "gsde", "neural_sde", "neural_ode", "neural_cde", "ode_rnn"]
KINDS: tuple[str, ...] = get_args(Kind)
#: the kinds that are SDEs (the others are ODE/CDE/RNN baselines)
SDE_KINDS = ("lsde", "lnsde", "gsde", "neural_sde")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of a stable neural SDE (or one of its baselines) on irregular series.

    Model:
        kind: ``"lsde"`` | ``"lnsde"`` | ``"gsde"`` (Oh, Lim & Kim 2024, §3.1) or a baseline:
            ``"neural_sde"`` (naive: learned drift *and* state-dependent diffusion),
            ``"neural_ode"`` (drift only, control concatenated), ``"neural_cde"`` (Kidger et al.
            2020), ``"ode_rnn"`` (Rubanova et al. 2019).
        input_channels: ``C``, channels of ``IrregularBatch.values``.
        hidden_dim: latent size ``d`` of ``z``.
        hidden_hidden_dim: width of the vector-field MLPs (default ``hidden_dim``).
        num_layers: hidden layers of the vector-field MLPs.
        variant: ``"paper"``: the equations of the paper with unconstrained networks (GSDE solved
            for ``log z`` so the state stays positive); ``"official"``: the bounded runtime forms
            of the authors' code (``tanh`` around drift and diffusion, GSDE drift ``γ·tanh(z)``).
            See ``docs/models/stable_sde.md``. Applies to the SDE kinds (the ODE kinds have no
            bounded variant).
        n_classes: number of classes (``task="classification"``), else ``None``.
        task: ``"classification"`` (readout of ``z`` at each series' last observation time,
            cross-entropy), ``"forecasting"`` / ``"interpolation"`` (decoder of ``z`` at
            ``batch.target_times``; Gaussian NLL or MSE).
        likelihood: ``"gaussian"`` (decoder predicts mean and log-variance) or ``"mse"``.

    Control path:
        interpolation: ``"hermite"`` (cubic Hermite with backward differences, what the official
            experiments use) or ``"natural"`` (natural cubic spline) — from
            :mod:`sciflow.solvers.interpolation`; ``"linear"`` is also accepted.
        intensity: append the cumulative observation counts per channel to the path (Kidger et
            al. 2020, §3.5 "observational intensity").

    Solver:
        method: SDE kinds: ``"euler"`` (Euler–Maruyama), ``"milstein"``, ``"sri"`` (Itô
            Rößler SRI), ``"heun"`` (Stratonovich Heun: the SDE is then read in the
            Stratonovich sense).
        ode_solver: fixed-step method of the ODE kinds (``"euler"``, ``"midpoint"``, ``"heun"``,
            ``"rk4"``).
        n_steps: ``None``: one step per gap between consecutive times of the batch's union of
            observation (and target) times, as in the paper; an int: steps of at most
            ``(t_end - t_start) / n_steps``.
        time_grid: ``"union"`` (one grid for the batch: the union of its times), ``"per_sample"``
            (each series steps through its own times) or ``"auto"`` (union when all series share
            their times, else per-sample); see :mod:`~sciflow.models.stable_sde.control`. The
            torchsde backend always uses the union grid (torchsde has one clock per solve).
        solver_backend: ``"sciflow"`` (:func:`sciflow.solvers.sde.sdeint`) or ``"torchsde"``
            (the same SDE through ``torchsde.sdeint``, the official code's path).
        n_eval_samples: sample paths averaged by :meth:`StableSDE.predict`.

    Divergence: ``nonfinite="nan"`` (default): when the solver reports a non-finite state
    (``FloatingPointError``), ``forward``/``loss``/``predict``/``sample`` return NaN outputs that
    stay on the autograd graph, so :func:`sciflow.training.fit`'s non-finite guard skips and counts
    the step (``skipped_steps``) instead of the run crashing; ``"raise"`` re-raises the solver's
    error. :meth:`StableSDE.latent` always raises.

    Readout: ``readout_norm="batch"`` (default, classification only): ``Linear → BatchNorm → ReLU →
    Dropout → Linear`` on ``z(T)``, as the official code's classifier. With the drift-controlled
    latent of the stable SDEs, ``z(T)`` varies little across series at initialisation (the drift
    integrates over ``[0, 1]``) and on long series (GunPoint, ArrowHead) the un-normalised readout sits on a
    loss plateau for hundreds of steps; the batch normalisation removes the common part and rescales
    the rest. Its running statistics lag behind fast-moving weights, so recompute them on the
    training data before evaluating (:meth:`StableSDE.calibrate`). ``"none"``: ``Linear → ReLU →
    Dropout → Linear`` (predictions never depend on running statistics).

    Other: ``diffusion_init`` is the initial value of the scale parameter ``θ`` of the diffusion
    ``σ(t) = sigmoid(θ) · ReLU(MLP(sin t, cos t))`` (the official code starts at ``θ = 1``);
    ``dropout`` is the dropout rate of the classification readout.
    """

    kind: Kind = "lnsde"
    input_channels: int = 1
    hidden_dim: int = 16
    hidden_hidden_dim: int | None = None
    num_layers: int = 2
    variant: Literal["paper", "official"] = "paper"
    n_classes: int | None = None
    task: Literal["classification", "forecasting", "interpolation"] = "classification"
    likelihood: Literal["gaussian", "mse"] = "gaussian"
    interpolation: Literal["hermite", "natural", "linear"] = "hermite"
    intensity: bool = False
    method: Literal["euler", "milstein", "sri", "heun"] = "euler"
    ode_solver: Literal["euler", "midpoint", "heun", "rk4"] = "euler"
    n_steps: int | None = None
    time_grid: Literal["auto", "union", "per_sample"] = "auto"
    solver_backend: Literal["sciflow", "torchsde"] = "sciflow"
    diffusion_init: float = 1.0
    dropout: float = 0.1
    n_eval_samples: int = 1
    nonfinite: Literal["nan", "raise"] = "nan"
    readout_norm: Literal["batch", "none"] = "batch"

    def __post_init__(self) -> None:
        check_choices(self)  # every Literal field (kind, task, variant, solver, ...)
        for name in ("input_channels", "hidden_dim", "num_layers", "n_eval_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.hidden_hidden_dim is not None and self.hidden_hidden_dim < 1:
            raise ValueError(f"Config.hidden_hidden_dim must be >= 1 or None, got {self.hidden_hidden_dim}")
        if self.n_steps is not None and (not isinstance(self.n_steps, int) or self.n_steps < 1):
            raise ValueError(f"Config.n_steps must be an integer >= 1 or None, got {self.n_steps!r}")
        if self.task == "classification":
            if self.n_classes is None or self.n_classes < 2:
                raise ValueError(f"task='classification' needs n_classes >= 2, got n_classes={self.n_classes!r}")
        elif self.n_classes is not None:
            raise ValueError(f"n_classes is only used with task='classification' (task={self.task!r}); pass None")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Config.dropout must be in [0, 1), got {self.dropout}")
        if not math.isfinite(self.diffusion_init):
            raise ValueError(f"Config.diffusion_init must be finite, got {self.diffusion_init}")
        if self.solver_backend == "torchsde" and self.kind not in SDE_KINDS:
            raise ValueError(f"solver_backend='torchsde' applies to the SDE kinds {SDE_KINDS}, not kind={self.kind!r}")

    @property
    def width(self) -> int:
        return self.hidden_hidden_dim or self.hidden_dim

    @property
    def is_sde(self) -> bool:
        return self.kind in SDE_KINDS
