"""``Config`` of :class:`~sciflow.models.langevin_flow.LangevinFlow` and its GRU baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices


@dataclass(frozen=True)
class Config:
    """Sequential VAE with underdamped Langevin latents (Song, Keller, Yue, Perona & Welling 2025).

    Observations
        ``obs_dim``: channels decoded (neurons or observed variables). ``input_dim``: the first
        ``input_dim`` channels are the encoder's input ("held-in"); the rest are only decoded
        ("held-out" neurons for co-smoothing). ``None``: all channels are input.
        ``n_forward``: the last ``n_forward`` bins are hidden from the encoder and predicted
        (forward prediction). ``likelihood``: ``poisson`` (counts; the readout is the log of the
        expected count per bin) or ``gaussian`` (the readout is the mean; the ELBO uses one
        learned standard deviation per channel).
    Latent dynamics (LangevinFlow)
        ``latent_dim`` positions ``z`` and as many velocities ``v``. ``potential``:
        ``coupled_oscillators`` (the paper's quadratic potential: ``n_channels`` rings of
        ``latent_dim / n_channels`` oscillators coupled by a circular convolution of odd
        ``kernel_size``) or ``mlp`` (``U(z) = MLP(z) + ½ κ|z|²``, width ``potential_width``).
        ``closed_form_force``: use the analytic ``-∇U`` of the quadratic potential (else autograd).
        ``scheme``: ``official`` (:class:`~sciflow.solvers.langevin.LangevinFlowEuler`, the
        paper's code; ``gamma`` is then a per-step coefficient in [0, 1]), ``baoab`` or ``obabo``
        (``gamma`` a rate). ``dt``: step per bin; ``temperature``: noise temperature.
        ``learn_friction`` / ``learn_temperature``: make ``γ`` / ``T`` trainable (positive
        transforms initialised at ``gamma`` / ``temperature``; see
        :class:`~sciflow.models.langevin_flow.dynamics.LangevinLatent`).
        ``external_force``: add a force ``u_t = W h_t`` from the encoder's per-step features.
    Networks
        ``encoder_hidden``: bidirectional GRU width; ``d_model``/``n_heads``/``ff_dim``/
        ``dropout``: the one-layer Transformer decoder over ``[z, v, h]``.
        ``generator_hidden``: generator GRU width of the LFADS-like baseline (which ignores the
        Langevin and Transformer fields). ``ode_substeps``: RK4 steps per bin of the latent-ODE
        baseline.
    Objective
        ``kl_weight`` with a linear ramp from 0 over ``kl_ramp_steps`` training steps;
        ``coordinated_dropout``: probability of dropping an input entry (Keshtkaran & Pandarinath
        2019); the reconstruction of held-in channels is scored only on dropped entries.
        ``n_eval_samples``: posterior samples averaged by :meth:`posterior_mean`.
    """

    obs_dim: int = 30
    input_dim: int | None = None
    n_forward: int = 0
    likelihood: Literal["poisson", "gaussian"] = "poisson"
    observation_std: Literal["decoded", "channel"] = "decoded"
    latent_dim: int = 16
    potential: Literal["coupled_oscillators", "mlp"] = "coupled_oscillators"
    n_channels: int = 2
    kernel_size: int = 3
    potential_width: int = 64
    closed_form_force: bool = True
    scheme: Literal["official", "baoab", "obabo"] = "official"
    dt: float = 0.1
    gamma: float = 0.1
    temperature: float = 0.1
    learn_friction: bool = False
    learn_temperature: bool = False
    external_force: bool = False
    encoder_hidden: int = 64
    d_model: int = 64
    n_heads: int = 4
    ff_dim: int = 128
    dropout: float = 0.1
    generator_hidden: int = 64
    ode_substeps: int = 1
    kl_weight: float = 1.0
    kl_ramp_steps: int = 500
    coordinated_dropout: float = 0.3
    n_eval_samples: int = 8

    def __post_init__(self) -> None:
        check_choices(self)  # likelihood, observation_std, potential, scheme
        ints = {"obs_dim": self.obs_dim, "latent_dim": self.latent_dim, "n_channels": self.n_channels,
                "kernel_size": self.kernel_size, "potential_width": self.potential_width,
                "encoder_hidden": self.encoder_hidden, "d_model": self.d_model, "n_heads": self.n_heads,
                "ff_dim": self.ff_dim, "generator_hidden": self.generator_hidden,
                "n_eval_samples": self.n_eval_samples, "ode_substeps": self.ode_substeps}
        for k, v in ints.items():
            if int(v) != v or v < 1:
                raise ValueError(f"Config.{k} must be an integer >= 1, got {v!r}")
        if self.input_dim is not None and not 1 <= self.input_dim <= self.obs_dim:
            raise ValueError(f"Config.input_dim must be in [1, obs_dim={self.obs_dim}], got {self.input_dim}")
        if self.n_forward < 0:
            raise ValueError(f"Config.n_forward must be >= 0, got {self.n_forward}")
        if self.potential == "coupled_oscillators":
            if self.latent_dim % self.n_channels:
                raise ValueError(f"Config.latent_dim={self.latent_dim} must be divisible by "
                                 f"n_channels={self.n_channels} (rings of oscillators)")
            if self.kernel_size % 2 == 0:
                raise ValueError(f"Config.kernel_size must be odd (centred coupling), got {self.kernel_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"Config.d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not (self.dt > 0 and self.gamma >= 0 and self.temperature >= 0):
            raise ValueError(f"need dt > 0, gamma >= 0, temperature >= 0; got {self.dt}, {self.gamma}, "
                             f"{self.temperature}")
        if self.scheme == "official" and self.gamma > 1:
            raise ValueError(f"scheme='official' takes a per-step gamma in [0, 1], got {self.gamma}")
        if self.learn_friction and not (0 < self.gamma < 1 if self.scheme == "official" else self.gamma > 0):
            raise ValueError(f"learn_friction needs an initial gamma strictly inside its range, got {self.gamma}")
        if self.learn_temperature and not self.temperature > 0:
            raise ValueError(f"learn_temperature needs an initial temperature > 0, got {self.temperature}")
        if not 0 <= self.dropout < 1 or not 0 <= self.coordinated_dropout < 1:
            raise ValueError("dropout and coordinated_dropout must be in [0, 1)")
        if self.kl_weight < 0 or self.kl_ramp_steps < 0:
            raise ValueError("kl_weight and kl_ramp_steps must be >= 0")

    @property
    def n_input(self) -> int:
        """Number of encoder input channels."""
        return self.obs_dim if self.input_dim is None else self.input_dim
