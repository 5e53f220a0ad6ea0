"""Langevin latent flows: sequential VAEs with underdamped Langevin latent dynamics.

Song, Keller, Yue, Perona & Welling (2025), "Langevin Flows for Modeling Neural Latent Dynamics".
:class:`LangevinFlow` and the baselines (LFADS-like :class:`GRUSequentialVAE`, :class:`LatentODE`) share one
:class:`Config`; :mod:`~sciflow.models.langevin_flow.metrics` holds bits per spike, co-smoothing
rate R² and the Neural Latents Benchmark metrics (vel R², PSTH R², :func:`evaluate_nlb`).
"""

from sciflow.models.langevin_flow.config import Config
from sciflow.models.langevin_flow.dynamics import GRUGenerator, LangevinLatent, LatentODEDynamics
from sciflow.models.langevin_flow.metrics import (bits_per_spike, co_smoothing, evaluate_nlb, forward_prediction_bps,
                                                  psth_r2, rate_r2, ridge_fit, velocity_r2)
from sciflow.models.langevin_flow.model import GRUSequentialVAE, LangevinFlow, LatentODE
from sciflow.models.langevin_flow.potential import CoupledOscillatorPotential, LatentPotential, MLPPotential

__all__ = [
    "Config", "LangevinFlow", "GRUSequentialVAE", "LatentODE", "LangevinLatent", "GRUGenerator",
    "LatentODEDynamics",
    "LatentPotential", "CoupledOscillatorPotential", "MLPPotential",
    "bits_per_spike", "co_smoothing", "forward_prediction_bps", "rate_r2",
    "velocity_r2", "psth_r2", "ridge_fit", "evaluate_nlb",
]
