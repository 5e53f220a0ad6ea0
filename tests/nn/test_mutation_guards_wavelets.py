"""Mutation-audit guards for :mod:`sciflow.nn.wavelets`: properties the other wavelet tests left
unchecked.

``test_wavedecn_default_level_on_unequal_axes_matches_pywt``: the default depth of a multi-level
transform is the deepest level that *every* transformed axis allows, ``min_k dwt_max_level(N_k)``
(``pywt.dwtn_max_level``); the existing multi-level tests pass ``level=`` explicitly or use one
axis, so a maximum over the axes (a wrong reduction) went unseen. Checked on axes whose own
maximal levels differ, against ``pywt.wavedecn`` with its default level, and by perfect
reconstruction.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pywt = pytest.importorskip("pywt")

from sciflow.nn.wavelets import dwt_max_level, wavedecn, waverecn  # noqa: E402


@pytest.mark.parametrize("mode", ["zero", "periodization"])
@pytest.mark.parametrize("wavelet, shape", [("db2", (64, 12)), ("haar", (5, 33)), ("sym4", (30, 15, 70))])
def test_wavedecn_default_level_on_unequal_axes_matches_pywt(wavelet, shape, mode):
    dim = len(shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    levels = [dwt_max_level(n, wavelet) for n in shape]
    assert len(set(levels)) > 1                                 # the axes really disagree
    expected_level = pywt.dwtn_max_level(shape, wavelet)
    assert expected_level == min(levels) >= 1
    ours = wavedecn(torch.tensor(x), wavelet, mode, dim=dim)
    ref = pywt.wavedecn(x, wavelet, mode=mode, axes=tuple(range(-dim, 0)))
    assert len(ours) == len(ref) == expected_level + 1
    torch.testing.assert_close(ours[0], torch.from_numpy(ref[0]), rtol=1e-12, atol=1e-12)
    keys = ["".join(k) for k in itertools.product("ad", repeat=dim)][1:]  # pywt's detail keys, in order
    for det, r in zip(ours[1:], ref[1:]):
        for i, key in enumerate(keys):
            torch.testing.assert_close(det[:, i], torch.from_numpy(r[key]), rtol=1e-12, atol=1e-12)
    rec = waverecn(ours, wavelet, mode, dim=dim)
    # perfect reconstruction up to the round-off of PyWavelets' tabulated filters (~1e-12 relative)
    torch.testing.assert_close(rec[(...,) + tuple(slice(0, n) for n in shape)], torch.from_numpy(x),
                               rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="level"):
        wavedecn(torch.tensor(x), wavelet, mode, dim=dim, level=expected_level + 1)
