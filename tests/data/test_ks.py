"""Kuramoto–Sivashinsky generator: convergence in dt and N, conserved mean, regimes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.data.pdes import kuramoto_sivashinsky as ks
from sciflow.data.schema import validate


def _u0(nx):
    x = 2 * math.pi * torch.arange(nx, dtype=torch.float64) / nx
    return (torch.cos(x) * (1 + torch.sin(x)))[None]


@pytest.mark.parametrize("regime", ["regular", "chaotic"])
def test_time_convergence(regime):
    p = ks.REGIMES[regime]
    t = [0.0, 0.2]
    # ETDRK4 on this very stiff L (|h L| up to ~1e3) shows the order reduction analysed by
    # Hochbruck & Ostermann (2005): observed orders fluctuate between ~2 and ~5 over this range
    fine = ks.solve(_u0(128), t=t, dt=1e-4, **p)[0, -1]
    dts = [0.01, 0.005, 0.0025]
    errs = [float((ks.solve(_u0(128), t=t, dt=d, **p)[0, -1] - fine).abs().max()) for d in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert slope > 2.5 and errs[0] > errs[1] > errs[2], (errs, slope)
    assert errs[-1] < 2e-5


def _resolution_errors(regime, sizes, ref_size, t_final):
    p = ks.REGIMES[regime]
    t = [0.0, t_final]
    ref = ks.solve(_u0(ref_size), t=t, dt=1e-3, **p)[0, -1]
    errs = []
    for nx in sizes:  # compare on the 16 points x = 2 pi j / 16 shared by all grids
        u = ks.solve(_u0(nx), t=t, dt=1e-3, **p)[0, -1]
        errs.append(float((u[:: nx // 16] - ref[:: ref_size // 16]).abs().max()))
    return errs


def test_spectral_convergence_in_resolution_regular():
    errs = _resolution_errors("regular", (64, 96, 128), 256, 0.5)
    # spectral: each step of 32 modes gains > 20x (observed ~400x and ~50x)
    assert errs[0] / errs[1] > 20 and errs[1] / errs[2] > 20, errs


def test_spectral_convergence_in_resolution_chaotic():
    errs = _resolution_errors("chaotic", (128, 192, 256), 512, 1.0)
    assert errs[0] > 10 * errs[1] > 100 * errs[2], errs


def test_mean_is_conserved_and_regimes_differ():
    a = ks.generate(1, 0, regime="regular", nx=128, nt=6, dt=1e-3)
    b = ks.generate(1, 0, regime="chaotic", nx=128, nt=6, dt=1e-3)
    validate(a)
    for ds in (a, b):
        m = ds["u"].values.mean(-1)
        assert np.abs(m - m[:, :1]).max() < 1e-12
    assert np.abs(a["u"].values[0, -1] - b["u"].values[0, -1]).max() > 0.1


def test_grf_deterministic_and_errors():
    a = ks.generate(2, 5, nx=64, nt=2, t_final=0.01, dt=1e-3, initial_condition="grf")
    b = ks.generate(2, 5, nx=64, nt=2, t_final=0.01, dt=1e-3, initial_condition="grf")
    np.testing.assert_array_equal(a["u"].values, b["u"].values)
    with pytest.raises(ValueError, match="unknown regime"):
        ks.generate(regime="turbulent")
