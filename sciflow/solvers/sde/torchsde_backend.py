"""torchsde as a backend behind :func:`~sciflow.solvers.sde.sdeint.sdeint` (cross-checks, adjoints)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sciflow.solvers.sde.brownian import BrownianIncrements, BrownianPath, seed_from
from sciflow.solvers.sde.noise import Additive, Diagonal, General, Scalar
from sciflow.solvers.sde.term import SDETerm

# torchsde method -> calculus it integrates in
_CALCULUS = {
    "euler": "ito", "milstein": "ito", "srk": "ito",
    "heun": "stratonovich", "midpoint": "stratonovich", "euler_heun": "stratonovich",
    "reversible_heun": "stratonovich", "log_ode": "stratonovich",
}


class TorchSDE:
    """Run any torchsde method through sciflow's ``sdeint`` API.

    Args:
        method: a torchsde method name (``"euler"``, ``"milstein"``, ``"srk"``, ``"heun"``, ...).
        adaptive, rtol, atol: torchsde's adaptive stepping.
        adjoint: use ``torchsde.sdeint_adjoint`` (gradients w.r.t. parameters of ``drift`` /
            ``diffusion`` when they are ``nn.Module`` instances, or ``adjoint_params``).
        adjoint_params: explicit parameters for the adjoint.
        options: passed through to torchsde (e.g. ``{"grad_free": True}`` for derivative-free
            Milstein).

    States of any shape are flattened to torchsde's ``(batch, d)`` around the call; a sciflow
    :class:`BrownianPath` given to ``sdeint`` is adapted so both libraries see the same path.
    """

    term_kinds = ("sde",)

    def __init__(self, method: str = "euler", *, adaptive: bool = False, rtol: float = 1e-5, atol: float = 1e-4,
                 adjoint: bool = False, adjoint_params: tuple[Tensor, ...] | None = None,
                 options: dict | None = None) -> None:
        if method not in _CALCULUS:
            raise ValueError(f"unknown torchsde method {method!r}; known: {sorted(_CALCULUS)}")
        self.method = method
        self.calculus = _CALCULUS[method]
        self.adaptive = adaptive
        self.rtol, self.atol = rtol, atol
        self.adjoint = adjoint
        self.adjoint_params = adjoint_params
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"TorchSDE(method={self.method!r}, adaptive={self.adaptive}, adjoint={self.adjoint})"

    def integrate(self, term: SDETerm, y0: Tensor, save: list[float], *, dt: float | None,
                  brownian: BrownianPath | None, generator: torch.Generator | None) -> Tensor:
        import torchsde

        noise = term.noise
        shape = y0.shape
        if isinstance(noise, Scalar):
            nb = y0.ndim - noise.state_ndim
            n = math.prod(shape[:nb])
            y2 = y0.reshape(n, -1)
            kind, m = "scalar", 1
        elif isinstance(noise, General) or (isinstance(noise, Additive) and noise.brownian_size is not None):
            if y0.ndim < 1:
                raise ValueError("general/additive-matrix noise needs a state (*batch, d)")
            y2 = y0.reshape(-1, shape[-1])
            kind, m = ("general" if isinstance(noise, General) else "additive"), noise.brownian_size
        elif isinstance(noise, (Diagonal, Additive)):
            y2 = y0.reshape(shape[0] if y0.ndim > 1 else 1, -1)
            kind, m = "diagonal", y2.shape[1]
        else:
            raise ValueError(f"TorchSDE does not handle {noise!r}")
        n, d = y2.shape
        bm_size = (n, m)

        sde = _Wrapped(term, shape, kind, self.calculus)
        ts = torch.tensor(save, dtype=y0.dtype, device=y0.device)
        if brownian is None:
            entropy = seed_from(generator, 2**31 - 1)
            bm = torchsde.BrownianInterval(
                t0=save[0], t1=save[-1], size=bm_size, dtype=y0.dtype, device=y0.device, entropy=entropy,
                levy_area_approximation="space-time" if self.method == "srk" else "none",
                dt=dt if dt is not None else (save[-1] - save[0]) / 100)
        else:
            if math.prod(brownian.shape) != n * m:
                raise ValueError(f"brownian of shape {tuple(brownian.shape)} does not fit torchsde size {bm_size}")
            bm = _adapt_brownian(brownian, bm_size)
        kwargs = dict(method=self.method, dt=dt if dt is not None else (save[-1] - save[0]) / 100,
                      adaptive=self.adaptive, rtol=self.rtol, atol=self.atol, bm=bm, options=self.options)
        if self.adjoint:
            ys = torchsde.sdeint_adjoint(sde, y2, ts, adjoint_params=self.adjoint_params, **kwargs)
        else:
            ys = torchsde.sdeint(sde, y2, ts, **kwargs)
        return ys.reshape((len(save), *shape))


class _Wrapped(nn.Module):
    def __init__(self, term: SDETerm, shape: torch.Size, kind: str, sde_type: str) -> None:
        super().__init__()
        self.noise_type = kind
        self.sde_type = sde_type
        self._shape = shape
        self._kind = kind
        # registering module callables exposes their parameters to torchsde's adjoint
        self.drift_fn = term.drift
        self.diffusion_fn = term.diffusion

    def f(self, t, y):
        return self.drift_fn(t, y.reshape(self._shape)).reshape(y.shape)

    def g(self, t, y):
        g = self.diffusion_fn(t, y.reshape(self._shape))
        if self._kind == "scalar":
            return g.reshape(*y.shape, 1)
        if self._kind in ("general", "additive"):
            return g.reshape(y.shape[0], y.shape[1], -1)
        return g.reshape(y.shape)


def _adapt_brownian(brownian: BrownianPath, size: tuple[int, int]):
    from torchsde._brownian.brownian_base import BaseBrownian

    # torchsde advances its clock by repeated float32/64 additions: snap its times to the nearest
    # pre-sampled grid point (within a tenth of the finest step; the grid is what it must hit)
    time_tol = None
    if isinstance(brownian, BrownianIncrements):
        steps = [b - a for a, b in zip(brownian.grid[:-1], brownian.grid[1:])]
        time_tol = 0.1 * min(steps) / max(1.0, abs(brownian.t0), abs(brownian.t1))

    class _SciflowBrownian(BaseBrownian):
        __slots__ = ()

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            if tb is None:
                ta, tb = brownian.t0, ta
            if return_A:
                raise ValueError("sciflow Brownian objects do not provide the full Lévy area A")
            tol = time_tol
            if return_U:
                dw, i10 = brownian.increment(float(ta), float(tb), levy_area=True, time_tol=tol)
                return dw.reshape(size), i10.reshape(size)
            return brownian.increment(float(ta), float(tb), time_tol=tol).reshape(size)

        def __repr__(self):
            return f"torchsde view of {brownian!r}"

        @property
        def dtype(self):
            return brownian.dtype

        @property
        def device(self):
            return brownian.device

        @property
        def shape(self):
            return torch.Size(size)

        @property
        def levy_area_approximation(self):
            return "space-time" if brownian.has_levy_area else "none"

    return _SciflowBrownian()
