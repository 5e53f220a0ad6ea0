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
from sciflow.models.wavelet_diffusion import WDNO, WDNOSuperResolution

MODELS: dict[str, type] = {
    "neural_ode": NeuralODE,
    "causal_pinn": CausalPINN,
    "meta_flow_matching": MetaFlowMatching,
    "langevin_flow": LangevinFlow,
    "gru_sequential_vae": GRUSequentialVAE,
    "latent_ode": LatentODE,
    # wavelet diffusion neural operators (Hu et al., ICLR 2025)
    "wdno": WDNO,
    "wdno_superres": WDNOSuperResolution,
}

# --- stable neural SDEs (issue 7; LSDE/LNSDE/GSDE and baselines, one class, Config.kind) ---
from sciflow.models.stable_sde import StableSDE  # noqa: E402

MODELS["stable_sde"] = StableSDE
# --- end stable neural SDEs ---

# --- neural operators (issue 9 baselines: FNO / U-Net, one-shot and autoregressive) ---
from sciflow.models.neural_operator import NeuralOperator  # noqa: E402

MODELS["neural_operator"] = NeuralOperator
# --- end neural operators ---

__all__ = ["MODELS"]
