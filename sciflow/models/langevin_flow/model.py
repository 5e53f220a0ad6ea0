"""LangevinFlow (Song, Keller, Yue, Perona & Welling 2025) and an LFADS-like GRU baseline.

Both are sequential VAEs on :class:`~sciflow.data.batches.TrajectoryBatch` with ``values
(batch, time, obs_dim)``: spike counts (Poisson) or continuous observations (Gaussian). A
bidirectional GRU encodes the held-in channels ``x_{1:T}`` into per-step features ``h_t`` and a
diagonal Gaussian posterior ``q(s_0 | x)`` over the initial latent state; latent dynamics roll
``s_0`` forward; a decoder maps the latent path to the likelihood parameters. The objective is
the negative ELBO (Kingma & Welling 2014) per scored observation,

.. math::
    \\mathcal L = \\frac{1}{|M|} \\sum_{(b,t,n) ∈ M} -\\log p(x_{btn} | s_{b,0:T})
                 + β(\\text{step})\\,\\frac{1}{B T N} \\sum_b \\mathrm{KL}(q(s_{b,0}|x_b) \\,\\|\\, N(0, I)),

with ``β`` ramped linearly from 0 to ``kl_weight`` (LFADS' KL warm-up) and ``M`` the scored
entries: with coordinated dropout (Keshtkaran & Pandarinath 2019) a random fraction ``p`` of the
held-in input entries is zeroed (the rest scaled by ``1/(1-p)``) and the held-in reconstruction
is scored only on the dropped entries, which stops the autoencoder from copying spikes through;
held-out channels and forward-prediction bins are always scored.

* :class:`LangevinFlow`: ``s_0 = (z_0, v_0)``, underdamped Langevin latents
  (:class:`~sciflow.models.langevin_flow.dynamics.LangevinLatent`), decoder = one Transformer
  layer over ``[z_t, v_t, h_t]`` + linear readout (paper §3). The Langevin noise is part of the
  generative path (one draw per posterior sample); the KL is on the initial state only.
* :class:`LatentODE`: ``s_0 = z_0``, ``dz/dt = f_θ(z)`` (shared RK4), linear readout.
* :class:`GRUSequentialVAE`: ``s_0 = g_0`` of an autonomous generator GRU, linear factors and a
  linear readout (LFADS without controller inputs).

Predictive distribution: :meth:`~_SequentialVAE.sample` draws new observations (posterior of
``s_0``, latent-path noise, observation noise); :meth:`~_SequentialVAE.sample_means` omits the
observation noise. Gaussian likelihood: the ELBO uses a learned per-channel ``σ``; with
``observation_std='decoded'`` a linear head on the (detached) decoder features also predicts
``σ_t`` per bin and channel, fitted by the Gaussian NLL with the mean held fixed, and
:meth:`sample` uses it. Deviation from a joint heteroscedastic likelihood, which lets the model
widen σ on hard (forecast) bins instead of fitting their means (Seitzer et al. 2022).

Randomness: during training (reparameterisation, coordinated dropout, Langevin noise, dropout)
uses torch's global stream, which :func:`sciflow.training.fit` seeds; :meth:`sample` takes
``generator=``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.langevin_flow.config import Config
from sciflow.models.langevin_flow.dynamics import SCHEMES, GRUGenerator, LangevinLatent, LatentODEDynamics
from sciflow.models.langevin_flow.likelihoods import check_counts, gaussian_nll, poisson_nll
from sciflow.models.langevin_flow.networks import GRUEncoder, TransformerReadout
from sciflow.models.langevin_flow.potential import CoupledOscillatorPotential, LatentPotential, MLPPotential


def _randn(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


class _SequentialVAE(SciflowModel):
    """Shared encoder, likelihood, coordinated dropout, ELBO and sampling."""

    stochastic: ClassVar[bool] = True
    batch_type: ClassVar[type] = TrajectoryBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config, state_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = GRUEncoder(cfg.n_input, cfg.encoder_hidden, state_dim)
        self.decoded_std = cfg.likelihood == "gaussian" and cfg.observation_std == "decoded"
        if cfg.likelihood == "gaussian":
            self.log_std = nn.Parameter(torch.zeros(cfg.obs_dim))
        self.std_head: nn.Linear | None = None  # built by the subclass once its feature width is known
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))

    def _build_readout(self, n_features: int) -> nn.Linear:
        """Linear readout of the likelihood's location from the decoder features, plus the
        predictive-σ head when ``observation_std='decoded'``."""
        if self.decoded_std:
            self.std_head = nn.Linear(n_features, self.cfg.obs_dim)
        return nn.Linear(n_features, self.cfg.obs_dim)

    def _params(self, readout: nn.Linear, features: Tensor) -> Tensor:
        """``(B, T, n_params)``: the location, then (decoded σ) the raw σ from *detached* features."""
        loc = readout(features)
        if self.std_head is None:
            return loc
        return torch.cat([loc, self.std_head(features.detach())], -1)

    # ------------------------------------------------------------------ pieces
    def decode(self, h: Tensor, s0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Likelihood parameters ``(B, T, n_params)`` from features and ``s_0``: log-rates
        (Poisson), means, or means followed by raw standard deviations (``observation_std='decoded'``)."""
        raise NotImplementedError

    def _values(self, batch: TrajectoryBatch) -> Tensor:
        self.check_batch(batch)
        x = batch.values
        if x.ndim != 3 or x.shape[-1] != self.cfg.obs_dim:
            raise ValueError(f"{type(self).__name__} expects values (batch, time, {self.cfg.obs_dim}), "
                             f"got {tuple(x.shape)}")
        if x.shape[1] <= self.cfg.n_forward + 1:
            raise ValueError(f"need more than n_forward + 1 = {self.cfg.n_forward + 1} time bins, got {x.shape[1]}")
        if self.cfg.likelihood == "poisson":
            check_counts(x)
        elif not bool(torch.isfinite(x).all()):
            raise ValueError("observations contain NaN/inf")
        return x

    def _encoder_input(self, x: Tensor) -> Tensor:
        inp = x[..., : self.cfg.n_input]
        if self.cfg.n_forward:
            inp = torch.cat([inp[:, : -self.cfg.n_forward], torch.zeros_like(inp[:, -self.cfg.n_forward:])], 1)
        return inp

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        """Elementwise negative log-likelihood of the ELBO ``(B, T, obs_dim)`` (Gaussian: with the
        per-channel ``σ``)."""
        if self.cfg.likelihood == "poisson":
            return poisson_nll(params, x)
        return gaussian_nll(params[..., : self.cfg.obs_dim], self.log_std, x)

    def mean_observation(self, params: Tensor) -> Tensor:
        """Expected count per bin (Poisson) or mean (Gaussian), ``(B, T, obs_dim)``."""
        return params.exp() if self.cfg.likelihood == "poisson" else params[..., : self.cfg.obs_dim]

    def observation_std(self, params: Tensor) -> Tensor:
        """Predictive standard deviation of the Gaussian observations, broadcastable to
        ``(B, T, obs_dim)``: the decoded ``softplus(·) + 1e-3`` per bin and channel, or the
        per-channel ``σ`` of the ELBO."""
        if self.cfg.likelihood != "gaussian":
            raise ValueError("observation_std is defined for likelihood='gaussian' only")
        if self.decoded_std:
            return F.softplus(params[..., self.cfg.obs_dim:]) + 1e-3
        return self.log_std.exp()

    @property
    def kl_beta(self) -> Tensor:
        """``kl_weight · min(1, step / kl_ramp_steps)`` as a 0-d tensor (no host sync)."""
        ramp = self.cfg.kl_ramp_steps
        if ramp == 0:
            return torch.full((), self.cfg.kl_weight, device=self.train_step.device)
        return self.cfg.kl_weight * (self.train_step.float() / ramp).clamp(max=1.0)

    # ------------------------------------------------------------------ protocol
    def loss(self, batch: TrajectoryBatch) -> LossOutput:
        x = self._values(batch)
        B, T, N = x.shape
        inp = self._encoder_input(x)
        score = torch.ones_like(x)
        p = self.cfg.coordinated_dropout
        if self.training and p > 0:
            keep = (torch.rand(inp.shape, device=x.device) >= p).to(x.dtype)
            inp = inp * keep / (1 - p)
            score = torch.cat([1 - keep, score[..., self.cfg.n_input:]], -1)
            if self.cfg.n_forward:
                score[:, -self.cfg.n_forward:] = 1.0
        h, mean, logvar = self.encoder(inp)
        mean, logvar = mean.to(x.dtype), logvar.to(x.dtype)  # bf16 autocast: the latent path in the data's dtype
        s0 = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        params = self.decode(h, s0)
        denom = score.sum().clamp_min(1.0)
        nll = (self.nll(params, x) * score).sum() / denom
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean() / (T * N)
        beta = self.kl_beta
        if self.training:
            self.train_step += 1
        total = nll + beta * kl
        terms = {"nll": nll.detach(), "kl": kl.detach(), "beta": beta.detach()}
        if self.decoded_std:
            # predictive σ head: Gaussian NLL with the location held fixed (no gradient into the
            # latent model), so the ELBO's fit of the means is untouched
            loc = params[..., :N].detach()
            std_nll = (gaussian_nll(loc, self.observation_std(params).log(), x) * score).sum() / denom
            total = total + std_nll
            terms["std_nll"] = std_nll.detach()
        return LossOutput(total, terms)

    def _draw_params(self, batch: TrajectoryBatch, n_samples: int, generator: torch.Generator | None) -> Tensor:
        """Decoder outputs ``(n_samples · B, T, n_params)``, one per draw of ``s_0 ~ q`` and of the latent noise."""
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        x = self._values(batch)
        h, mean, logvar = self.encoder(self._encoder_input(x))
        mean, logvar = mean.to(x.dtype), logvar.to(x.dtype)
        h = h.repeat(n_samples, 1, 1)
        mean, logvar = mean.repeat(n_samples, 1), logvar.repeat(n_samples, 1)
        s0 = mean + torch.exp(0.5 * logvar) * _randn(mean.shape, mean, generator)
        return self.decode(h, s0, generator)

    @torch.no_grad()
    def sample(self, batch: TrajectoryBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        r"""Draws of the posterior predictive distribution of the observations,
        ``(n_samples, batch, time, obs_dim)``:

        .. math:: s_0 \sim q(s_0 | x),\quad s_{1:T} \sim p(s_{1:T} | s_0),\quad
                  \tilde x_t \sim p(x_t | s_t),

        i.e. posterior uncertainty of the initial state, the latent-path noise (Langevin) and the
        likelihood's observation noise (Poisson counts, or Gaussian values with the learned σ).
        Use :meth:`sample_means` for the noise-free expected observations (rates). Uses the
        module's current mode (call ``.eval()`` first to switch dropout off)."""
        params = self._draw_params(batch, n_samples, generator)
        mean = self.mean_observation(params)
        if self.cfg.likelihood == "poisson":
            out = torch.poisson(mean, generator=generator)
        else:
            out = mean + self.observation_std(params) * _randn(mean.shape, mean, generator)
        return out.reshape(n_samples, -1, *out.shape[1:])

    @torch.no_grad()
    def sample_means(self, batch: TrajectoryBatch, n_samples: int = 1, *,
                     generator: torch.Generator | None = None) -> Tensor:
        """Draws of the expected observation ``E[x_t | s_t]`` (expected counts per bin, or
        Gaussian means), ``(n_samples, batch, time, obs_dim)``: :meth:`sample` without the
        observation noise (posterior and latent-path noise only)."""
        out = self.mean_observation(self._draw_params(batch, n_samples, generator))
        return out.reshape(n_samples, -1, *out.shape[1:])

    def posterior_mean(self, batch: TrajectoryBatch, n_samples: int | None = None, *,
                       generator: torch.Generator | None = None) -> Tensor:
        """Average of :meth:`sample_means` over ``n_samples`` (default ``cfg.n_eval_samples``) draws,
        ``(batch, time, obs_dim)``: the rates used for bits/spike and R²."""
        return self.sample_means(batch, n_samples or self.cfg.n_eval_samples, generator=generator).mean(0)


def _check_config(model: str, cfg: object) -> Config:
    if not isinstance(cfg, Config):
        raise TypeError(f"{model} takes a sciflow.models.langevin_flow.Config, got {type(cfg).__name__}")
    return cfg


def build_potential(cfg: Config) -> LatentPotential:
    """The potential named by ``cfg.potential``."""
    if cfg.potential == "coupled_oscillators":
        return CoupledOscillatorPotential(cfg.latent_dim, cfg.n_channels, cfg.kernel_size)
    return MLPPotential(cfg.latent_dim, width=cfg.potential_width)


class LangevinFlow(_SequentialVAE):
    """Sequential VAE with underdamped Langevin latents (Song et al. 2025); see the module docstring.

    ``forward(batch)`` is not defined: use :meth:`loss`, :meth:`sample`, :meth:`posterior_mean`
    or :meth:`latents` (posterior-mean latent path, for plots).
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__(_check_config("LangevinFlow", cfg), 2 * cfg.latent_dim)
        self.dynamics = LangevinLatent(build_potential(cfg), SCHEMES[cfg.scheme](), dt=cfg.dt, gamma=cfg.gamma,
                                       temperature=cfg.temperature, closed_form=cfg.closed_form_force,
                                       learn_friction=cfg.learn_friction, learn_temperature=cfg.learn_temperature)
        feat = 2 * cfg.encoder_hidden
        self.to_force = nn.Linear(feat, cfg.latent_dim) if cfg.external_force else None
        self.decoder = TransformerReadout(2 * cfg.latent_dim + feat, cfg.d_model, cfg.n_heads,
                                          cfg.ff_dim, cfg.dropout)
        self.readout = self._build_readout(cfg.d_model)

    @property
    def potential(self) -> LatentPotential:
        return self.dynamics.potential

    def rollout(self, h: Tensor, s0: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Latent path ``(z, v)``, each ``(B, T, latent_dim)``, from ``s_0 = (z_0, v_0)``."""
        z0, v0 = s0.chunk(2, -1)
        u = self.to_force(h) if self.to_force is not None else None
        return self.dynamics(z0, v0, h.shape[1], u, generator)

    def decode(self, h: Tensor, s0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z, v = self.rollout(h, s0, generator)
        return self._params(self.readout, self.decoder(torch.cat([z, v, h], -1)))

    @torch.no_grad()
    def latents(self, batch: TrajectoryBatch, *, generator: torch.Generator | None = None) -> Tensor:
        """Latent positions ``z (batch, time, latent_dim)`` from the posterior mean of ``(z_0, v_0)``."""
        x = self._values(batch)
        h, mean, _ = self.encoder(self._encoder_input(x))
        return self.rollout(h, mean, generator)[0]


class GRUSequentialVAE(_SequentialVAE):
    """LFADS-like baseline: ``g_0 ~ q``, autonomous generator GRU, linear factors, linear readout.

    Uses ``generator_hidden`` (state size), ``latent_dim`` (factors), ``dropout`` and the shared
    encoder/likelihood/objective fields of :class:`Config`.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__(_check_config("GRUSequentialVAE", cfg), cfg.generator_hidden)
        self.generator = GRUGenerator(cfg.generator_hidden, cfg.latent_dim, cfg.dropout)
        self.readout = self._build_readout(cfg.latent_dim)

    def decode(self, h: Tensor, s0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._params(self.readout, self.generator(s0, h.shape[1]))


class LatentODE(_SequentialVAE):
    """Latent-ODE baseline: ``z_0 ~ q``, ``dz/dt = MLP(z)`` on the bin grid (step ``dt``, shared
    RK4), linear readout. Uses ``latent_dim``, ``potential_width`` (the MLP width) and ``dt``."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(_check_config("LatentODE", cfg), cfg.latent_dim)
        self.dynamics = LatentODEDynamics(cfg.latent_dim, cfg.potential_width, dt=cfg.dt, substeps=cfg.ode_substeps)
        self.readout = self._build_readout(cfg.latent_dim)

    def decode(self, h: Tensor, s0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._params(self.readout, self.dynamics(s0, h.shape[1]))
