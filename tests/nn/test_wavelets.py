"""Torch DWT against PyWavelets: coefficients, inverse, multi-level, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pywt = pytest.importorskip("pywt")

from sciflow.nn.wavelets import (  # noqa: E402
    DWT,
    IDWT,
    FilterBank,
    dwt,
    dwtn,
    idwt,
    idwtn,
    subband_keys,
    waverecn,
    wavedecn,
)

WAVELETS = ["haar", "db2", "db4", "sym4", "sym8", "coif2", "bior1.3", "bior2.4", "rbio2.4", "bior6.8"]
MODES = ["zero", "periodization"]
# odd and even lengths on every transformed axis; the leading axis is a batch axis
SHAPES = {1: (3, 9), 2: (2, 9, 8), 3: (2, 7, 6, 5)}
TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-6, 1e-6)}


def _close(actual: torch.Tensor, expected: np.ndarray, dtype: torch.dtype) -> None:
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(actual.double(), torch.from_numpy(np.asarray(expected)), atol=atol, rtol=rtol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_dwtn_idwtn_match_pywt(dim, wavelet, mode, dtype):
    rng = np.random.default_rng(dim)
    x = rng.standard_normal(SHAPES[dim])
    axes = tuple(range(-dim, 0))
    ref = pywt.dwtn(x, wavelet, mode=mode, axes=axes)
    coeffs = dwtn(torch.tensor(x, dtype=dtype), wavelet, mode, dim=dim)
    assert coeffs.dtype == dtype
    assert coeffs.shape == (x.shape[0], 2**dim, *ref["a" * dim].shape[1:])
    for i, key in enumerate(subband_keys(dim)):
        _close(coeffs[:, i], ref[key], dtype)
    rec = idwtn(coeffs, wavelet, mode, dim=dim)
    _close(rec, pywt.idwtn(ref, wavelet, mode=mode, axes=axes), dtype)
    # perfect reconstruction (pywt also returns one extra sample on odd axes); the float64
    # bound is set by the ~12 significant digits of pywt's tabulated filters, not by this code
    crop = rec[tuple(slice(0, n) for n in x.shape)]
    atol = 1e-10 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(crop.double(), torch.from_numpy(x), atol=atol, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [2, 3, 16, 17])
def test_dwt_idwt_1d_match_pywt(mode, n):
    x = np.random.default_rng(n).standard_normal((4, n))
    for wavelet in ("db2", "bior2.4", "db8"):  # db8: filter (16) longer than the signal
        ca_ref, cd_ref = pywt.dwt(x, wavelet, mode=mode)
        ca, cd = dwt(torch.tensor(x), wavelet, mode)
        _close(ca, ca_ref, torch.float64)
        _close(cd, cd_ref, torch.float64)
        _close(idwt(ca, cd, wavelet, mode), pywt.idwt(ca_ref, cd_ref, wavelet, mode=mode), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_length_two_filters_match_pywt(dim, mode, dtype):
    # L = 2 (haar, bior1.1) runs as a 2 x 2 matrix on sample pairs, not a convolution: odd axes
    # (zero padding / repeated last sample) and every axis position, forward and inverse
    rng = np.random.default_rng(10 + dim)
    x = rng.standard_normal(SHAPES[dim])
    axes = tuple(range(-dim, 0))
    for wavelet in ("haar", "bior1.1"):
        ref = pywt.dwtn(x, wavelet, mode=mode, axes=axes)
        coeffs = dwtn(torch.tensor(x, dtype=dtype), wavelet, mode, dim=dim)
        assert coeffs.shape == (x.shape[0], 2**dim, *ref["a" * dim].shape[1:])
        for i, key in enumerate(subband_keys(dim)):
            _close(coeffs[:, i], ref[key], dtype)
        _close(idwtn(coeffs, wavelet, mode, dim=dim), pywt.idwtn(ref, wavelet, mode=mode, axes=axes), dtype)


def test_length_two_filters_gradcheck():
    x = torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    for mode in MODES:
        assert torch.autograd.gradcheck(lambda t: dwtn(t, "haar", mode, dim=2), (x,))
        c = dwtn(x.detach(), "haar", mode, dim=2).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: idwtn(t, "haar", mode, dim=2), (c,))


def test_first_call_in_inference_mode_does_not_poison_the_filter_cache():
    # the filters are cached per (bank, device, dtype): built inside inference mode they would be
    # inference tensors, which autograd refuses to save for backward in a later training step
    bank = FilterBank.from_pywt("sym5")
    bank = FilterBank("sym5-copy", bank.dec_lo, bank.dec_hi, bank.rec_lo, bank.rec_hi)  # fresh cache keys
    gen = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        x0 = torch.randn(2, 12, 10, dtype=torch.float64, generator=gen)
        idwtn(dwtn(x0, bank, "zero", dim=2), bank, "zero", dim=2)
    x = torch.randn(2, 12, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    idwtn(dwtn(x, bank, "zero", dim=2), bank, "zero", dim=2).pow(2).sum().backward()
    # perfect reconstruction: d/dx sum(x^2) = 2x
    torch.testing.assert_close(x.grad, 2 * x.detach(), atol=1e-9, rtol=0)


def test_periodization_of_orthogonal_wavelet_is_orthogonal():
    # Parseval: periodized orthogonal DWT preserves the l2 norm (even lengths)
    x = torch.randn(3, 16, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = dwtn(x, "db4", "periodization", dim=2)
    torch.testing.assert_close(c.pow(2).sum((-3, -2, -1)), x.pow(2).sum((-2, -1)), atol=1e-10, rtol=1e-10)
    # bior2.4 is not orthogonal: the norm must change (guards against a vacuous identity transform)
    cb = dwtn(x, "bior2.4", "periodization", dim=2)
    assert (cb.pow(2).sum() - x.pow(2).sum()).abs() > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_wavedecn_matches_pywt_multilevel(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 40, 37))
    for wavelet in ("db2", "bior2.4"):
        ours = wavedecn(torch.tensor(x), wavelet, mode, dim=2, level=2)
        ref = pywt.wavedec2(x, wavelet, mode=mode, level=2)
        _close(ours[0], ref[0], torch.float64)
        for det, (ch, cv, cd) in zip(ours[1:], ref[1:]):
            _close(det[:, 1], ch, torch.float64)
            _close(det[:, 0], cv, torch.float64)
            _close(det[:, 2], cd, torch.float64)
        _close(waverecn(ours, wavelet, mode, dim=2), pywt.waverec2(ref, wavelet, mode=mode), torch.float64)
        ours1 = wavedecn(torch.tensor(x), wavelet, mode, dim=1)
        ref1 = pywt.wavedec(x, wavelet, mode=mode)
        assert len(ours1) == len(ref1)
        _close(ours1[0], ref1[0], torch.float64)
        for det, r in zip(ours1[1:], ref1[1:]):
            _close(det[:, :, 0], r, torch.float64)
        _close(waverecn(ours1, wavelet, mode, dim=1), pywt.waverec(ref1, wavelet, mode=mode), torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(mode):
    x = torch.randn(2, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dwtn(t, "bior2.4", mode, dim=2), (x,))
    c = dwtn(x.detach(), "db2", mode, dim=2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: idwtn(t, "db2", mode, dim=2), (c,))


def test_modules_and_custom_filter_bank():
    w = pywt.Wavelet("haar")
    bank = FilterBank("my-haar", tuple(w.dec_lo), tuple(w.dec_hi), tuple(w.rec_lo), tuple(w.rec_hi))
    x = torch.randn(2, 3, 8, 8, 4, dtype=torch.float64)
    fwd, inv = DWT(bank, dim=3), IDWT("haar", dim=3)
    c = fwd(x)
    assert c.shape == (2, 3, 8, 4, 4, 2)
    # haar 'aaa' band is the 2x2x2 block sum / 2^(3/2)
    blocks = x.reshape(2, 3, 4, 2, 4, 2, 2, 2).sum((3, 5, 7)) / 2**1.5
    torch.testing.assert_close(c[:, :, 0], blocks)
    torch.testing.assert_close(inv(c), x)


def test_clear_errors():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="unknown wavelet 'db99'"):
        dwtn(x, "db99", dim=1)
    with pytest.raises(ValueError, match="boundary mode 'symmetric'"):
        dwtn(x, "haar", "symmetric", dim=1)
    with pytest.raises(ValueError, match="length 1"):
        dwtn(torch.randn(4, 1), "haar", dim=1)
    with pytest.raises(ValueError, match="needs a tensor with >= 3 axes"):
        dwtn(x, "haar", dim=3)
    with pytest.raises(ValueError, match="sub-bands on axis"):
        idwtn(torch.randn(2, 3, 4, 4), "haar", dim=2)
    with pytest.raises(TypeError, match="floating point"):
        dwtn(torch.ones(4, 8, dtype=torch.long), "haar", dim=1)
    with pytest.raises(ValueError, match="too few"):
        idwtn(torch.randn(2, 2, 2), "db8", "zero", dim=1)
    with pytest.raises(ValueError, match="level 9 invalid"):
        wavedecn(torch.randn(2, 32), "db2", dim=1, level=9)
    with pytest.raises(ValueError, match="shapes differ"):
        idwt(torch.randn(3), torch.randn(4), "haar")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(mode):
    x = torch.randn(4, 2, 17, 32, 30, dtype=torch.float64)
    ref = dwtn(x, "bior2.4", mode, dim=3)
    got = dwtn(x.cuda(), "bior2.4", mode, dim=3)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(idwtn(got, "bior2.4", mode, dim=3).cpu(), idwtn(ref, "bior2.4", mode, dim=3))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_float32_is_exact_float32_not_tf32(mode):
    """cuDNN convolutions default to TF32 on Ampere+ (relative error ~3e-4, seen on an H200):
    the transforms must stay float32-exact there too."""
    x = torch.randn(4, 2, 17, 32, 30, dtype=torch.float64)
    ref = dwtn(x, "bior2.4", mode, dim=3)
    got = dwtn(x.float().cuda(), "bior2.4", mode, dim=3)
    err = (got.double().cpu() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5, f"relative error {err:.2e}: TF32 convolutions?"
    back = idwtn(got, "bior2.4", mode, dim=3).double().cpu()
    back = back[tuple(slice(0, n) for n in x.shape)]  # one extra sample on the odd axis, as pywt
    assert (back - x).abs().max() / x.abs().max() < 1e-5


def _autocast_keeps_float32(device: str) -> None:
    x = torch.randn(3, 2, 17, 32, dtype=torch.float64)
    ref = dwtn(x, "bior2.4", "zero", dim=2)
    with torch.autocast(device, dtype=torch.bfloat16):
        got = dwtn(x.float().to(device), "bior2.4", "zero", dim=2)
        back = idwtn(got, "bior2.4", "zero", dim=2)
    assert got.dtype == back.dtype == torch.float32
    # float32-exact, not bf16 (relative error ~4e-3): train.precision=bf16 leaves the transform alone
    assert (got.double().cpu() - ref).abs().max() / ref.abs().max() < 1e-5
    assert (back.double().cpu()[..., :17, :32] - x).abs().max() / x.abs().max() < 1e-5


def test_autocast_leaves_the_transform_in_float32():
    _autocast_keeps_float32("cpu")


@pytest.mark.gpu
def test_cuda_autocast_leaves_the_transform_in_float32():
    _autocast_keeps_float32("cuda")
