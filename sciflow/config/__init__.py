"""Experiment configuration: YAML over frozen dataclass defaults, with dotted overrides.

:mod:`sciflow.config.schema` is the generic machinery (YAML -> frozen dataclasses, overrides,
errors naming the dotted key); :mod:`sciflow.config.experiment` holds the experiment's sections and
:func:`load_experiment` (the packaged YAMLs live in ``sciflow/configs``).
"""

from sciflow.config.experiment import (DataConfig, EvalConfig, ExperimentConfig, ModelSection, experiment_from_dict,
                                       load_experiment, model_config_class, packaged_config)
from sciflow.config.schema import ConfigError, apply_overrides, coerce, from_dict, parse_overrides, read_yaml, to_dict

__all__ = [
    "ConfigError", "DataConfig", "EvalConfig", "ExperimentConfig", "ModelSection", "apply_overrides", "coerce",
    "experiment_from_dict", "from_dict", "load_experiment", "model_config_class", "packaged_config",
    "parse_overrides", "read_yaml", "to_dict",
]
