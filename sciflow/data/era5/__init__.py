"""ERA5 reanalysis: one loader for WeatherBench-2 zarr stores, CDS NetCDF and GRIB, plus the
preprocessing a forecasting model needs (regridding, area weights, normalisation, time windows,
splits by time).

:func:`open_era5` returns a dataset in one canonical layout whatever the source:

* data variables carry the WeatherBench-2 long names (``geopotential``, ``temperature``,
  ``2m_temperature``, ...); ERA5/GRIB short names (``z``, ``t``, ``t2m``/``2t``, ...) are accepted
  everywhere a name is asked for (:data:`VARIABLES`);
* dims are ``time, [member,] lat, lon[, level]`` (``level`` in hPa, ``member`` for ensembles such as
  the ERA5 EDA), latitude ascending, ``time`` strictly increasing;
* longitudes keep the source convention unless ``longitude_start`` asks for ``[start, start + 360)``
  (``-180`` or ``0``).

Zarr stores open lazily with dask; NetCDF-3 (scipy), NetCDF-4/HDF5 (h5netcdf) and GRIB (cfgrib)
are recognised from the file's first bytes, not its suffix. Bad input raises
:class:`ERA5FormatError` (a ``ValueError``) naming the file and the problem: truncated or corrupt
file, missing variable or level, unexpected dims, non-monotonic or duplicated time, NaNs.

Latitude weighting follows WeatherBench (Rasp et al. 2020, eq. 1): ``L(j) = cos φ_j / Σ cos φ``
(here normalised to sum to one over latitude; Rasp et al. normalise to mean one, the same weighting).

Modules: :mod:`~sciflow.data.era5.layout` (names, errors, regions), :mod:`~sciflow.data.era5.formats`
(recognising and opening files), :mod:`~sciflow.data.era5.loader` (:func:`open_era5`),
:mod:`~sciflow.data.era5.grid`, :mod:`~sciflow.data.era5.normalization`, :mod:`~sciflow.data.era5.windows`;
everything is re-exported here.
"""

from sciflow.data.era5.formats import _check_grib_structure, _sniff
from sciflow.data.era5.grid import area_weights, coarsen, regrid
from sciflow.data.era5.layout import FIXTURE_DIR, VARIABLES, ERA5FormatError, Region, canonical_name
from sciflow.data.era5.loader import open_era5, to_longitude_range
from sciflow.data.era5.normalization import denormalize, normalization_stats, normalize
from sciflow.data.era5.windows import Splits, forecast_windows, split_by_time, split_levels, windows_to_batch

__all__ = ["FIXTURE_DIR", "VARIABLES", "ERA5FormatError", "Region", "Splits", "area_weights", "canonical_name",
           "coarsen", "denormalize", "forecast_windows", "normalization_stats", "normalize", "open_era5", "regrid",
           "split_by_time", "split_levels", "to_longitude_range", "windows_to_batch", "_check_grib_structure",
           "_sniff"]
