"""Shared Fourier pseudo-spectral machinery for the periodic PDE generators.

* :func:`wavenumbers` — angular wavenumbers of an ``rfft``/``fft`` grid on a periodic box.
* :func:`dealias_mask` — the 2/3 rule (Orszag 1971): modes with ``|k| > N/3`` are zeroed in
  quadratic products, which makes the truncated product alias-free on the retained modes.
* :class:`ETDRK4` — exponential time differencing RK4 of Cox & Matthews (2002, eq. 26) with the
  coefficients evaluated by the contour-integral trick of Kassam & Trefethen (2005, eq. 2.5 and
  sec. 3), for ``v' = L v + N(v, t)`` with diagonal ``L`` (Fourier space).
* :func:`sample_grf` — periodic Gaussian random fields with covariance
  ``sigma^2 (-Delta + tau^2)^(-alpha)`` (the FNO data convention, Li et al. 2021, sec. 5).

Everything is batched over leading axes and device/dtype agnostic; no host synchronisation
happens inside a time step.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

NonlinearTerm = Callable[[Tensor, float], Tensor]


def wavenumbers(n: int, length: float, *, real: bool = False, device=None,
                dtype: torch.dtype = torch.float64) -> Tensor:
    """Angular wavenumbers ``2 pi k / length`` of an ``n``-point periodic grid.

    ``real=True`` returns the ``n // 2 + 1`` non-negative ones of ``torch.fft.rfft``.
    """
    if n < 2:
        raise ValueError(f"wavenumbers: need at least 2 grid points, got n={n}")
    f = torch.fft.rfftfreq if real else torch.fft.fftfreq
    return 2.0 * math.pi * f(n, d=1.0 / n, device=device, dtype=dtype) / length


def dealias_mask(n: int, *, real: bool = False, device=None) -> Tensor:
    """Boolean 2/3-rule mask over integer wavenumbers of an ``n``-point grid (True = keep)."""
    f = torch.fft.rfftfreq if real else torch.fft.fftfreq
    k = (f(n, d=1.0 / n, device=device, dtype=torch.float64)).abs()
    return k < (2.0 / 3.0) * (n / 2.0)


class ETDRK4:
    """Fourth-order exponential time differencing Runge–Kutta for diagonal stiff systems.

    Solves ``dv/dt = L * v + N(v, t)`` (element-wise ``L``, typically Fourier symbols) with fixed
    step ``h``. The phi-function coefficients ``Q, f1, f2, f3`` (Kassam & Trefethen 2005, eq. 2.5)
    are computed as means over ``m`` points of a unit circle around each ``h L`` in the complex
    plane, which avoids the cancellation of the closed forms near ``h L = 0``.

    Deviation: we use the full circle (not the upper half) so complex symbols (dispersion) work;
    for real ``L`` the result is real up to round-off and is returned as a real tensor.
    """

    order = 4

    def __init__(self, linear: Tensor, h: float, *, contour_points: int = 64) -> None:
        if not torch.isfinite(torch.as_tensor(linear)).all():
            raise ValueError("ETDRK4: linear symbol L contains non-finite values")
        if h <= 0:
            raise ValueError(f"ETDRK4: step h must be positive, got {h}")
        self.h = float(h)
        lin = linear.to(torch.complex128)
        hl = self.h * lin
        j = torch.arange(1, contour_points + 1, device=lin.device, dtype=torch.float64)
        r = torch.exp(2j * math.pi * (j - 0.5) / contour_points)
        lr = hl.unsqueeze(-1) + r  # (..., m)
        e = torch.exp(lr)
        e2 = torch.exp(lr / 2)
        q = self.h * ((e2 - 1.0) / lr).mean(-1)
        f1 = self.h * ((-4.0 - lr + e * (4.0 - 3.0 * lr + lr**2)) / lr**3).mean(-1)
        f2 = self.h * ((2.0 + lr + e * (-2.0 + lr)) / lr**3).mean(-1)
        f3 = self.h * ((-4.0 - 3.0 * lr - lr**2 + e * (4.0 - lr)) / lr**3).mean(-1)
        real = not torch.is_complex(linear) or bool((linear.imag == 0).all())
        rdt = linear.real.dtype if torch.is_complex(linear) else linear.dtype

        def cast(z: Tensor) -> Tensor:
            return z.real.to(rdt) if real else z.to(linear.dtype if torch.is_complex(linear) else torch.complex128)

        self.E, self.E2 = cast(torch.exp(hl)), cast(torch.exp(hl / 2))
        self.Q, self.f1, self.f2, self.f3 = cast(q), cast(f1), cast(f2), cast(f3)

    def step(self, v: Tensor, t: float, nonlinear: NonlinearTerm) -> Tensor:
        """One step from ``v`` at time ``t`` (Cox & Matthews 2002, eq. 26)."""
        h = self.h
        nv = nonlinear(v, t)
        a = self.E2 * v + self.Q * nv
        na = nonlinear(a, t + h / 2)
        b = self.E2 * v + self.Q * na
        nb = nonlinear(b, t + h / 2)
        c = self.E2 * a + self.Q * (2.0 * nb - nv)
        nc = nonlinear(c, t + h)
        return self.E * v + nv * self.f1 + 2.0 * (na + nb) * self.f2 + nc * self.f3


def steps_per_interval(t_save: Tensor, dt: float) -> list[int]:
    """Number of equal sub-steps (each ``<= dt``) for every interval of the save grid."""
    t = torch.as_tensor(t_save, dtype=torch.float64).cpu()
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"save times must be a 1-D grid of >= 2 points (the initial time and at least one "
                         f"more; nt >= 2), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("save times contain NaN/inf")
    d = torch.diff(t)
    if (d <= 0).any():
        raise ValueError("save times must be strictly increasing")
    if not dt > 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be positive and finite, got {dt}")
    return [max(1, math.ceil(float(di) / dt - 1e-9)) for di in d]


def integrate_etdrk4(v0: Tensor, linear: Tensor, nonlinear: NonlinearTerm, t_save: Sequence[float] | Tensor,
                     dt: float, *, callback: Callable[[int], None] | None = None) -> Tensor:
    """Integrate ``v' = L v + N(v, t)`` from ``t_save[0]`` and return ``v`` at every save time.

    Returns ``(time, *v0.shape)``. Each save interval is split into the fewest equal steps no
    larger than ``dt``; coefficients are cached per distinct step size.
    """
    t = torch.as_tensor(t_save, dtype=torch.float64).cpu()
    nsub = steps_per_interval(t, dt)
    cache: dict[float, ETDRK4] = {}
    out = [v0]
    v = v0
    for i, n in enumerate(nsub):
        h = float(t[i + 1] - t[i]) / n
        key = round(h, 15)
        if key not in cache:
            cache[key] = ETDRK4(linear, h)
        stepper = cache[key]
        tc = float(t[i])
        for s in range(n):
            v = stepper.step(v, tc + s * h, nonlinear)
        out.append(v)
        if callback is not None:
            callback(i + 1)
    return torch.stack(out, 0)


def sample_grf(n: int, shape: Sequence[int], *, alpha: float, tau: float, sigma: float | None = None,
               length: float = 1.0, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` periodic Gaussian random fields on a ``shape`` grid of a box of side ``length``.

    Covariance ``C = sigma^2 (-Delta + tau^2 I)^(-alpha)`` with zero mean and the constant mode
    removed (FNO convention, Li et al. 2021; ``sigma`` defaults to ``tau^(alpha - d/2)``). Fourier
    coefficients of the field have variance ``sigma^2 (|2 pi k / length|^2 + tau^2)^(-alpha)``.
    The field is produced as ``C^{1/2}`` applied to real white noise, so it is exactly real.
    Returns ``(n, *shape)``.
    """
    d = len(shape)
    if d < 1 or any(s < 2 for s in shape):
        raise ValueError(f"sample_grf: bad grid shape {tuple(shape)}")
    if sigma is None:
        sigma = tau ** (0.5 * (2 * alpha - d))
    ks = torch.meshgrid(*[wavenumbers(s, length, device=device) for s in shape], indexing="ij")
    k2 = sum(k**2 for k in ks)
    # the factor 2pi/length is already in k; FNO writes 4 pi^2 |k|^2 with integer k on [0,1]
    sqrt_eig = sigma * (k2 + tau**2) ** (-alpha / 2.0)
    sqrt_eig[(0,) * d] = 0.0
    noise = torch.randn((n, *shape), generator=generator, device=device, dtype=torch.float64)
    dims = tuple(range(1, d + 1))
    npts = math.prod(shape)
    field = torch.fft.ifftn(torch.fft.fftn(noise, dim=dims) * sqrt_eig * math.sqrt(npts), dim=dims).real
    return field.to(dtype)
