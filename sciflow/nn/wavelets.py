r"""Differentiable discrete wavelet transforms (DWT) in torch, matching PyWavelets.

One level of the DWT along an axis of length :math:`N` with a two-channel filter bank
(decomposition filters :math:`h` (low-pass) and :math:`g` (high-pass), both of even length
:math:`L`, taken from ``pywt.Wavelet(name)``) is a strided convolution

.. math::

    a_k = \sum_{j=0}^{L-1} h_j\, \tilde x_{2k + s - j}, \qquad
    d_k = \sum_{j=0}^{L-1} g_j\, \tilde x_{2k + s - j},

(Mallat 1989, eq. 29; Strang & Nguyen, *Wavelets and Filter Banks*, ch. 4) where the extension
:math:`\tilde x` and the shift :math:`s` are the boundary mode:

* ``"zero"``: :math:`\tilde x_i = 0` outside :math:`[0, N)`, :math:`s = 1`; each band has
  :math:`\lfloor (N + L - 1)/2 \rfloor` coefficients (the transform is redundant but exact).
* ``"periodization"``: an odd :math:`N` is first made even by repeating the last sample, then
  :math:`\tilde x` is periodic with period :math:`M = 2\lceil N/2 \rceil`, :math:`s = L/2`;
  each band has :math:`M/2` coefficients (orthogonal wavelets give an orthogonal transform).

The inverse is the transposed (upsampling) convolution with the reconstruction filters
:math:`\tilde h, \tilde g`,

.. math::

    x_i = \sum_k \tilde h_{i + c - 2k}\, a_k + \tilde g_{i + c - 2k}\, d_k,

with :math:`c = L - 2`, :math:`i = 0 \ldots 2n - L + 1` (``zero``: the full upsampled signal
cropped) or :math:`c = L/2 - 1`, :math:`i = 0 \ldots 2n - 1` and :math:`k` taken modulo :math:`n`
(``periodization``: folded periodically). These index conventions are PyWavelets' (``pywt.dwt``/
``idwt``/``dwtn``/``idwtn``), which the tests reproduce to round-off for haar, db*, sym*, coif*,
bior*, rbio*. The inverse is evaluated in **polyphase form** (one stride-1 convolution from the
two bands to the two output phases, then an interleave; :mod:`sciflow.nn._wavelet_kernels`).

The n-dimensional transform is separable: the 1-D transform is applied along each of the last
``dim`` axes in turn. The :math:`2^{dim}` sub-bands are stacked on a new axis just before the
transformed axes, in ``pywt.dwtn`` key order (``'aa', 'ad', 'da', 'dd'`` for ``dim = 2``: the
first letter is the first transformed axis, ``a`` before ``d``). Filter banks are
:class:`FilterBank` (:mod:`sciflow.nn._wavelet_filters`); each axis is transformed by one
convolution without transposing any axis (:mod:`sciflow.nn._wavelet_kernels`).

Used by the wavelet diffusion neural operator (Hu et al., "Wavelet Diffusion Neural Operator",
ICLR 2025, Sec. 3.1), which transforms whole space-time trajectories and stacks the sub-bands as
channels. Deviation: only the ``zero`` and ``periodization`` boundary modes are provided (the
paper's code uses PyWavelets' default ``symmetric`` through ptwt); both are exact and cheaper.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from sciflow.nn._wavelet_filters import FilterBank, _bank
from sciflow.nn._wavelet_kernels import MODES, _analysis_axis, _check_mode, _synthesis_axis

__all__ = [
    "MODES",
    "FilterBank",
    "dwt",
    "idwt",
    "dwtn",
    "idwtn",
    "wavedecn",
    "waverecn",
    "subband_keys",
    "dwt_max_level",
    "DWT",
    "IDWT",
]


def _check_input(x: Tensor, dim: int, what: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3 trailing axes, got {dim}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {x.dtype}")


def subband_keys(dim: int) -> list[str]:
    """Sub-band names in stacking order, as ``pywt.dwtn`` keys: ``['a', 'd']``, ``['aa', 'ad', 'da', 'dd']``, ..."""
    return ["".join(k) for k in itertools.product("ad", repeat=dim)]


def dwt_max_level(length: int, wavelet: str | FilterBank) -> int:
    """Deepest useful level, ``floor(log2(N / (L - 1)))`` as ``pywt.dwt_max_level``."""
    filt = _bank(wavelet).length
    if length < filt - 1:
        return 0
    return int((length // (filt - 1)).bit_length() - 1)


# ---------------------------------------------------------------------------------------------
# public functional API


def dwt(x: Tensor, wavelet: str | FilterBank, mode: str = "periodization") -> tuple[Tensor, Tensor]:
    """One-level 1-D DWT along the last axis, as ``pywt.dwt(x, wavelet, mode, axis=-1)``.

    ``x``: ``(*batch, N)`` floating point, ``N >= 2``. Returns ``(cA, cD)``, each ``(*batch, n)``
    with ``n = ceil(N/2)`` (periodization) or ``floor((N + L - 1)/2)`` (zero).
    """
    bands = dwtn(x, wavelet, mode, dim=1)
    return bands[..., 0, :], bands[..., 1, :]


def idwt(ca: Tensor, cd: Tensor, wavelet: str | FilterBank, mode: str = "periodization") -> Tensor:
    """Inverse of :func:`dwt`, as ``pywt.idwt(cA, cD, wavelet, mode)``: ``(*batch, n)`` x 2 -> ``(*batch, N')``.

    ``N' = 2n`` (periodization) or ``2n - L + 2`` (zero); ``N' = N + 1`` for odd ``N``, as in pywt.
    """
    if ca.shape != cd.shape:
        raise ValueError(f"idwt: approximation and detail shapes differ: {tuple(ca.shape)} vs {tuple(cd.shape)}")
    return idwtn(torch.stack([ca, cd], dim=-2), wavelet, mode, dim=1)


def dwtn(x: Tensor, wavelet: str | FilterBank, mode: str = "periodization", dim: int = 2) -> Tensor:
    """One-level separable DWT over the last ``dim`` (1, 2 or 3) axes, sub-bands stacked as channels.

    ``x``: ``(*batch, N_1, ..., N_dim)`` -> ``(*batch, 2**dim, n_1, ..., n_dim)``; band ``i`` is
    ``pywt.dwtn(x, wavelet, mode, axes=range(-dim, 0))[subband_keys(dim)[i]]``.
    Every transformed axis must have length >= 2.
    """
    _check_input(x, dim, "dwtn input")
    bank = _bank(wavelet)
    _check_mode(mode)
    if x.ndim < dim:
        raise ValueError(
            f"dwtn over dim={dim} trailing axes needs a tensor with >= {dim} axes, got shape {tuple(x.shape)}"
        )
    spatial = x.shape[x.ndim - dim :]
    for ax, n in enumerate(spatial):
        if n < 2:
            raise ValueError(
                f"dwtn: transformed axis {ax - dim} has length {n}; each needs length >= 2 (shape {tuple(x.shape)})"
            )
    lead = x.shape[: x.ndim - dim]
    y = x.reshape(-1, 1, *spatial)  # (B * S, 1, N_1..N_dim), S sub-bands so far
    for k in range(dim):
        y = _analysis_axis(y, bank, mode, k)  # (B * S, 2, ...): old bands outer, new band inner = pywt key order
        y = y.reshape(-1, 1, *y.shape[2:])
    return y.reshape(*lead, 2**dim, *y.shape[2:])


def idwtn(coeffs: Tensor, wavelet: str | FilterBank, mode: str = "periodization", dim: int = 2) -> Tensor:
    """Inverse of :func:`dwtn`: ``(*batch, 2**dim, n_1, ..., n_dim) -> (*batch, N_1, ..., N_dim)``.

    Matches ``pywt.idwtn`` on the dict ``{subband_keys(dim)[i]: coeffs[..., i, ...]}``; the output
    length along an axis is ``2n`` (periodization) or ``2n - L + 2`` (zero).
    """
    _check_input(coeffs, dim, "idwtn coefficients")
    bank = _bank(wavelet)
    _check_mode(mode)
    if coeffs.ndim < dim + 1 or coeffs.shape[-dim - 1] != 2**dim:
        raise ValueError(
            f"idwtn over dim={dim} axes expects coefficients (*batch, {2**dim}, n_1..n_{dim}) "
            f"with the sub-bands on axis {-dim - 1}, got shape {tuple(coeffs.shape)}"
        )
    lead = coeffs.shape[: coeffs.ndim - dim - 1]
    y = coeffs.reshape(-1, 2, *coeffs.shape[coeffs.ndim - dim :])  # (B * S/2, [a, d] of the last axis, ...)
    for k in reversed(range(dim)):  # pywt.idwtn undoes the axes in reverse order
        y = _synthesis_axis(y, bank, mode, k)  # (B * S/2, 1, ...)
        if k:
            y = y.reshape(-1, 2, *y.shape[2:])
    return y.reshape(*lead, *y.shape[2:])


def wavedecn(
    x: Tensor, wavelet: str | FilterBank, mode: str = "periodization", dim: int = 2, level: int | None = None
) -> list[Tensor]:
    """Multi-level DWT over the last ``dim`` axes (``pywt.wavedec`` / ``wavedec2`` / ``wavedecn``).

    Returns ``[cA_level, D_level, ..., D_1]``: ``cA`` is ``(*batch, n...)`` and each ``D_j`` is
    ``(*batch, 2**dim - 1, n_j...)``, the detail bands in :func:`subband_keys` order without ``'a..a'``.
    For ``dim = 2`` pywt's ``(cH, cV, cD)`` are ``D[..., 1, :, :], D[..., 0, :, :], D[..., 2, :, :]``.
    ``level`` defaults to the largest level every axis allows (:func:`dwt_max_level`); a larger
    one raises (pywt only warns, but the coarse bands are then dominated by the boundary).
    """
    bank = _bank(wavelet)
    _check_input(x, dim, "wavedecn input")
    if x.ndim < dim:
        raise ValueError(f"wavedecn over dim={dim} axes needs >= {dim} axes, got shape {tuple(x.shape)}")
    max_level = min(dwt_max_level(n, bank) for n in x.shape[x.ndim - dim :])
    if level is None:
        level = max_level
    if level < 1 or level > max_level:
        raise ValueError(
            f"wavedecn: level {level} invalid for axes {tuple(x.shape[x.ndim - dim:])} and wavelet "
            f"{bank.name!r} (filter length {bank.length}); allowed 1..{max_level}"
        )
    details: list[Tensor] = []
    approx = x
    for _ in range(level):
        bands = dwtn(approx, bank, mode, dim)
        approx = bands.select(-dim - 1, 0)
        details.append(bands.narrow(-dim - 1, 1, 2**dim - 1))
    return [approx, *reversed(details)]


def waverecn(coeffs: list[Tensor], wavelet: str | FilterBank, mode: str = "periodization", dim: int = 2) -> Tensor:
    """Inverse of :func:`wavedecn` (``pywt.waverec`` / ``waverec2`` / ``waverecn``).

    As pywt, an approximation one sample longer than the next details along an axis (odd lengths
    in ``zero`` mode) is trimmed at the end before the next inverse step.
    """
    if len(coeffs) < 2:
        raise ValueError(
            f"waverecn needs [cA, D_level, ..., D_1] with at least one detail level, got {len(coeffs)} arrays"
        )
    approx = coeffs[0]
    for det in coeffs[1:]:
        if det.ndim != approx.ndim + 1 or det.shape[-dim - 1] != 2**dim - 1:
            raise ValueError(
                f"waverecn: details must be (*batch, {2**dim - 1}, n...) next to approximation "
                f"{tuple(approx.shape)}, got {tuple(det.shape)}"
            )
        target = det.shape[det.ndim - dim :]
        for ax in range(dim):
            axis = approx.ndim - dim + ax
            extra = approx.shape[axis] - target[ax]
            if extra == 1:
                approx = approx.narrow(axis, 0, target[ax])
            elif extra != 0:
                raise ValueError(
                    f"waverecn: approximation {tuple(approx.shape)} does not fit details {tuple(det.shape)}"
                )
        approx = idwtn(torch.cat([approx.unsqueeze(-dim - 1), det], dim=-dim - 1), wavelet, mode, dim)
    return approx


# ---------------------------------------------------------------------------------------------
# modules


class _WaveletModule(nn.Module):
    """Shared set-up of :class:`DWT` / :class:`IDWT`: a filter bank, the number of trailing axes
    and the boundary mode (no parameters)."""

    def __init__(self, wavelet: str | FilterBank, dim: int, mode: str = "periodization") -> None:
        super().__init__()
        _check_mode(mode)
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3 trailing axes, got {dim}")
        self.bank = _bank(wavelet)
        self.dim = dim
        self.mode = mode

    def extra_repr(self) -> str:
        return f"wavelet={self.bank.name!r}, dim={self.dim}, mode={self.mode!r}"


class DWT(_WaveletModule):
    """One-level DWT over the last ``dim`` axes as a module (no parameters): see :func:`dwtn`.

    ``(*batch, N_1..N_dim) -> (*batch, 2**dim, n_1..n_dim)``, ``dim`` in 1, 2, 3.
    """

    def forward(self, x: Tensor) -> Tensor:
        return dwtn(x, self.bank, self.mode, self.dim)


class IDWT(_WaveletModule):
    """Inverse of :class:`DWT`: ``(*batch, 2**dim, n_1..n_dim) -> (*batch, N_1..N_dim)``."""

    def forward(self, coeffs: Tensor) -> Tensor:
        return idwtn(coeffs, self.bank, self.mode, self.dim)
