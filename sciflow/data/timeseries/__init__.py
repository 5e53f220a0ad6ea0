"""Irregular, partly missing time series: UEA/UCR ``.ts`` archives, PhysioNet ICU files, and the
missing-value protocol of the neural CDE / stable neural SDE benchmarks.

    from sciflow.data.timeseries import load_uea, classification_splits
    splits = classification_splits(load_uea("BasicMotions"), missing_rate=0.5, seed=0)
    splits.train  # IrregularBatch(values, times, mask, labels)
"""

from sciflow.data.timeseries.bundled import BUNDLED, DatasetNotFoundError, find_uea, load_uea, package_data_roots
from sciflow.data.timeseries.missing import (
    PAPER_MISSING_RATES,
    IrregularSplits,
    classification_splits,
    drop_values,
    forecasting_splits,
    lorenz_forecasting_splits,
    lorenz_interpolation_splits,
    normalize,
    observed_statistics,
    stratified_split,
)
from sciflow.data.timeseries.physionet import (
    PHYSIONET2012_VARIABLES,
    PHYSIONET2019_VARIABLES,
    PhysioNetData,
    PhysioNetFormatError,
    load_physionet2012,
    load_physionet2019,
)
from sciflow.data.timeseries.uea import TSData, TSFormatError, read_ts

__all__ = [
    "BUNDLED",
    "PAPER_MISSING_RATES",
    "PHYSIONET2012_VARIABLES",
    "PHYSIONET2019_VARIABLES",
    "DatasetNotFoundError",
    "IrregularSplits",
    "PhysioNetData",
    "PhysioNetFormatError",
    "TSData",
    "TSFormatError",
    "classification_splits",
    "drop_values",
    "find_uea",
    "forecasting_splits",
    "load_physionet2012",
    "load_physionet2019",
    "load_uea",
    "lorenz_forecasting_splits",
    "lorenz_interpolation_splits",
    "normalize",
    "observed_statistics",
    "package_data_roots",
    "read_ts",
    "stratified_split",
]
