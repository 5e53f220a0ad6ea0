"""ERA5 loading and preprocessing (sciflow.data.era5) on real ERA5 samples."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sciflow.data import era5
from sciflow.data.era5 import ERA5FormatError, Region, open_era5
from sciflow.data.schema import validate

NC = era5.FIXTURE_DIR / "era5_t_z_500_850_20070101.nc"
GRIB = era5.FIXTURE_DIR / "era5_t_z_500_850_20070101.grib"
REFERENCE_FILES = ["era5_t2m_2019-03_uk.grib", "era5_t_z_500_850_20070101.grib",
                   "era5_t_z_500_850_20070101.nc", "era5_z_t_members_2017.grib"]


@pytest.fixture(scope="module")
def nc() -> xr.Dataset:
    return open_era5(NC).load()


@pytest.fixture(scope="module")
def grib() -> xr.Dataset:
    return open_era5(GRIB).load()


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_every_reference_file_opens(shared_reference, name):
    ds = open_era5(shared_reference / "era5" / name, check_finite=False)
    assert set(ds.data_vars) <= {"2m_temperature", "temperature", "geopotential"}
    assert (np.diff(ds["lat"].values) > 0).all(), "latitude ascending"
    assert ds["time"].ndim == 1 and ds.sizes["time"] >= 1
    for v in ds.data_vars:
        dims = ds[v].dims
        assert dims[0] == "time" and dims[-3 if "level" in dims else -2:][:2] == ("lat", "lon")
    if "members" in name:
        assert ds.sizes["member"] == 10 and ds.sizes["time"] == 4 and ds.sizes["level"] == 2
        assert ds["geopotential"].dims == ("time", "member", "lat", "lon", "level")
    if "t2m" in name:
        assert ds.sizes["time"] == 744 and ds["lon"].values[0] == -10.0


def test_grib_and_netcdf_agree(nc, grib):
    """The same ERA5 fields through cfgrib and through NetCDF-3 (packed int16 there)."""
    assert nc["level"].values.tolist() == [500.0, 850.0] and grib["level"].values.tolist() == [500.0, 850.0]
    for v in ("temperature", "geopotential"):
        a = nc[v].sel(level=[500.0, 850.0]).values
        b = grib[v].sel(level=[500.0, 850.0]).values
        scale = np.abs(b).max()
        assert np.abs(a - b).max() / scale < 2e-5  # measured 6.5e-6 (NetCDF int16 packing)
    # physically plausible: Z500 ~ 5 km geopotential height, T850 in [200, 320] K
    z500 = nc["geopotential"].sel(level=500.0) / 9.80665
    assert 4500 < float(z500.mean()) < 6000
    assert 200 < float(nc["temperature"].sel(level=850.0).min()) < float(nc["temperature"].max()) < 320


def test_names_map_short_and_long():
    assert era5.canonical_name("z") == "geopotential" and era5.canonical_name("t2m") == "2m_temperature"
    assert era5.canonical_name("2t") == "2m_temperature" and era5.canonical_name("u10") == "10m_u_component_of_wind"
    assert era5.canonical_name("msl") == "mean_sea_level_pressure" and era5.canonical_name("q") == "specific_humidity"
    a = open_era5(NC, variables=["z"], levels=[500])
    b = open_era5(NC, variables=["geopotential"], levels=[500])
    assert list(a.data_vars) == ["geopotential"] and a["geopotential"].attrs["short_name"] == "z"
    xr.testing.assert_identical(a["geopotential"], b["geopotential"])


def test_longitude_conversion_round_trips(nc):
    west = era5.to_longitude_range(nc, -180.0)
    assert west["lon"].values[0] == -180.0 and west["lon"].values[-1] == 179.0
    assert float(west["temperature"].sel(lon=-10.0, lat=50.0, level=850.0).squeeze()) == float(
        nc["temperature"].sel(lon=350.0, lat=50.0, level=850.0).squeeze())
    back = era5.to_longitude_range(west, 0.0)
    xr.testing.assert_identical(back, nc)


def test_region_across_the_seam(nc):
    uk = open_era5(NC, region=Region(50, 58, -10, 2))
    assert uk["lon"].values.tolist() == list(range(-10, 3)) and uk["lat"].values.tolist() == list(range(50, 59))
    np.testing.assert_array_equal(uk["temperature"].sel(lon=-3.0).values,
                                  nc["temperature"].sel(lon=357.0, lat=slice(50, 58)).values)
    # the same box in 0–360 notation
    uk2 = open_era5(NC, region=Region(50, 58, 350, 2))
    xr.testing.assert_identical(uk.drop_attrs(), uk2.drop_attrs())
    # a box over the date line written east → west
    pac = open_era5(NC, region=Region(-5, 5, 170, -170))
    assert pac["lon"].values.tolist() == list(range(170, 191))
    with pytest.raises(ERA5FormatError, match="selects no grid points"):
        open_era5(NC, region=Region(10.2, 10.7, 0, 5))


def test_area_weights_sum_to_one_and_follow_cos_lat(nc):
    w = era5.area_weights(nc["lat"])
    assert abs(float(w.sum()) - 1) < 1e-12
    cos = np.cos(np.deg2rad(nc["lat"].values.astype(np.float64)))
    np.testing.assert_allclose(w.values, cos / cos.sum(), atol=1e-15)
    assert float(w.sel(lat=0.0)) == pytest.approx(float(w.max()))
    with pytest.raises(ValueError, match=r"\[-90, 90\]"):
        era5.area_weights(np.array([0.0, 91.0]))


def test_coarsen_preserves_area_weighted_mean(nc):
    c = era5.coarsen(nc, 2)
    assert c.sizes["lat"] == 90 and c.sizes["lon"] == 180
    # trimmed row is the north pole (weight cos 90° = 0): global weighted means are preserved
    for v in ("temperature", "geopotential"):
        fine = nc[v].weighted(era5.area_weights(nc["lat"])).mean(("lat", "lon"))
        block = np.cos(np.deg2rad(nc["lat"].values[:180].astype(np.float64))).reshape(90, 2).sum(1)
        coarse = c[v].weighted(xr.DataArray(block, dims="lat")).mean(("lat", "lon"))
        np.testing.assert_allclose(coarse.values, fine.values, rtol=1e-12)


def test_regrid_identity_and_linear_exactness(nc):
    same = era5.regrid(nc, nc["lat"].values, nc["lon"].values)
    np.testing.assert_allclose(same["temperature"].values, nc["temperature"].values, rtol=1e-12)
    # bilinear interpolation reproduces a field linear in lat and lon away from the seam
    f = (nc["lat"] * 2.0 + nc["lon"] * 0.5).broadcast_like(nc["temperature"]).rename("f").to_dataset()
    lat, lon = np.arange(-80.0, 81.0, 5.625), np.arange(10.0, 340.0, 5.625)
    g = era5.regrid(f, lat, lon)
    np.testing.assert_allclose(g["f"].isel(time=0, level=0).values, 2.0 * lat[:, None] + 0.5 * lon[None, :], rtol=1e-12)
    # across the seam the interpolation wraps (period 360)
    w = era5.regrid(nc, [0.0], [359.5])
    expect = 0.5 * (nc["temperature"].sel(lat=0.0, lon=359.0) + nc["temperature"].sel(lat=0.0, lon=0.0))
    np.testing.assert_allclose(w["temperature"].squeeze().values, expect.squeeze().values, rtol=1e-12)
    uk = open_era5(NC, region=Region(50, 58, -10, 2))
    with pytest.raises(ValueError, match="leave the regional grid"):
        era5.regrid(uk, [52.0], [5.0])


def test_normalization_stats_in_attrs(nc):
    ds = era5.normalization_stats(nc)
    w = era5.area_weights(nc["lat"])
    t = nc["temperature"].sel(level=850.0)
    mean = float((t * w).sum("lat").mean(("time", "lon")))
    np.testing.assert_allclose(ds["temperature"].attrs["norm_mean"][1], mean, rtol=1e-12)
    n = era5.normalize(ds)
    np.testing.assert_allclose(n["temperature"].weighted(w).mean(("time", "lat", "lon")).values, 0, atol=1e-9)
    np.testing.assert_allclose(n["geopotential"].weighted(w).std(("time", "lat", "lon")).values, 1, rtol=1e-9)
    xr.testing.assert_allclose(era5.denormalize(n), ds)


def _series(n_time=12, lat_desc=True):
    rng = np.random.default_rng(0)
    lat = np.linspace(60.0, -60.0, 5) if lat_desc else np.linspace(-60.0, 60.0, 5)
    lon = np.arange(0.0, 360.0, 60.0)
    time = np.datetime64("2017-01-01T00") + np.arange(n_time) * np.timedelta64(6, "h")
    level = np.array([500, 850], dtype=np.int32)
    return xr.Dataset(
        {"geopotential": (("time", "level", "latitude", "longitude"), rng.normal(5e4, 1e3, (n_time, 2, 5, 6))),
         "2m_temperature": (("time", "latitude", "longitude"), rng.normal(280, 5, (n_time, 5, 6)))},
        coords={"time": time, "level": level, "latitude": lat, "longitude": lon})


def test_weatherbench2_zarr_opens_lazily(tmp_path):
    store = tmp_path / "wb2.zarr"
    _series().chunk({"time": 4}).to_zarr(store, zarr_format=2, consolidated=True)
    ds = open_era5(store, variables=["z", "t2m"], levels=[500], check_finite=False)
    import dask.array as da

    assert isinstance(ds["geopotential"].data, da.Array), "zarr stores open lazily"
    assert (np.diff(ds["lat"].values) > 0).all()
    assert ds["geopotential"].dims == ("time", "lat", "lon", "level")
    w = era5.forecast_windows(ds, history=2, lead=[1, 4])
    # surface and pressure-level variables mixed: levels become variables (one set of space dims)
    assert sorted(w.data_vars) == ["2m_temperature", "geopotential_500"]
    g = w["geopotential_500"]
    assert isinstance(g.data, da.Array), "windows stay lazy"
    assert g.dims == ("sample", "time", "lat", "lon")
    raw = _series().sortby("latitude")
    # sample 0: history (t0, t1), leads t2 and t5
    np.testing.assert_array_equal(g.isel(sample=0).values,
                                  raw["geopotential"].sel(level=500).isel(time=[0, 1, 2, 5]).values)
    assert w.sizes["sample"] == 12 - 1 - 4
    assert w["time"].values.astype("timedelta64[h]").astype(int).tolist() == [-6, 0, 6, 24]
    validate(w, check_values=False)


def test_windows_with_levels_keep_level_dim_and_batch(nc, tmp_path):
    store = tmp_path / "z.zarr"
    s = _series()[["geopotential"]]
    s.to_zarr(store, zarr_format=2, consolidated=True)
    w = era5.forecast_windows(open_era5(store), history=1, lead=2)
    assert w["geopotential"].dims == ("sample", "time", "lat", "lon", "level")
    validate(w)
    batch, names = era5.windows_to_batch(w)
    assert batch.values.shape == (w.sizes["sample"], 2, 2, 5, 6) and names == ["geopotential@500", "geopotential@850"]


def test_split_by_time_is_disjoint(tmp_path):
    ds = open_era5(_series(n_time=40).rename(latitude="lat"))
    sp = era5.split_by_time(ds, val_start="2017-01-06", test_start="2017-01-08")
    assert sp.train["time"].values.max() < sp.val["time"].values.min()
    assert sp.val["time"].values.max() < sp.test["time"].values.min()
    assert sum(p.sizes["time"] for p in sp) == 40
    with pytest.raises(ValueError, match="empty"):
        era5.split_by_time(ds, val_start="2016-01-01", test_start="2016-06-01")


# ----------------------------------------------------------------------------- bad input


def test_truncated_grib_names_file(tmp_path):
    bad = tmp_path / "cut.grib"
    bad.write_bytes(GRIB.read_bytes()[: 300_000])
    with pytest.raises(ERA5FormatError, match=r"cut\.grib: truncated GRIB"):
        open_era5(bad)


def test_truncated_and_garbage_netcdf_name_file(tmp_path):
    bad = tmp_path / "cut.nc"
    bad.write_bytes(NC.read_bytes()[: 200_000])
    with pytest.raises(ERA5FormatError, match=r"cut\.nc: cannot read netcdf3"):
        open_era5(bad)
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file at all")
    with pytest.raises(ERA5FormatError, match=r"junk\.nc: not GRIB, NetCDF or zarr"):
        open_era5(junk)
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        open_era5(tmp_path / "nope.nc")


def test_missing_variable_and_level_name_file():
    with pytest.raises(ERA5FormatError, match=r"era5_t_z_500_850_20070101\.nc: missing variable\(s\) \['msl'\]"):
        open_era5(NC, variables=["z", "msl"])
    with pytest.raises(ERA5FormatError, match=r"level\(s\) \[700\.0\] hPa not in the file"):
        open_era5(NC, levels=[500, 700])


def test_nan_wrong_dims_and_time_order(tmp_path):
    s = _series()
    s["2m_temperature"][3, 2, 1] = np.nan
    p = tmp_path / "nan.nc"
    s.to_netcdf(p, engine="h5netcdf")
    with pytest.raises(ERA5FormatError, match=r"nan\.nc: variable '2m_temperature' contains NaN"):
        open_era5(p)
    p2 = tmp_path / "shuffled.nc"
    _series().isel(time=[0, 2, 1, 3]).to_netcdf(p2, engine="h5netcdf")
    with pytest.raises(ERA5FormatError, match=r"shuffled\.nc: time is not monotonic"):
        open_era5(p2)
    p3 = tmp_path / "nolat.nc"
    _series().rename(latitude="y").to_netcdf(p3, engine="h5netcdf")
    with pytest.raises(ERA5FormatError, match=r"nolat\.nc: no lat dimension"):
        open_era5(p3)
    p4 = tmp_path / "gappy.nc"
    _series().isel(time=[0, 1, 2, 5, 6]).to_netcdf(p4, engine="h5netcdf")
    with pytest.raises(ERA5FormatError, match=r"gappy\.nc: time axis is not regular"):
        era5.forecast_windows(open_era5(p4), history=1, lead=1)


def test_split_levels_keeps_per_level_statistics(tmp_path):
    ds = era5.normalization_stats(open_era5(_series()))
    w = era5.forecast_windows(ds, history=1, lead=1)  # mixed surface + levels: split per level
    n = era5.normalize(w)
    for lv in (500, 850):
        g = n[f"geopotential_{lv}"]
        assert g.attrs["level"] == lv
        ref = (ds["geopotential"].sel(level=float(lv)) - ds["geopotential"].attrs["norm_mean"][[500, 850].index(lv)]) \
            / ds["geopotential"].attrs["norm_std"][[500, 850].index(lv)]
        np.testing.assert_allclose(g.isel(time=0).values, ref.isel(time=slice(0, -1)).values, rtol=1e-12)


def test_cds_2024_netcdf_layout(tmp_path):
    """New CDS NetCDF-4: dims valid_time / pressure_level, scalar 'number', 'expver' along time."""
    s = _series(n_time=4)[["geopotential"]].rename(time="valid_time", level="pressure_level")
    s = s.rename(geopotential="z").assign_coords(number=0, expver=("valid_time", ["0001"] * 4))
    p = tmp_path / "cds.nc"
    s.to_netcdf(p, engine="h5netcdf")
    ds = open_era5(p, variables=["geopotential"], levels=[850])
    assert ds["geopotential"].dims == ("time", "lat", "lon", "level") and ds.sizes["time"] == 4
    np.testing.assert_array_equal(ds["geopotential"].isel(level=0).values,
                                  _series(n_time=4)["geopotential"].sel(level=850).sortby("latitude").values)


def test_grib_accumulations_time_by_step_are_flattened():
    """ERA5 'tp' from CDS GRIB: base times 06/18 × steps 1..12 h become one hourly valid-time axis."""
    base = np.array(["2017-01-01T06", "2017-01-01T18"], dtype="datetime64[ns]")
    step = np.arange(1, 13) * np.timedelta64(1, "h")
    vals = np.arange(24.0).reshape(2, 12, 1, 1) * np.ones((1, 1, 2, 3))
    raw = xr.Dataset({"tp": (("time", "step", "latitude", "longitude"), vals)},
                     coords={"time": base, "step": step, "latitude": [10.0, 0.0], "longitude": [0.0, 120.0, 240.0],
                             "valid_time": (("time", "step"), base[:, None] + step[None, :])})
    ds = open_era5(raw)
    assert list(ds.data_vars) == ["total_precipitation"] and ds.sizes["time"] == 24
    t = ds["time"].values
    assert t[0] == np.datetime64("2017-01-01T07") and (np.diff(t) == np.timedelta64(1, "h")).all()
    np.testing.assert_array_equal(ds["total_precipitation"].isel(lat=0, lon=0).values, np.arange(24.0))


def test_grib_mixing_surface_and_pressure_levels(tmp_path, grib):
    """A GRIB holding pressure-level t/z and a surface field (written with eccodes)."""
    eccodes = pytest.importorskip("eccodes")
    p = tmp_path / "mixed.grib"
    with GRIB.open("rb") as f, p.open("wb") as out:
        first = True
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            eccodes.codes_write(h, out)
            if first:  # a copy of the first field relabelled as 2 m temperature
                c = eccodes.codes_clone(h)
                eccodes.codes_set(c, "typeOfLevel", "surface")
                eccodes.codes_set(c, "paramId", 167)
                eccodes.codes_write(c, out)
                eccodes.codes_release(c)
                first = False
            eccodes.codes_release(h)
    ds = open_era5(p, variables=["t2m", "t"])
    assert ds["2m_temperature"].dims == ("time", "lat", "lon")
    assert ds["temperature"].dims == ("time", "lat", "lon", "level")
    np.testing.assert_array_equal(ds["temperature"].values, grib["temperature"].values)
    with pytest.raises(ValueError, match="too few"):  # a single time step makes no window
        era5.forecast_windows(ds, history=1, lead=1)


def test_grib_structure_check_accepts_valid_and_flags_corruption(tmp_path, shared_reference):
    for name in REFERENCE_FILES:
        if name.endswith(".grib"):
            era5._check_grib_structure(shared_reference / "era5" / name)  # padded GRIB1 files pass
    data = bytearray(GRIB.read_bytes())
    data[-4:] = b"0000"  # clobber the last message's end marker
    bad = tmp_path / "clobbered.grib"
    bad.write_bytes(bytes(data))
    with pytest.raises(ERA5FormatError, match=r"clobbered\.grib: corrupt GRIB file"):
        open_era5(bad)


def test_list_of_files_combines_periods_and_variables(tmp_path):
    s = _series(n_time=12)
    paths = {}
    for key, part in {"a": s.isel(time=slice(0, 6)), "b": s.isel(time=slice(6, 12)),
                      "overlap": s.isel(time=slice(4, 10)), "gap": s.isel(time=slice(0, 3)),
                      "t2m": s[["2m_temperature"]], "z": s[["geopotential"]]}.items():
        paths[key] = tmp_path / f"{key}.nc"
        part.to_netcdf(paths[key], engine="h5netcdf")
    whole = open_era5(s)
    xr.testing.assert_identical(open_era5([paths["b"], paths["a"]]).drop_attrs(), whole.drop_attrs())
    both = open_era5([paths["z"], paths["t2m"]])
    assert sorted(both.data_vars) == ["2m_temperature", "geopotential"]
    with pytest.raises(ERA5FormatError, match=r"a\.nc \(\+1 more\): files do not combine"):
        open_era5([paths["a"], paths["overlap"]])
    with pytest.raises(ERA5FormatError, match="not regular"):
        era5.forecast_windows(open_era5([paths["gap"], paths["b"]]), history=1, lead=1)
