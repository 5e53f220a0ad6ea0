"""Small schema-conforming datasets for the data tests."""

from __future__ import annotations

import numpy as np
import xarray as xr

ATTRS = {"equation": "u_t = 0", "parameters": "{}", "generator": "tests", "version": "0", "seed": 0,
         "licence": "CC0"}


def tiny_dataset(n: int = 3, nt: int = 4, nx: int = 5, ny: int | None = None, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    space = {"x": np.linspace(0, 1, nx)}
    if ny is not None:
        space["y"] = np.linspace(0, 2, ny)
    shape = (n, nt, *(v.size for v in space.values()))
    return xr.Dataset({"u": (("sample", "time", *space), rng.standard_normal(shape))},
                      coords={"sample": np.arange(n), "time": np.linspace(0, 1, nt), **space},
                      attrs=dict(ATTRS))
