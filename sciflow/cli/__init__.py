"""The ``sciflow`` command: the only module that knows every registry.

    sciflow list [models|datasets|solvers|configs]
    sciflow generate NAME --n 32 --seed 0 --out data.nc [key=value ...]
    sciflow train CONFIG.yaml [train.max_steps=500 ...] [--run-dir DIR] [--resume]
    sciflow evaluate RUN_DIR [--uq conformal|samples|ensemble|mc-dropout|hmc]
    sciflow demo [--out runs/demo] [--quick] [--step NAME ...]
    sciflow benchmark [NAMES ...] --scale smoke|cpu|gpu [--out DIR]

Experiments here are forecasting and classification (models taking a ``TrajectoryBatch`` or an
``IrregularBatch``), super-resolution (WDNO refining coarse trajectories, scored by
:mod:`~sciflow.cli.superres`), causal PINNs (their own flat config, :mod:`~sciflow.cli.pinn`) and
meta flow matching (model / data recipe / train sections, :mod:`~sciflow.cli.mfm`).

Modules: :mod:`~sciflow.cli.commands` (sub-commands, parser), :mod:`~sciflow.cli.pipeline` (data splits,
models, training runs), :mod:`~sciflow.cli.evaluation` (``sciflow evaluate``), :mod:`~sciflow.cli.pinn`
(causal-PINN runs with checkpoints and resume), :mod:`~sciflow.cli.mfm` (meta-flow-matching runs, likewise),
:mod:`~sciflow.cli.registries`.
"""

from sciflow.cli.commands import build_parser, main
from sciflow.cli.evaluation import evaluate_irregular, evaluate_run, forecast_batch, uq_metrics
from sciflow.cli.pipeline import (Splits, build_model, dataset_to_batch, is_irregular, load_dataset, load_run,
                                  load_trained, member_dirs, prepare_irregular_splits, prepare_splits,
                                  resolve_model_for_data, split_samples, train_experiment, windows, write_config)
from sciflow.config import load_experiment

__all__ = ["Splits", "build_model", "build_parser", "dataset_to_batch", "evaluate_irregular", "evaluate_run",
           "forecast_batch", "is_irregular", "load_dataset", "load_experiment", "load_run", "load_trained", "main",
           "member_dirs", "prepare_irregular_splits", "prepare_splits", "resolve_model_for_data", "split_samples",
           "train_experiment", "uq_metrics", "windows", "write_config"]
