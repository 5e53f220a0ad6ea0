"""Configuration of a causal PINN run (frozen; YAML files list only deviations from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices


@dataclass(frozen=True)
class Config:
    """Everything that defines a causal-PINN experiment.

    Defaults follow the paper's Allen–Cahn/KS settings scaled to what one CPU core trains in
    minutes; ``sciflow/configs/pinn_*.yaml`` and ``--scale paper`` in the benchmarks restore the
    published sizes (4 x 256 modified MLP, 1e5-3e5 Adam steps, N_t = 32, eps = 1.0).

    Problem and network:
        problem: key of :data:`~sciflow.models.causal_pinn.problems.PROBLEMS`; t_final: end of
            its time span (``None``: the problem's default; KS, Navier–Stokes and Lorenz only,
            Burgers and Allen–Cahn are fixed by their reference data).
        architecture: ``"mlp"`` or ``"modified_mlp"``; width, depth; tanh, Glorot.
        periodic_embedding, n_harmonics: exact periodic embedding of periodic axes.
        periodic_bc_loss: with ``periodic_embedding=False``, impose periodicity of periodic axes
            as soft loss terms instead (the original PINN formulation of Raissi et al. 2019):
            ``L_bc = mean (u(lo) - u(hi))^2 + mean (u_x(lo) - u_x(hi))^2`` at ``n_boundary``
            random times per axis, weighted by ``lambda_bc``.
        fourier_features (0 = off), fourier_scale, fourier_trainable; factorized (RWF).
        normalize_time: the network sees ``t / (t1 - t0)`` (each window ``[0, 1]``);
        output_scale: multiplies the network output (ODE states of size ~10-50). Both are
        sciflow additions, off by default (the official code feeds raw ``t``, scale 1).
    Causal training:
        causal: use the causal weights (False: the plain PINN residual mean).
        n_chunks: N_t, temporal chunks of the sorted collocation times.
        epsilon: the fixed causality parameter (``anneal=False``).
        anneal, epsilon_schedule, delta: Algorithm 1 (stage ends when ``min w > delta``).
        ic_in_weights: put ``lambda_ic L_ic`` in front of the cumulative sum (official code).
    Loss weights and balancing:
        lambda_ic, lambda_bc, lambda_res: initial weights; balance: gradient-norm balancing
        every ``balance_every`` steps with EMA ``balance_momentum`` (Wang et al. 2023, jaxpi).
    Optimisation:
        steps: Adam steps (over all annealing stages), lr with exponential decay
        ``lr * decay_rate ** (step / decay_steps)``; lbfgs_steps: optional L-BFGS finish (a
        sciflow addition; the paper trains with Adam only), on one fixed set of collocation points,
        or with ``lbfgs_resample`` > 0 on fresh points every that many iterations (a new L-BFGS
        each time: its curvature pairs belong to the old points' loss).
        n_interior (multiple of n_chunks), n_initial, n_boundary: points per step (resampled).
        check_every: how often (steps) min w is read back for the stage test and logs.
        time_budget_s: stop Adam (after the step that passes it) and L-BFGS (at a block boundary)
        once the run has used this many seconds of process CPU time, shared by the time windows
        (``None``: no limit); the default of the ``time_budget_s`` argument of ``train`` and ``march``.
        time_windows: time-marching windows (each initialised from the previous prediction).
    Numerics: derivative_engine (``auto``: Taylor mode for orders >= 3 or the modified MLP,
        nested autograd otherwise — the faster of the two as measured; or
        ``taylor``/``autograd``/``jvp``/``vmap_hessian``/``hvp``; ``compile=True`` makes ``auto``
        pick Taylor mode),
        compile: ``torch.compile`` the loss (forward and backward; tens of CPU seconds to compile,
        then faster steps — see ``benchmarks/pinn_throughput.py``), dtype, seed.
    """

    problem: str = "burgers"
    t_final: float | None = None
    architecture: Literal["mlp", "modified_mlp"] = "mlp"
    width: int = 128
    depth: int = 4
    periodic_embedding: bool = True
    periodic_bc_loss: bool = False
    n_harmonics: int = 1
    fourier_features: int = 0
    fourier_scale: float = 1.0
    fourier_trainable: bool = False
    factorized: bool = False
    normalize_time: bool = False
    output_scale: float = 1.0

    causal: bool = True
    n_chunks: int = 32
    epsilon: float = 1.0
    anneal: bool = False
    epsilon_schedule: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0)
    delta: float = 0.99
    ic_in_weights: bool = False

    lambda_ic: float = 1.0
    lambda_bc: float = 1.0
    lambda_res: float = 1.0
    balance: bool = True
    balance_every: int = 500
    balance_momentum: float = 0.9

    steps: int = 5000
    lr: float = 1e-3
    decay_rate: float = 0.9
    decay_steps: int = 2000
    lbfgs_steps: int = 0
    lbfgs_resample: int = 0
    n_interior: int = 2048
    n_initial: int = 256
    n_boundary: int = 256
    check_every: int = 100
    time_budget_s: float | None = None
    time_windows: int = 1
    warm_start: bool = True

    derivative_engine: str = "auto"
    compile: bool = False
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self)  # architecture, dtype
        from sciflow.models.causal_pinn.problems import PROBLEMS, has_t_final  # (imports nothing of Config)

        if self.problem not in PROBLEMS:
            raise ValueError(f"Config.problem={self.problem!r}: unknown problem; choose one of {sorted(PROBLEMS)}")
        if self.t_final is not None and not self.t_final > 0:
            raise ValueError(f"Config.t_final must be > 0, got {self.t_final}")
        if self.t_final is not None and not has_t_final(self.problem):
            raise ValueError(f"Config.t_final={self.t_final}: problem {self.problem!r} has a fixed time span "
                             "(set by its reference data)")
        for name in ("width", "depth", "n_chunks", "n_interior"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be >= 1, got {getattr(self, name)}")
        if not self.epsilon >= 0:
            raise ValueError(f"Config.epsilon (causality parameter) must be >= 0, got {self.epsilon}")
        if self.n_interior % self.n_chunks:
            raise ValueError(f"Config: n_interior={self.n_interior} must be a multiple of n_chunks={self.n_chunks}")
        if not 0 < self.delta < 1:
            raise ValueError(f"Config.delta must be in (0, 1), got {self.delta}")
        if self.periodic_bc_loss and self.periodic_embedding:
            raise ValueError("Config.periodic_bc_loss needs periodic_embedding=False (the embedding "
                             "already makes the network exactly periodic)")
        if self.lbfgs_steps < 0 or self.lbfgs_resample < 0:
            raise ValueError(f"Config: lbfgs_steps and lbfgs_resample must be >= 0, got {self.lbfgs_steps} "
                             f"and {self.lbfgs_resample}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"Config.time_budget_s (CPU seconds) must be > 0 or None, got {self.time_budget_s}")
        if self.time_windows < 1 or self.steps < 0:
            raise ValueError("Config: time_windows >= 1 and steps >= 0 required")

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Build from a (YAML) mapping; unknown keys raise naming them."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown causal-PINN config keys {unknown}; allowed: {sorted(names)}")
        d = dict(d)
        if "epsilon_schedule" in d:
            d["epsilon_schedule"] = tuple(float(e) for e in d["epsilon_schedule"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "Config":
        import yaml

        with open(path) as fh:
            d = yaml.safe_load(fh) or {}
        d.update(overrides)
        return cls.from_dict(d)
