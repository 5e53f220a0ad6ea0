"""Two-channel filter banks for :mod:`sciflow.nn.wavelets`: the :class:`FilterBank` record, its
lookup by PyWavelets name (``pywt.Wavelet(name)``, cached) and the cached ``(2, 1, L)`` convolution
weights per device and dtype, so a transform never rebuilds a weight tensor or syncs with the host.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FilterBank:
    """A two-channel biorthogonal filter bank: decomposition and reconstruction filters.

    All four filters have the same even length ``L`` (PyWavelets pads biorthogonal filters with
    zeros to achieve this). ``from_pywt(name)`` reads them from ``pywt.Wavelet(name)``.
    """

    name: str
    dec_lo: tuple[float, ...]
    dec_hi: tuple[float, ...]
    rec_lo: tuple[float, ...]
    rec_hi: tuple[float, ...]

    def __post_init__(self) -> None:
        lengths = {len(self.dec_lo), len(self.dec_hi), len(self.rec_lo), len(self.rec_hi)}
        if len(lengths) != 1:
            raise ValueError(f"filter bank {self.name!r}: all four filters must have one length, got {lengths}")
        (length,) = lengths
        if length < 2 or length % 2:
            raise ValueError(f"filter bank {self.name!r}: filter length must be even and >= 2, got {length}")

    @property
    def length(self) -> int:
        return len(self.dec_lo)

    @staticmethod
    def from_pywt(name: str) -> FilterBank:
        return _pywt_bank(name)

    def decomposition(self, like: Tensor) -> Tensor:
        """``(2, 1, L)`` conv1d weight: cross-correlation with the reversed (low, high) filters."""
        return _weights(self, "dec", like.device, like.dtype)

    def reconstruction(self, like: Tensor) -> Tensor:
        """``(2, 1, L)`` conv_transpose1d weight: rows are the (low, high) reconstruction filters."""
        return _weights(self, "rec", like.device, like.dtype)


@functools.lru_cache(maxsize=None)
def _pywt_bank(name: str) -> FilterBank:
    import pywt  # optional at import time: only needed to look filters up by name

    discrete = pywt.wavelist(kind="discrete")
    if name not in discrete:
        families = sorted(pywt.families(short=True))
        raise ValueError(
            f"unknown wavelet {name!r}: expected a discrete PyWavelets wavelet "
            f"(families {families}, e.g. 'haar', 'db4', 'sym8', 'bior2.4'), see pywt.wavelist(kind='discrete')"
        )
    w = pywt.Wavelet(name)
    return FilterBank(name, tuple(w.dec_lo), tuple(w.dec_hi), tuple(w.rec_lo), tuple(w.rec_hi))


@functools.lru_cache(maxsize=256)
def _weights(bank: FilterBank, kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    if kind == "dec":
        rows = [bank.dec_lo[::-1], bank.dec_hi[::-1]]
    else:
        rows = [bank.rec_lo, bank.rec_hi]
    with torch.inference_mode(False):  # cached: must also serve autograd outside inference mode
        return torch.tensor(rows, dtype=dtype, device=device).unsqueeze(1)


def _bank(wavelet: str | FilterBank) -> FilterBank:
    if isinstance(wavelet, FilterBank):
        return wavelet
    if isinstance(wavelet, str):
        return _pywt_bank(wavelet)
    raise TypeError(f"wavelet must be a name or a FilterBank, got {type(wavelet).__name__}")
