r"""One axis of the DWT and of its inverse: the kernels behind :mod:`sciflow.nn.wavelets`, whose
docstring defines the transform, the boundary modes (:data:`MODES`) and the index :math:`c`. Each
function maps ``(rows, channels, N_1, ..., N_d)``, ``d = 1, 2, 3``, along one spatial axis.

The inverse is evaluated in **polyphase form** (Vaidyanathan, *Multirate Systems and Filter
Banks*, 1993, ch. 4; Strang & Nguyen, ch. 4): with :math:`i = 2p + r` and the filter index
:math:`i + c - 2k = 2t + \sigma_r`, :math:`\sigma_r = (r + c) \bmod 2`,
:math:`e_r = \lfloor (r + c)/2 \rfloor`,

.. math::

    x_{2p + r} = \sum_{t=0}^{L/2 - 1} \tilde h_{2t + \sigma_r}\, a_{p + e_r - t}
                 + \tilde g_{2t + \sigma_r}\, d_{p + e_r - t}, \qquad r = 0, 1,

so each output phase is an ordinary stride-1 correlation of the pair :math:`(a, d)` with
:math:`L/2` taps: one convolution with 2 input channels (the bands) and 2 output channels (the
phases), whose outputs are then interleaved. ``zero``: :math:`\sigma_r = r`,
:math:`e_r = L/2 - 1`, a 'valid' correlation (:math:`p = 0 \ldots n - L/2`), no padding.
``periodization``: the coefficients are first wrapped periodically (filters longer than the
signal included), :math:`P = L/2 - 1 - e_0` of them in front and :math:`e_1` behind; phase :math:`r` then
starts at window :math:`p + o_r`, :math:`o_r = e_r - e_0` (:math:`o_1 = 1` when :math:`L/2` is
even, else 0), with no fold of the output. This replaces the transposed convolution, whose CPU
(oneDNN) kernel was several times slower than the forward; on CUDA it is likewise one
convolution and one copy per axis.

Each axis is transformed by one ``conv{dim}d`` (strided for the analysis; stride 1 plus the phase
interleave for the synthesis) whose kernel is the filter along that axis and 1 along the others,
with the two bands (phases) as channels and every other axis batched, so no axis is transposed and
the cost is :math:`O(L \cdot \text{numel})` per axis on any device, with no host synchronisation. For
:math:`L = 2` (haar) the polyphase filters are :math:`2 \times 2` matrices acting on sample
pairs; they are applied as one broadcast product and one fused multiply-add (two elementwise
kernels, exact on every device), because oneDNN's 1x1 and length-2 stride-2 CPU convolutions take
slow paths (measured up to ~30x slower for some batch shapes).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from sciflow.nn._wavelet_filters import FilterBank, _weights

MODES = ("zero", "periodization")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown boundary mode {mode!r}; allowed: {list(MODES)}")


# ---------------------------------------------------------------------------------------------
# one axis of a (rows, channels, N_1, ..., N_d) tensor, d = 1, 2, 3: an N-d convolution whose kernel
# is 1 except along the transformed axis, so no axis is ever transposed or copied for the transform

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _axis_kernel(w: Tensor, d: int, k: int) -> Tensor:
    """``(c_out, c_in, L)`` -> ``(c_out, c_in, 1, .., L, .., 1)`` with ``L`` on spatial axis ``k``."""
    shape = [1] * d
    shape[k] = w.shape[-1]
    return w.reshape(*w.shape[:2], *shape)


def _axis_tuple(d: int, k: int, value: int, other: int) -> tuple[int, ...]:
    out = [other] * d
    out[k] = value
    return tuple(out)


def _exact(conv, x: Tensor, weight: Tensor, **kw) -> Tensor:
    """``conv(x, weight, **kw)`` in ``x``'s own precision: outside autocast (under
    ``train.precision=bf16`` a float32 transform stays float32, so the wavelet coefficients, the
    diffusion noise drawn in their dtype and the loss keep float32; only the network runs in bf16),
    and in true float32 on CUDA: cuDNN's default TF32 convolutions (10-bit mantissa) put the
    transform ~3e-4 (relative) off PyWavelets, measured on an H200; these convolutions are tiny,
    exactness costs nothing."""
    with torch.autocast(x.device.type, enabled=False):
        if x.is_cuda and x.dtype == torch.float32:
            cudnn = torch.backends.cudnn
            with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                             deterministic=cudnn.deterministic, allow_tf32=False):
                return conv(x, weight, **kw)
        return conv(x, weight, **kw)


def _on_axis(w: Tensor, ndim: int, at: int) -> Tensor:
    """A length-2 vector ``w`` as a broadcastable ``(1, .., 2, .., 1)`` with ``ndim`` axes, the 2 on axis ``at``."""
    shape = [1] * ndim
    shape[at] = 2
    return w.reshape(shape)


def _wrap(x: Tensor, axis: int, left: int, right: int) -> Tensor:
    """Periodic extension along ``axis``: ``out[j] = x[(j - left) mod n]`` for ``0 <= j < left + n + right``.

    One concatenation of slices when ``left, right <= n`` (CPU ``index_select`` along the last
    axis is 5-8x slower); an index map when a filter is longer than the signal.
    """
    n = x.shape[axis]
    if not (left or right):
        return x
    if left <= n and right <= n:
        parts = [x.narrow(axis, n - left, left), x, x.narrow(axis, 0, right)]
        return torch.cat([p for p in parts if p.shape[axis]], axis)
    idx = torch.arange(-left, n + right, device=x.device) % n
    return x.index_select(axis, idx)


@functools.lru_cache(maxsize=None)
def _synthesis_plan(length: int, mode: str) -> tuple[tuple[int, int], tuple[int, int], int]:
    r"""Polyphase indices of the inverse for filter length ``L`` (module docstring): the tap parity
    :math:`\sigma_r` and window offset :math:`o_r` of output phase ``r = 0, 1``, and the number
    :math:`P` of coefficients wrapped in front (``periodization``)."""
    c = length - 2 if mode == "zero" else length // 2 - 1
    sigma = (c % 2, (c + 1) % 2)
    e = (c // 2, (c + 1) // 2)
    return sigma, (0, e[1] - e[0]), length // 2 - 1 - e[0]


@functools.lru_cache(maxsize=256)
def _synthesis_weight(bank: FilterBank, mode: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(2, 2, L/2)`` conv weight of the polyphase inverse: ``[r, b, j] = f_b[L - 2 - 2j + sigma_r]``
    (output phase ``r``, band ``b`` (low, high), cross-correlation tap ``j``)."""
    sigma, _, _ = _synthesis_plan(bank.length, mode)
    with torch.inference_mode(False):  # cached: must also serve autograd outside inference mode
        rec = torch.tensor([bank.rec_lo, bank.rec_hi], dtype=dtype, device=device)
        return torch.stack([rec[:, s::2].flip(-1) for s in sigma])


def _analysis_axis(x: Tensor, bank: FilterBank, mode: str, k: int) -> Tensor:
    """``(rows, 1, *N) -> (rows, 2, *n)``: low and high band along spatial axis ``k``."""
    d = x.ndim - 2
    axis = 2 + k
    filt = bank.length
    n_in = x.shape[axis]
    # the extended signal x_hat, of length 2 (n + L/2 - 1): a_k = sum_m w_m x_hat[2k + m], w = reversed h
    if mode == "zero":
        n = (n_in + filt - 1) // 2
        pad = [0] * (2 * d)
        pad[2 * (d - 1 - k)] = filt - 2  # F.pad lists the last axis first
        pad[2 * (d - 1 - k) + 1] = 2 * n - n_in
        if any(pad):
            x = F.pad(x, pad)
    else:
        n = (n_in + 1) // 2
        if n_in % 2:  # an odd N is made even by repeating the last sample
            x = torch.cat([x, x.narrow(axis, n_in - 1, 1)], axis)
        x = _wrap(x, axis, filt // 2 - 1, filt // 2 - 1)  # the periodic extension
    if filt == 2:
        # one polyphase tap: the filter bank is a 2 x 2 matrix on (even, odd) sample pairs, applied
        # as two broadcast products (CPU 1x1 and length-2 stride-2 convolutions take slow oneDNN paths)
        w = bank.decomposition(x).squeeze(1)  # (band, phase)
        pairs = x.unflatten(axis, (n, 2))
        even, odd = pairs.select(axis + 1, 0), pairs.select(axis + 1, 1)  # (rows, 1, ..., n, ...)
        return torch.addcmul(even * _on_axis(w[:, 0], d + 2, 1), odd, _on_axis(w[:, 1], d + 2, 1))
    weight = _axis_kernel(bank.decomposition(x), d, k)
    return _exact(_CONV[d], x, weight, stride=_axis_tuple(d, k, 2, 1))


def _synthesis_axis(c: Tensor, bank: FilterBank, mode: str, k: int) -> Tensor:
    """``(rows, 2, *n) -> (rows, 1, *N)``: inverse of :func:`_analysis_axis` along spatial axis ``k``
    in polyphase form (module docstring): one stride-1 convolution from the two bands to the two
    output phases, which are then interleaved."""
    d = c.ndim - 2
    axis = 2 + k
    n = c.shape[axis]
    filt = bank.length
    half = filt // 2
    _, offset, lead = _synthesis_plan(filt, mode)
    if mode == "zero":
        m = n - half + 1  # samples per phase
        if m < 1:
            raise ValueError(
                f"idwt ('zero' mode): {n} coefficients are too few for wavelet {bank.name!r} "
                f"of filter length {filt} (need >= {half})"
            )
    else:
        m = n
        c = _wrap(c, axis, lead, offset[1] + half - 1 - lead)  # periodic wrap: P in front, e_1 behind
    if half == 1:
        # x[2p + r] = f_lo[r] a[p] + f_hi[r] d[p]: a 2 x 2 matrix written straight into the
        # interleaved layout (rows, 1, ..., n, 2, ...); no oneDNN 1x1 convolution (see analysis)
        f = _weights(bank, "rec", c.device, c.dtype).squeeze(1)  # (band, phase)
        lo, hi = c.narrow(1, 0, 1).unsqueeze(axis + 1), c.narrow(1, 1, 1).unsqueeze(axis + 1)
        y = torch.addcmul(lo * _on_axis(f[0], d + 3, axis + 1), hi, _on_axis(f[1], d + 3, axis + 1))
        return y.flatten(axis, axis + 1)
    weight = _axis_kernel(_synthesis_weight(bank, mode, c.device, c.dtype), d, k)
    y = _exact(_CONV[d], c, weight)  # (rows, 2 phases, ..., m + offset[1], ...)
    phases = [y.narrow(1, r, 1).narrow(axis, offset[r], m) for r in (0, 1)]
    return torch.stack(phases, dim=axis + 1).flatten(axis, axis + 1)
