"""``GENERATORS``: dataset name -> ``generate(n, seed, **kwargs) -> xr.Dataset`` (for the CLI).

Every generator is deterministic for a given ``seed`` and returns a dataset that passes
:func:`sciflow.data.schema.validate`. ``sciflow generate NAME --n N --seed S --out PATH`` calls
``GENERATORS[NAME](n=N, seed=S)`` and writes the result with :func:`sciflow.data.io.write`.
"""

from __future__ import annotations

from typing import Callable

import xarray as xr

from sciflow.data.pdes import allen_cahn, burgers, kuramoto_sivashinsky, navier_stokes

Generator = Callable[..., xr.Dataset]

GENERATORS: dict[str, Generator] = {
    "burgers": burgers.generate,
    "burgers-control": burgers.generate_control,
    "burgers-shock": burgers.generate_shock,
    "allen-cahn": allen_cahn.generate,
    "kuramoto-sivashinsky": kuramoto_sivashinsky.generate,
    "navier-stokes": navier_stokes.generate,
}

# --- Lorenz / ERA5 (owned by the Lorenz/ERA5 engineer) ---
from sciflow.data.pdes import lorenz  # noqa: E402  (kept beside its entries)

GENERATORS.update({
    "lorenz": lorenz.generate_lorenz63,
    "lorenz63": lorenz.generate_lorenz63,
    "lorenz96": lorenz.generate_lorenz96,
    "lorenz-spiking": lorenz.generate_lorenz_spiking,
})
