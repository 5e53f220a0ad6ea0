"""The canonical ERA5 layout: variable and dimension names, the format error, regions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


# canonical (WeatherBench 2 / CDS long) name -> accepted short names (ERA5 GRIB / CDS NetCDF)
VARIABLES: dict[str, tuple[str, ...]] = {
    "geopotential": ("z",),
    "temperature": ("t",),
    "u_component_of_wind": ("u",),
    "v_component_of_wind": ("v",),
    "vertical_velocity": ("w",),
    "specific_humidity": ("q",),
    "relative_humidity": ("r",),
    "2m_temperature": ("t2m", "2t"),
    "2m_dewpoint_temperature": ("d2m", "2d"),
    "10m_u_component_of_wind": ("u10", "10u"),
    "10m_v_component_of_wind": ("v10", "10v"),
    "mean_sea_level_pressure": ("msl",),
    "surface_pressure": ("sp",),
    "total_precipitation": ("tp",),
    "total_cloud_cover": ("tcc",),
    "sea_surface_temperature": ("sst",),
    "toa_incident_solar_radiation": ("tisr",),
    "land_sea_mask": ("lsm",),
    "geopotential_at_surface": ("z_sfc", "orography"),
}
_ALIASES: dict[str, str] = {}
for _long, _shorts in VARIABLES.items():
    _ALIASES[_long] = _long
    for _s in _shorts:
        _ALIASES[_s] = _long

# source dim/coord names -> canonical
_DIM_ALIASES: dict[str, str] = {
    "latitude": "lat", "lat": "lat",
    "longitude": "lon", "lon": "lon",
    "level": "level", "isobaricInhPa": "level", "pressure_level": "level", "plev": "level",
    "number": "member", "member": "member", "realization": "member", "ensemble_member": "member",
    "time": "time", "valid_time": "time",
}
#: bundled sample files (ERA5 t/z at 500/850 hPa, 2007-01-01 12Z, 1°; see LICENSE.md there)
FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "era5"

_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb2")


_LICENCE = ("ERA5: Contains modified Copernicus Climate Change Service information "
            "(C3S ERA5 licence; attribution required)")


def _version() -> str:
    import sciflow

    return sciflow.__version__


class ERA5FormatError(ValueError):
    """An ERA5 source that cannot be used as asked; the message names the file and the problem."""


def canonical_name(name: str) -> str:
    """WeatherBench-2 long name for a short or long ERA5 variable name (``"t2m"`` → ``"2m_temperature"``).

    Unknown names are returned unchanged (user variables pass through).
    """
    return _ALIASES.get(name, _ALIASES.get(name.lower(), name))


@dataclass(frozen=True)
class Region:
    """A latitude–longitude box in degrees; inclusive bounds.

    ``lon_min > lon_max`` means the box crosses the longitude seam (e.g. ``lon_min=350, lon_max=10``
    or ``lon_min=170, lon_max=-170``). Longitudes may be given in either convention.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        if not -90 <= self.lat_min <= self.lat_max <= 90:
            raise ValueError(f"Region: need -90 <= lat_min <= lat_max <= 90, got {self.lat_min}, {self.lat_max}")

