"""Lorenz-63 and Lorenz-96: batched chaotic trajectories, irregular partial observations, spikes.

Three dataset families built on one accurate integration path (the shared adaptive ODE solvers at
tight tolerance, batched over samples); this package is their public entry point, the code lives in
submodules, one concept each:

* the systems and their integration — :func:`lorenz63_rhs` (Lorenz 1963), :func:`lorenz96_rhs`
  (Lorenz 1996), :func:`integrate`, :func:`generate_lorenz63`, :func:`generate_lorenz96`
  (``systems``);
* irregular, partly missing, noisy observation — :func:`observe_irregular` (``observation``);
* the Lorenz-driven Poisson spiking population (LFADS, Sussillo et al. 2016) —
  :func:`generate_lorenz_spiking` (``spiking``);
* conversion of those datasets to batches — :func:`to_irregular_batch`,
  :func:`to_trajectory_batch` (``batches``).

Datasets follow the sciflow schema: dims ``(sample, time, channel)`` (``neuron``/``latent`` for
the spiking variant), coordinates on every dim, parameters and provenance in attrs.
"""

from sciflow.data.pdes.lorenz.batches import to_irregular_batch, to_trajectory_batch
from sciflow.data.pdes.lorenz.observation import GENERATOR_VERSION, observe_irregular
from sciflow.data.pdes.lorenz.spiking import generate_lorenz_spiking
from sciflow.data.pdes.lorenz.systems import (
    LORENZ96_F8_MEAN,
    LORENZ96_F8_STD,
    generate_lorenz63,
    generate_lorenz96,
    integrate,
    lorenz63_rhs,
    lorenz96_rhs,
)

__all__ = [
    "GENERATOR_VERSION",
    "LORENZ96_F8_MEAN",
    "LORENZ96_F8_STD",
    "lorenz63_rhs",
    "lorenz96_rhs",
    "integrate",
    "observe_irregular",
    "generate_lorenz63",
    "generate_lorenz96",
    "generate_lorenz_spiking",
    "to_irregular_batch",
    "to_trajectory_batch",
]
