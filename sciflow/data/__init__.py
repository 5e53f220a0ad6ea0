"""Physical data: xarray schema, generators, loaders and batches."""

from sciflow.data.batches import CollocationBatch, IrregularBatch, PopulationBatch, TrajectoryBatch

__all__ = ["CollocationBatch", "IrregularBatch", "PopulationBatch", "TrajectoryBatch"]
