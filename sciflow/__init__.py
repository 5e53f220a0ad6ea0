"""sciflow: learning physical dynamics with neural differential equations.

The public API is curated here and resolved lazily, so ``import sciflow`` stays cheap and a
subpackage's optional dependencies are only imported when that subpackage is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    "LossOutput": "sciflow.models.base",
    "SciflowModel": "sciflow.models.base",
    "TrajectoryBatch": "sciflow.data.batches",
    "CollocationBatch": "sciflow.data.batches",
    "IrregularBatch": "sciflow.data.batches",
    "PopulationBatch": "sciflow.data.batches",
    "odeint": "sciflow.solvers",
    "solve": "sciflow.solvers",
    "sdeint": "sciflow.solvers",
    "ODETerm": "sciflow.solvers",
    "SDETerm": "sciflow.solvers",
    "SaveAt": "sciflow.solvers",
    "Solution": "sciflow.solvers",
    "Euler": "sciflow.solvers",
    "Midpoint": "sciflow.solvers",
    "Heun": "sciflow.solvers",
    "RK4": "sciflow.solvers",
    "Bosh3": "sciflow.solvers",
    "Dopri5": "sciflow.solvers",
    "Tsit5": "sciflow.solvers",
    "PIController": "sciflow.solvers",
    "ConstantStepSize": "sciflow.solvers",
    "DirectAdjoint": "sciflow.solvers",
    "BacksolveAdjoint": "sciflow.solvers",
    "CheckpointAdjoint": "sciflow.solvers",
    "Torchdiffeq": "sciflow.solvers",
    "TorchSDE": "sciflow.solvers",
    "EulerMaruyama": "sciflow.solvers",
    "Milstein": "sciflow.solvers",
    "StratonovichHeun": "sciflow.solvers",
    "SRI": "sciflow.solvers",
    "SRA1": "sciflow.solvers",
    "ReversibleHeun": "sciflow.solvers",
    "Diagonal": "sciflow.solvers",
    "Scalar": "sciflow.solvers",
    "General": "sciflow.solvers",
    "Additive": "sciflow.solvers",
    "BrownianIncrements": "sciflow.solvers",
    "VirtualBrownianTree": "sciflow.solvers",
    "LinearInterpolation": "sciflow.solvers",
    "HermiteCubic": "sciflow.solvers",
    "NaturalCubicSpline": "sciflow.solvers",
    "UnderdampedLangevin": "sciflow.solvers",
    "BAOAB": "sciflow.solvers",
    "OBABO": "sciflow.solvers",
    "LangevinFlowEuler": "sciflow.solvers",
    "simulate_langevin": "sciflow.solvers",
    "LinearVP": "sciflow.solvers",
    "CosineVP": "sciflow.solvers",
    "SigmoidVP": "sciflow.solvers",
    "VE": "sciflow.solvers",
    "DDPM": "sciflow.solvers",
    "DDIM": "sciflow.solvers",
    "DPMSolverPP2M": "sciflow.solvers",
    "ProbabilityFlow": "sciflow.solvers",
    "sample_diffusion": "sciflow.solvers",
    "FlowEuler": "sciflow.solvers",
    "FlowMidpoint": "sciflow.solvers",
    "FlowHeun": "sciflow.solvers",
    "FlowAdaptive": "sciflow.solvers",
    "sample_flow": "sciflow.solvers",
    "DiffusionReplacement": "sciflow.solvers",
    "FlowReplacement": "sciflow.solvers",
    "MLP": "sciflow.nn",
    "ModifiedMLP": "sciflow.nn",
    "FourierFeatures": "sciflow.nn",
    "PeriodicEmbedding": "sciflow.nn",
    "FactorizedLinear": "sciflow.nn",
    "GCN": "sciflow.nn",
    "knn_graph": "sciflow.nn",
    "DWT": "sciflow.nn",
    "IDWT": "sciflow.nn",
    "dwtn": "sciflow.nn",
    "idwtn": "sciflow.nn",
    "UNet": "sciflow.nn",
    "FNO": "sciflow.nn",
    "FNO1d": "sciflow.nn",
    "FNO2d": "sciflow.nn",
    "FNO3d": "sciflow.nn",
    "validate": "sciflow.data.schema",
    "DatasetError": "sciflow.data.schema",
    "load_reference": "sciflow.data.reference",
    "open_era5": "sciflow.data.era5",
    "Region": "sciflow.data.era5",
    "ERA5FormatError": "sciflow.data.era5",
    "generate_lorenz63": "sciflow.data.pdes.lorenz",
    "generate_lorenz96": "sciflow.data.pdes.lorenz",
    "generate_lorenz_spiking": "sciflow.data.pdes.lorenz",
    "lat_weighted_rmse": "sciflow.data.weatherbench",
    "lat_weighted_acc": "sciflow.data.weatherbench",
    "letters": "sciflow.data.populations",
    "aggregation_populations": "sciflow.data.populations",
    "Prediction": "sciflow.uq",
    "SamplingPredictor": "sciflow.uq",
    "DeepEnsemble": "sciflow.uq",
    "MCDropout": "sciflow.uq",
    "HMC": "sciflow.uq",
    "NUTS": "sciflow.uq",
    "SplitConformal": "sciflow.uq",
    "NormalizedResidual": "sciflow.uq",
    "AbsoluteResidual": "sciflow.uq",
    "QuantileScore": "sciflow.uq",
    "GaussianPrior": "sciflow.uq",
    "GaussianLikelihood": "sciflow.uq",
    "GaussianForecaster": "sciflow.uq",
    "PointForecaster": "sciflow.uq",
    "evaluate": "sciflow.uq",
    "fit": "sciflow.training",
    "TrainConfig": "sciflow.training",
    "FitResult": "sciflow.training",
    "CheckpointManager": "sciflow.training",
    "CausalPINN": "sciflow.models.causal_pinn",
    "MetaFlowMatching": "sciflow.models.meta_flow_matching",
    "NeuralODE": "sciflow.models.neural_ode",
    "LangevinFlow": "sciflow.models.langevin_flow",
    "BatchLoader": "sciflow.training",
    "Callback": "sciflow.training",
    "load_experiment": "sciflow.config",
    "ExperimentConfig": "sciflow.config",
    "ConfigError": "sciflow.config",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'sciflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
