"""Stable neural SDEs (Oh, Lim & Kim, ICLR 2024) and their baselines for irregular time series.

``StableSDE(Config(kind="lnsde", input_channels=C, hidden_dim=d, n_classes=K))`` covers the LSDE,
LNSDE and GSDE and the naive neural SDE, neural ODE, neural CDE and ODE-RNN baselines on the same
control-path pipeline; ``loss`` / ``predict`` / ``sample`` on :class:`~sciflow.data.batches.IrregularBatch`.
"""

from sciflow.models.stable_sde.config import KINDS, Config
from sciflow.models.stable_sde.control import Control, build_control
from sciflow.models.stable_sde.model import StableSDE

__all__ = ["KINDS", "Config", "Control", "StableSDE", "build_control"]
