"""``MODELS``: model name -> model class, for configs and the CLI only (inside the library, objects).

Every registered class implements :class:`sciflow.models.base.SciflowModel` and declares its
frozen config dataclass as the class attribute ``config_class``; ``MODELS[name](config)``
builds it. Model families add their entries in their own section below.
"""

from __future__ import annotations

from sciflow.models.neural_ode import NeuralODE

MODELS: dict[str, type] = {
    "neural_ode": NeuralODE,
}

# --- other families: add entries below with MODELS.update({...}); lower-case names ---

__all__ = ["MODELS"]
