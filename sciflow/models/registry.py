"""``MODELS``: model name -> model class, for configs and the CLI only (inside the library, objects).

Every registered class implements :class:`sciflow.models.base.SciflowModel` and declares its
frozen config dataclass as the class attribute ``config_class``; ``MODELS[name](config)``
builds it. Model families add their entries in their own section below.
"""

from __future__ import annotations

from sciflow.models.causal_pinn import CausalPINN
from sciflow.models.langevin_flow import GRUSequentialVAE, LangevinFlow, LatentODE
from sciflow.models.meta_flow_matching import MetaFlowMatching
from sciflow.models.neural_ode import NeuralODE

MODELS: dict[str, type] = {
    "neural_ode": NeuralODE,
    "causal_pinn": CausalPINN,
    "meta_flow_matching": MetaFlowMatching,
    "langevin_flow": LangevinFlow,
    "gru_sequential_vae": GRUSequentialVAE,
    "latent_ode": LatentODE,
}

__all__ = ["MODELS"]
