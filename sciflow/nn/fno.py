r"""Fourier neural operator (Li et al., "Fourier Neural Operator for Parametric Partial Differential
Equations", ICLR 2021).

Spectral convolution (paper eq. 4–5): with :math:`\mathcal F` the real FFT over the ``dim``
trailing axes of a periodic field :math:`v` with ``in_channels`` channels,

.. math::

    (\mathcal K v)(x) = \mathcal F^{-1}\big( R \cdot \mathcal F v \big)(x), \qquad
    (R \cdot \hat v)_{k, o} = \sum_i R_{k, i, o}\, \hat v_{k, i} \ \text{ for } |k_j| < m_j,
    \text{ zero otherwise},

a learned complex weight per retained mode :math:`k` (``modes`` :math:`m_j` per axis; along the
last axis only :math:`0 \le k < m`, the rest follow from Hermitian symmetry). Because the FFT is
normalised so that :math:`\hat v_k / N` is the Fourier coefficient, the layer is
discretisation-invariant: a band-limited input gives the same function on any grid with
:math:`N_j \ge 2 m_j`.

FNO (paper Sec. 4 and App. A): lift :math:`P` (pointwise linear, input channels plus the grid
coordinates in :math:`[0, 1]`) to ``width`` channels, ``n_layers`` Fourier layers
:math:`v \mapsto \sigma(\mathcal K v + W v)` with a pointwise linear :math:`W` and GELU
:math:`\sigma` (none after the last layer), then a projection :math:`Q` = Linear(width, 128)–GELU–
Linear(128, out). Published configurations: :func:`FNO1d` (Burgers, modes 16, width 64),
:func:`FNO2d` (Darcy / Navier–Stokes with time-stepping, modes 12, width 32), :func:`FNO3d`
(Navier–Stokes space-time, modes 8, width 20).

Deviations: tensors are channel-first ``(batch, channel, *spatial)`` like the rest of
``sciflow.nn`` (the reference code is channel-last); non-periodic axes may set ``padding`` (zero
padding at the end of an axis, cropped after the Fourier layers, as the authors' later code does
for both axes of Darcy and only for the time axis of FNO-3D: ``padding=(0, 0, 6)``).

Checked against the reference implementations (``fourier_1d.py``, ``fourier_2d.py``,
``fourier_2d_time.py``, ``fourier_3d.py`` of the paper): lifting ``Linear(in + dim, width)``, four
layers ``conv_l + w_l`` with GELU after all but the last, projection through 128 hidden units,
grid channels ``linspace(0, 1, N)``, weight initialisation ``U[0, 1) / (in * out)`` for the real and
imaginary parts, ``2 ** (dim - 1)`` weight blocks for the signed frequency corners. The paper's
tables use width 20 for the Navier–Stokes FNO-2D (the Darcy code uses 32, the default here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpectralConv", "FNO", "FNO1d", "FNO2d", "FNO3d"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class SpectralConv(nn.Module):
    """Fourier-space linear layer over the last ``len(modes)`` axes (paper eq. 4–5).

    ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``. ``modes[j]`` low
    frequencies are kept along axis ``j`` (positive and negative except along the last axis);
    requires ``spatial[j] >= 2 * modes[j]``. Weights are stored as real ``(..., 2)`` tensors so
    ``.double()`` / ``.to(dtype)`` work; initialised uniformly with scale ``1/(in*out)`` as in the paper's code.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]) -> None:
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3 or any(m < 1 for m in modes):
            raise ValueError(f"modes must be 1 to 3 positive integers (one per spatial axis), got {modes}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        n_corners = 2 ** (len(modes) - 1)  # sign combinations of the non-last axes
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(n_corners, in_channels, out_channels, *modes, 2))

    def _corners(self) -> list[tuple[slice, ...]]:
        *lead, last = self.modes
        corners = []
        for signs in range(2 ** len(lead)):
            idx = tuple(slice(None, m) if not (signs >> j) & 1 else slice(-m, None) for j, m in enumerate(lead))
            corners.append((*idx, slice(None, last)))
        return corners

    def _spectrum(self, blocks: list[Tensor], shape: Sequence[int]) -> Tensor:
        """The output spectrum of ``shape`` (the rfft axes) with the corner ``blocks`` (ordered as
        :meth:`_corners`) in place and zeros elsewhere, assembled out of place (``torch.cat``, no
        writes into a zero tensor) so that ``vmap`` over batched weights (HMC's chains) works."""
        *lead, last = self.modes
        for j in reversed(range(len(lead))):  # fold lead axis j: [low corner, zeros, high corner]
            axis, half = 2 + j, len(blocks) // 2
            gap = list(blocks[0].shape)
            gap[axis] = shape[j] - 2 * lead[j]
            zeros = blocks[0].new_zeros(gap)
            blocks = [torch.cat([blocks[s], zeros, blocks[s + half]], dim=axis) for s in range(half)]
        (y,) = blocks
        gap = list(y.shape)
        gap[-1] = shape[-1] - last
        return torch.cat([y, y.new_zeros(gap)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        d = len(self.modes)
        if x.ndim != d + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralConv over {d} axes expects (batch, {self.in_channels}, {d} spatial axes), "
                f"got {tuple(x.shape)}"
            )
        spatial = x.shape[2:]
        for j, (n, m) in enumerate(zip(spatial, self.modes)):
            if n < 2 * m:
                raise ValueError(
                    f"spatial axis {j} has {n} points, fewer than 2 * modes = {2 * m}; refine the grid or reduce modes"
                )
        dims = tuple(range(-d, 0))
        low = x.dtype in (torch.float16, torch.bfloat16)  # autocast: cuFFT has no bf16; modes want float32
        x_ft = torch.fft.rfftn(x.float() if low else x, dim=dims)
        wr = self.weight.to(x_ft.real.dtype)
        # torch.complex, not view_as_complex: the weight may be a view into a flat parameter vector
        # (HMC's functional_call, vmap over chains) whose offset or strides a complex view cannot take
        w = torch.complex(wr[..., 0], wr[..., 1])
        blocks = [torch.einsum("bi...,io...->bo...", x_ft[(slice(None), slice(None), *idx)], w[c])
                  for c, idx in enumerate(self._corners())]
        out = torch.fft.irfftn(self._spectrum(blocks, x_ft.shape[2:]), s=spatial, dim=dims)
        return out.to(x.dtype) if low else out


class FNO(nn.Module):
    """Fourier neural operator on ``dim``-dimensional fields (see module docstring).

    ``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``.
    ``append_grid`` concatenates the coordinates ``linspace(0, 1, N_j)`` as extra input channels
    (the paper's input ``(a(x), x)``). ``padding``: one int for every axis or one per axis.
    ``dropout`` > 0 adds dropout after every hidden GELU (a deviation for MC-dropout UQ).
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        width: int,
        n_layers: int = 4,
        projection: int = 128,
        append_grid: bool = True,
        padding: int | Sequence[int] = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"FNO dim must be 1, 2 or 3 spatial axes, got {dim}")
        modes = (modes,) * dim if isinstance(modes, int) else tuple(modes)
        if len(modes) != dim:
            raise ValueError(f"FNO dim={dim} needs {dim} modes, got {modes}")
        if n_layers < 1:
            raise ValueError(f"FNO needs n_layers >= 1, got {n_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FNO dropout must be in [0, 1), got {dropout}")
        pads = (int(padding),) * dim if isinstance(padding, int) else tuple(int(p) for p in padding)
        if len(pads) != dim or any(p < 0 for p in pads):
            raise ValueError(f"FNO dim={dim} needs padding >= 0 as one int or {dim} ints, got {padding}")
        conv = _CONV[dim]
        self.dim = dim
        self.in_channels = in_channels
        self.append_grid = append_grid
        self.padding = pads
        self.lift = conv(in_channels + (dim if append_grid else 0), width, 1)
        self.spectral = nn.ModuleList(SpectralConv(width, width, modes) for _ in range(n_layers))
        self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(n_layers))
        # dropout (off by default; not in the paper) after every hidden activation, for MC dropout
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.project = nn.Sequential(conv(width, projection, 1), nn.GELU(), self.dropout,
                                     conv(projection, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FNO(dim={self.dim}) expects (batch, {self.in_channels}, {self.dim} spatial axes), "
                f"got {tuple(x.shape)}"
            )
        if self.append_grid:
            spatial = x.shape[2:]
            axes = [torch.linspace(0, 1, n, device=x.device, dtype=x.dtype) for n in spatial]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
            x = torch.cat([x, grid.expand(x.shape[0], *grid.shape)], dim=1)
        h = self.lift(x)
        padded = any(self.padding)
        if padded:  # F.pad lists the last axis first
            h = F.pad(h, [v for p in reversed(self.padding) for v in (0, p)])
        for k, (spec, point) in enumerate(zip(self.spectral, self.pointwise)):
            h = spec(h) + point(h)
            if k < len(self.spectral) - 1:
                h = self.dropout(F.gelu(h))
        if padded:
            h = h[(slice(None), slice(None), *(slice(0, h.shape[2 + j] - p) for j, p in enumerate(self.padding)))]
        return self.project(h)


def FNO1d(in_channels: int = 1, out_channels: int = 1, modes: int = 16, width: int = 64, **kw) -> FNO:
    """The paper's 1-D FNO (Burgers: modes 16, width 64, 4 layers)."""
    return FNO(1, in_channels, out_channels, modes, width, **kw)


def FNO2d(in_channels: int = 1, out_channels: int = 1, modes: int = 12, width: int = 32, **kw) -> FNO:
    """The paper's 2-D FNO (Darcy / Navier–Stokes with recurrent time-stepping: modes 12, width 32)."""
    return FNO(2, in_channels, out_channels, modes, width, **kw)


def FNO3d(in_channels: int = 1, out_channels: int = 1, modes: int = 8, width: int = 20, **kw) -> FNO:
    """The paper's 3-D FNO (Navier–Stokes as a space-time field: modes 8, width 20; the authors'
    code zero-pads the non-periodic time axis only, ``padding=(0, 0, 6)`` for ``(x, y, t)``)."""
    return FNO(3, in_channels, out_channels, modes, width, **kw)

