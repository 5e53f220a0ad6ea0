"""Generative samplers shared by the diffusion and flow-matching models.

Noise schedules (:class:`LinearVP`, :class:`CosineVP`, :class:`SigmoidVP`, :class:`VE`); diffusion
samplers (:class:`DDPM`, :class:`DDIM`, :class:`DPMSolverPP2M`, :class:`ProbabilityFlow`) run by
:func:`sample_diffusion`; flow-matching samplers (:class:`FlowEuler`, :class:`FlowMidpoint`,
:class:`FlowHeun`, :class:`FlowAdaptive`) run by :func:`sample_flow`; replacement conditioning
hooks. Every sampler takes an ``nfe`` budget.
"""

from sciflow.solvers.generative._common import NFEBudgetExceeded, log_snr_time_grid, uniform_time_grid
from sciflow.solvers.generative.conditioning import DiffusionReplacement, FlowReplacement
from sciflow.solvers.generative.diffusion import DDIM, DDPM, DiffusionSampler, DPMSolverPP2M, sample_diffusion
from sciflow.solvers.generative.flow_matching import (FlowAdaptive, FlowEuler, FlowHeun, FlowMidpoint, FlowSampler,
                                                      sample_flow)
from sciflow.solvers.generative.probability_flow import ProbabilityFlow
from sciflow.solvers.generative.schedules import VE, CosineVP, LinearVP, NoiseSchedule, SigmoidVP

__all__ = [
    "CosineVP", "DDIM", "DDPM", "DPMSolverPP2M", "DiffusionReplacement", "DiffusionSampler", "FlowAdaptive",
    "FlowEuler", "FlowHeun", "FlowMidpoint", "FlowReplacement", "FlowSampler", "LinearVP", "NFEBudgetExceeded",
    "NoiseSchedule", "ProbabilityFlow", "SigmoidVP", "VE", "log_snr_time_grid", "sample_diffusion", "sample_flow",
    "uniform_time_grid",
]
