"""Mutation-audit guards for the Fourier neural operator and the operator models (session 11 audit):
properties the other tests left unchecked. Each docstring names the mutants it kills.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sciflow.nn.fno import FNO, SpectralConv


@pytest.mark.parametrize("k", [(2, 1), (-2, 1), (-1, 2), (1, 0), (0, 2)])
def test_spectral_conv_multiplies_each_signed_mode_by_its_own_corner_weight(k):
    """Paper eq. 4-5 in 2-D: a plane wave ``cos 2π(k_1 x + k_2 y)`` with ``|k_1|, k_2 < m`` comes out
    as ``Re(R_k e^{2πi(k_1 x + k_2 y)})`` where ``R_k`` is the weight of the block holding ``k_1``'s
    sign (block 0: ``k_1 >= 0`` at index ``k_1``; block 1: ``k_1 < 0`` at index ``m + k_1``).
    Kills dropping the negative-frequency block (every block read from the positive corner)."""
    torch.manual_seed(0)
    m, n = 3, 8
    layer = SpectralConv(1, 1, (m, m)).double()
    x, y = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) / n] * 2, indexing="ij")
    phase = 2 * math.pi * (k[0] * x + k[1] * y)
    w = torch.view_as_complex(layer.weight[:, 0, 0])                    # (corner, m, m)
    r = w[0, k[0], k[1]] if k[0] >= 0 else w[1, m + k[0], k[1]]
    expected = (r * torch.exp(1j * phase)).real
    if k[1] == 0 and k[0] != 0:   # on the k_2 = 0 line the conjugate mode -k is kept too (Hermitian)
        r_conj = w[1, m - k[0], 0] if k[0] > 0 else w[0, -k[0], 0]
        expected = 0.5 * (r * torch.exp(1j * phase) + r_conj * torch.exp(-1j * phase)).real
    torch.testing.assert_close(layer(torch.cos(phase)[None, None])[0, 0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_layers, padding", [(1, 0), (3, 0), (2, 5)])
def test_fno_is_lift_then_gelu_separated_fourier_layers_then_projection(n_layers, padding):
    """Li et al. 2021, Sec. 4: ``Q ∘ crop ∘ (K_L + W_L) ∘ σ ∘ … ∘ σ ∘ (K_1 + W_1) ∘ pad ∘ P``
    with the grid appended to the input, zero padding appended at the *end* of the axis (cropped
    from the end after the Fourier layers) and GELU ``σ`` after every Fourier layer but the last,
    evaluated from the model's own sub-layers. Kills a GELU after the last Fourier layer and padding
    put at the start of the axis while the end is cropped."""
    torch.manual_seed(0)
    fno = FNO(1, 2, 1, modes=4, width=6, n_layers=n_layers, projection=8, padding=padding).double()
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    grid = torch.linspace(0, 1, 16, dtype=torch.float64).expand(3, 1, 16)
    h = F.pad(fno.lift(torch.cat([x, grid], 1)), (0, padding))
    for k in range(n_layers):
        h = fno.spectral[k](h) + fno.pointwise[k](h)
        if k < n_layers - 1:
            h = F.gelu(h)
    torch.testing.assert_close(fno(x), fno.project(h[..., :16]), rtol=1e-12, atol=1e-12)
