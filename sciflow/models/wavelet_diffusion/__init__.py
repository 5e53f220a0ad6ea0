"""Wavelet diffusion neural operators (Hu et al., ICLR 2025): generative surrogates of whole
trajectories in the wavelet domain, for simulation, super-resolution and control.

``WDNO(Config(...))``: the base model; ``WDNOSuperResolution(SuperResolutionConfig(...))``: the
multi-resolution refinement; ``ControlObjective`` / ``ResimulatedObjective`` (with
``burgers_simulator``) and ``evaluate_burgers_control``: guided control.
See ``docs/models/wavelet_diffusion.md``.
"""

from sciflow.models.wavelet_diffusion.config import Config, SuperResolutionConfig
from sciflow.models.wavelet_diffusion.control import (BurgersControlResult, ControlObjective, ResimulatedObjective,
                                                      burgers_simulator, evaluate_burgers_control, grid_forcing)
from sciflow.models.wavelet_diffusion.model import WDNO, WDNOSample
from sciflow.models.wavelet_diffusion.superres import WDNOSuperResolution, refined_shape, subsample
from sciflow.models.wavelet_diffusion.transform import ChannelScaler

__all__ = ["Config", "SuperResolutionConfig", "WDNO", "WDNOSample", "WDNOSuperResolution", "ChannelScaler",
           "ControlObjective", "ResimulatedObjective", "burgers_simulator", "BurgersControlResult",
           "evaluate_burgers_control", "grid_forcing", "refined_shape", "subsample"]
