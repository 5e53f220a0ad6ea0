"""Mutation-audit guards for population datasets, NLB loading/binning, dataset I/O, reference
solutions and the GRF initial condition: properties the existing data tests left unchecked.

* Populations (Atanackovic et al. 2025, MFM): the source is the target plus noise only (exact at
  zero source noise); initial mixtures have Dirichlet(2) weights; aggregation ids start at
  ``id_offset``; the aggregation targets are the sources evolved with the requested ``softening``,
  by ``steps`` classical RK4 steps of ``horizon / steps`` (compared with RK4 written out by hand).
* NLB (Pei et al. 2021): the first file holding a key wins; default bin widths 5 / 20 ms;
  neuron counts, integer counts, behaviour trials and condition counts are checked; batch times
  start at 0; a spike at a trial's start is in bin 0 and one at the end of the binned window is
  not counted (it belongs to the next trial); only whole bins of ``duration`` are kept.
* I/O: an explicit ``format`` is validated and beats the suffix; ``.zarr`` is a directory store;
  the checksum is the SHA-256 of the documented header + little-endian bytes of *every* block;
  ``write_json`` never tears an existing file and fsyncs before its rename; ``write_pdebench``
  writes the chosen variable and the decoded parameters; ``read_pdebench`` rejects variables of
  different shapes.
* Reference solutions: the bundled file's SHA-256 is verified; relative L2 is normalised by the
  reference and checks the ``(x, t)`` layout.
* ``gaussian_random_field`` is the FNO Burgers GRF ``(-d_xx + 25)^(-2)`` on a box of ``length``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.data import io, reference
from sciflow.data.initial_conditions import gaussian_random_field
from sciflow.data.nlb import NLBTensors, bin_nwb_trials, load_nlb
from sciflow.data.pdes._spectral import sample_grf
from sciflow.data.populations import (_gaussian_mixture, aggregation_populations, aggregation_velocity,
                                      evolve_aggregation, letters)
from sciflow.data.schema import DatasetError
from tests.data._factory import tiny_dataset

# ----------------------------------------------------------------------------- populations


def test_letters_source_is_the_target_plus_source_noise_only():
    """Kills: source built from the unjittered glyph points (``R pts + noise``) instead of the target."""
    b = letters("test", n_points=50, n_rotations=2, noise_scale=0.3, source_noise_scale=0.0, seed=4)
    assert torch.equal(b.source, b.target)


def test_aggregation_ids_start_at_id_offset():
    """Kills: ``id_offset`` dropped from the population ids."""
    b = aggregation_populations("val", n_populations=3, n_points=4, steps=1, id_offset=100)
    assert b.population_id.tolist() == [100, 101, 102]


def test_mixture_weights_are_dirichlet_2():
    """Kills: uniform mixture weights instead of ``Dirichlet(2, ..., 2)`` (the spread of the initial
    populations). For m = 3 blobs each weight is Beta(2, 4): mean 1/3, variance 8 / 252."""
    rng = np.random.default_rng(0)
    w = np.stack([p[0] for p in (_gaussian_mixture(2, rng) for _ in range(3000)) if len(p[0]) == 3])
    assert len(w) > 800
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(w.mean(0), 1 / 3, atol=0.02)
    np.testing.assert_allclose(w.var(0), 8 / 252, rtol=0.15)


def test_aggregation_targets_use_the_requested_softening():
    """Kills: ``softening`` not passed on to ``evolve_aggregation`` (default 0.05 used)."""
    kw = dict(n_populations=2, n_points=8, horizon=0.5, steps=20, dtype=torch.float64)
    b = aggregation_populations("train", softening=0.3, **kw)
    torch.testing.assert_close(b.target, evolve_aggregation(b.source, 0.5, softening=0.3, steps=20),
                               rtol=0, atol=0)


def test_evolve_aggregation_takes_steps_classical_rk4_steps_over_the_horizon():
    """``steps = 2`` over ``horizon = 0.5``: two hand-written RK4 steps of ``dt = 0.25``.
    Kills: the time step ignoring ``horizon`` (``dt = 1 / steps``: one step of 0.5)."""
    x = torch.randn(1, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    f = lambda y: aggregation_velocity(y, 0.3)  # noqa: E731
    y, dt = x, 0.25
    for _ in range(2):
        k1 = f(y)
        k2 = f(y + dt / 2 * k1)
        k3 = f(y + dt / 2 * k2)
        k4 = f(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(evolve_aggregation(x, 0.5, softening=0.3, steps=2), y, rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------- NLB


def _nlb_file(path: Path, value: float, **extra: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f["train_spikes_heldin"] = np.full((2, 3, 4), value)
        f["train_spikes_heldout"] = np.full((2, 3, 2), value)
        for k, v in extra.items():
            f[k] = v
    return path


def test_load_nlb_keeps_the_first_file_holding_a_key(tmp_path):
    """Kills: later files overwriting keys already read (``key in found`` skip dropped)."""
    a, b = _nlb_file(tmp_path / "a.h5", 1.0), _nlb_file(tmp_path / "b.h5", 2.0)
    assert float(load_nlb([a, b]).train_spikes_heldin.max()) == 1.0
    assert float(load_nlb([b, a]).train_spikes_heldin.max()) == 2.0


def test_load_nlb_bin_width_defaults_and_validation(tmp_path):
    """Kills: 5 ms default for non-``_20`` NLB names replaced; ``bin_width > 0`` relaxed to ``>= 0``."""
    p = _nlb_file(tmp_path / "m.h5", 1.0)
    assert load_nlb(p, dataset="mc_maze").bin_width == 0.005
    assert load_nlb(p, dataset="mc_maze_20").bin_width == 0.02
    with pytest.raises(ValueError, match="bin_width must be a positive number of seconds, got 0.0"):
        load_nlb(p, bin_width=0.0)


def test_nlb_batch_times_start_at_zero(tmp_path):
    """Kills: batch times ``dt * (1..T)`` instead of ``dt * (0..T-1)``."""
    data = load_nlb(_nlb_file(tmp_path / "t.h5", 1.0), bin_width=0.02)
    torch.testing.assert_close(data.train_batch().times, 0.02 * torch.arange(3.0))


def _tensors(**kw) -> NLBTensors:
    return NLBTensors(train_spikes_heldin=torch.ones(2, 3, 4), train_spikes_heldout=torch.ones(2, 3, 2), **kw)


def test_nlb_tensors_reject_inconsistent_neurons_counts_behaviour_and_conditions():
    """Kills, one each: neuron-count check dropped (held-out neurons leaking into the held-in
    input), integer-count check dropped, behaviour trial check dropped, condition-count check dropped."""
    with pytest.raises(ValueError, match=r"NLB eval_spikes_heldin must be \(trial, time, 4\), got \(2, 3, 6\)"):
        _tensors(eval_spikes_heldin=torch.ones(2, 3, 6))
    with pytest.raises(ValueError, match="non-negative integer spike counts"):
        _tensors(eval_spikes_heldin=torch.full((2, 3, 4), 0.5))
    with pytest.raises(ValueError, match="NLB train_behavior has 3 trials, train_spikes_heldin 2"):
        _tensors(train_behavior=torch.zeros(3, 3, 2))
    with pytest.raises(ValueError, match="NLB eval_cond_idx has 1 conditions, psth 2"):
        _tensors(psth=torch.zeros(2, 3, 6), eval_cond_idx=(torch.tensor([0]),))


def _nwb(path: Path, spikes: list[float], start: list[float], stop: list[float]) -> Path:
    with h5py.File(path, "w") as f:
        f["units/spike_times"] = np.array(spikes)
        f["units/spike_times_index"] = np.array([len(spikes)])
        f["intervals/trials/start_time"] = np.array(start)
        f["intervals/trials/stop_time"] = np.array(stop)
    return path


def test_nwb_spike_on_a_bin_edge_goes_to_the_bin_it_starts(tmp_path):
    """Bins are ``[t0 + k w, t0 + (k + 1) w)``: a spike at a trial's start is in its bin 0, one at the
    end of the binned window is not counted (here it starts the next trial).
    Kills: ``searchsorted(side="right")`` (start spike dropped, end spike clipped into the last bin)."""
    p = _nwb(tmp_path / "edges.nwb", [1.0, 1.75, 2.0], start=[1.0, 2.0], stop=[2.0, 3.0])  # exact in binary
    c = bin_nwb_trials(p, 0.25)["counts"][:, :, 0]
    assert c.tolist() == [[1, 0, 0, 1], [1, 0, 0, 0]]


def test_nwb_duration_keeps_only_whole_bins(tmp_path):
    """``duration = 0.9 s`` of 0.25 s bins is 3 whole bins; the partial bin [0.75, 0.9) is dropped.
    Kills: ``floor`` -> ``ceil`` in the bin count (a partial fourth bin counting [0.75, 1.0))."""
    p = _nwb(tmp_path / "part.nwb", [1.0, 1.8], start=[1.0, 2.0], stop=[2.0, 3.0])
    c = bin_nwb_trials(p, 0.25, duration=0.9)["counts"]
    assert c.shape == (2, 3, 1) and c[:, :, 0].tolist() == [[1, 0, 0], [0, 0, 0]]


def test_nwb_trial_stopping_before_it_starts_is_rejected(tmp_path):
    """Kills: the ``stop < start`` check dropped."""
    p = _nwb(tmp_path / "bad.nwb", [0.1], start=[0.0, 1.0], stop=[0.5, 0.9])
    with pytest.raises(ValueError, match="trial stop_time before start_time"):
        bin_nwb_trials(p, 0.02)


# ----------------------------------------------------------------------------- I/O


def test_explicit_format_is_validated_and_beats_the_suffix(tmp_path):
    """Kills: unknown ``format`` accepted; an explicit ``format`` ignored when the path has a suffix."""
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="unknown format 'nc' \\(expected 'netcdf' or 'zarr'\\)"):
        io.write(ds, tmp_path / "a.nc", format="nc")
    p = io.write(ds, tmp_path / "b.nc", format="zarr")
    assert p.is_dir()
    np.testing.assert_array_equal(xr.open_zarr(p, consolidated=False)["u"].values, ds["u"].values)


def test_zarr_suffix_writes_a_zarr_directory_store(tmp_path):
    """Kills: ``.zarr`` inferred as NetCDF (a single HDF5 file named ``*.zarr``)."""
    p = io.write(tiny_dataset(), tmp_path / "s.zarr")
    assert p.is_dir() and not h5py.is_hdf5(p)


def test_checksum_is_sha256_of_header_and_little_endian_bytes_of_every_block():
    """The digest over ``name|dims|dtype|shape|`` + bytes, on data spanning two blocks (3 + 2 rows of
    2^22 + 1 int8). Kills: last row of each block skipped, dtype left out of the header, bytes hashed
    in native (big-endian) order."""
    cols = (1 << 22) + 1  # 16M-element blocks hold 3 rows
    arr = (np.arange(5 * cols, dtype=np.int64) % 251).astype(np.int8).reshape(5, cols)
    h = hashlib.sha256(f"a|('r', 'c')|i1|{arr.shape}|".encode())
    h.update(arr.tobytes())
    assert io.checksum(xr.Dataset({"a": (("r", "c"), arr)})) == "sha256:" + h.hexdigest()
    little = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    big = little.astype(">f8")
    assert io.checksum(xr.Dataset({"u": (("s", "x"), big)})) == io.checksum(xr.Dataset({"u": (("s", "x"), little)}))


def test_write_json_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    """Kills: ``write_json`` writing straight to the target (a failure leaves a torn file)."""
    path = io.write_json({"a": 1}, tmp_path / "m.json")
    before = path.read_bytes()

    def torn(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:3])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(OSError, match="disk full"):
        io.write_json({"a": 2, "b": [1, 2, 3]}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_write_flushes_the_temporary_file_before_renaming(tmp_path, monkeypatch):
    """Write-then-rename is durable only if the data reach the disk before the rename.
    Kills: the ``os.fsync`` of the temporary file dropped."""
    events = []
    fsync, replace = io.os.fsync, io.os.replace

    def logged_fsync(fd):
        events.append("fsync")
        fsync(fd)

    def logged_replace(src, dst):
        events.append(("replace", Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", logged_fsync)
    monkeypatch.setattr(io.os, "replace", logged_replace)
    io.write_json({"a": 1}, tmp_path / "m.json")
    assert events == ["fsync", ("replace", "m.json")]


def test_write_pdebench_writes_the_chosen_variable_and_the_parameters(tmp_path):
    """Kills: ``variable=`` ignored (first variable always written); decoded ``parameters`` not written."""
    ds = tiny_dataset()
    ds["v"] = 10.0 + ds["u"]
    ds.attrs["parameters"] = '{"ic": "sine", "nu": 0.01}'
    path = io.write_pdebench(ds, tmp_path / "v.hdf5", variable="v")
    back = io.read_pdebench(path)
    np.testing.assert_array_equal(back["tensor"].values, ds["v"].values)
    params = json.loads(back.attrs["parameters"])
    assert params["nu"] == 0.01 and params["ic"] == "sine"


def test_read_pdebench_rejects_variables_of_different_shapes(tmp_path):
    """Kills: the per-variable shape check dropped."""
    path = tmp_path / "two.hdf5"
    with h5py.File(path, "w") as fh:
        fh["a"] = np.zeros((2, 3, 8))
        fh["b"] = np.zeros((2, 3, 4))
        fh["x-coordinate"] = np.linspace(0, 1, 8)
        fh["t-coordinate"] = np.linspace(0, 1, 3)
    with pytest.raises(DatasetError, match=r"two.hdf5: variable 'b' has shape \(2, 3, 4\), expected \(2, 3, 8\)"):
        io.read_pdebench(path, variables=("a", "b"))


# ----------------------------------------------------------------------------- reference, GRF


def test_reference_file_checksum_is_verified(tmp_path, monkeypatch):
    """Kills: the SHA-256 check of the bundled file dropped."""
    shutil.copy(reference.FIXTURES / "burgers_shock.mat", tmp_path / "burgers_shock.mat")
    data = bytearray((tmp_path / "burgers_shock.mat").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "burgers_shock.mat").write_bytes(bytes(data))
    monkeypatch.setattr(reference, "FIXTURES", tmp_path)
    with pytest.raises(DatasetError, match="burgers_shock.mat: checksum mismatch"):
        reference.load_reference("burgers_shock")


def test_relative_l2_is_normalised_by_the_reference_and_checks_the_layout():
    """``||2 u_ref - u_ref|| / ||u_ref|| = 1``, ``||0 - u_ref|| / ||u_ref|| = 1``. Kills: normalising by
    the prediction's norm (0.5 and inf); the ``(x, t)`` shape check dropped."""
    ref = reference.load_reference("burgers_shock")
    assert ref.relative_l2(2 * ref.u) == pytest.approx(1.0, rel=1e-14)
    assert ref.relative_l2(np.zeros_like(ref.u)) == 1.0
    with pytest.raises(ValueError, match=r"relative_l2: expected shape \(256, 100\) \(x, t\), got \(100, 256\)"):
        ref.relative_l2(ref.u.T)


def test_gaussian_random_field_is_the_fno_burgers_grf_on_its_box():
    """Defaults alpha = 2, tau = 5 (Li et al. 2021, Burgers: N(0, 625 (-d_xx + 25 I)^-2) up to sigma),
    on the box of side ``length``. Kills: other default constants; ``length`` not passed on."""
    got = gaussian_random_field(3, 32, length=2 * math.pi, generator=torch.Generator().manual_seed(5))
    want = sample_grf(3, (32,), alpha=2.0, tau=5.0, length=2 * math.pi, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
