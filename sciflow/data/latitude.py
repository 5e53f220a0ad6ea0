r"""Latitude (area) weights of a regular latitude–longitude grid — the one definition in sciflow.

On an equiangular grid a cell's area is proportional to :math:`\cos\phi`. WeatherBench (Rasp et
al. 2020, eq. 1) weights squared errors by :math:`L(j) = \cos\phi_j / \overline{\cos\phi}`, which has
mean one over latitude. Poles get (numerically) zero weight; cos is clamped at 0 so that
round-off beyond ±90° can never give a negative weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["latitude_weights"]


def latitude_weights(lat_degrees: Tensor) -> Tensor:
    r"""Area weights :math:`L(j) = \cos\phi_j / \overline{\cos\phi}` (Rasp et al. 2020, eq. 1).

    ``lat_degrees``: ``(lat,)`` in degrees, within [-90, 90]. Returns ``(lat,)`` with mean one in the
    dtype and on the device of the input; reshape to ``(lat, 1)`` to weight a ``(..., lat, lon)`` field.
    """
    if lat_degrees.ndim != 1:
        raise ValueError(f"lat_degrees must be 1-D, got shape {tuple(lat_degrees.shape)}")
    if not bool(torch.isfinite(lat_degrees).all()):
        raise ValueError("lat_degrees contains NaN or infinite values")
    if bool(((lat_degrees < -90) | (lat_degrees > 90)).any()):
        raise ValueError("latitudes must lie in [-90, 90] degrees")
    w = torch.cos(torch.deg2rad(lat_degrees)).clamp_min(0)
    if not bool(w.sum() > 0):
        raise ValueError("latitude weights are all zero (every latitude is a pole)")
    return w / w.mean()
