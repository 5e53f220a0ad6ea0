"""External integrators behind sciflow's API, for breadth and cross-checking.

``odeint(f, y0, t, solver=Torchdiffeq("dopri5"))`` runs ``torchdiffeq.odeint`` (Chen 2018) with
any of its methods; ``adjoint=BacksolveAdjoint(params)`` maps to ``torchdiffeq.odeint_adjoint``
with those ``adjoint_params`` (and ``seminorm=True`` to its ``adjoint_options=dict(norm="seminorm")``).
The torchsde backend lives with the SDE solvers.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from ._checks import check_state, check_times, check_vector_field_output

__all__ = ["Torchdiffeq"]


class _Counted(nn.Module):
    """Counts evaluations and checks the output shape once; an ``nn.Module`` so that
    ``odeint_adjoint`` finds the wrapped module's parameters."""

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]):
        super().__init__()
        self.f = f
        self.nfe = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.f(t, y)
        if self.nfe == 0:
            check_vector_field_output(out, y)
        self.nfe += 1
        return out


class Torchdiffeq:
    """The torchdiffeq backend. ``method``: any key of ``torchdiffeq``'s solver table
    (``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ``"adaptive_heun"``, ``"rk4"``, ``"implicit_adams"``,
    ...); ``options``: passed through unchanged (torchdiffeq's per-method options — the one place
    where strings and option dicts are allowed, because this is the edge to another library)."""

    backend = True
    term_kinds = ("ode",)

    def __init__(self, method: str = "dopri5", options: dict[str, Any] | None = None):
        import importlib

        table = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
        if method not in table:
            raise ValueError(f"unknown torchdiffeq method {method!r}; available: {sorted(table)}")
        self.method = method
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"Torchdiffeq({self.method!r})"

    def odeint(self, f, y0: Tensor, t: Tensor, *, rtol: float, atol: float, dt: float | None,
               adjoint=None) -> tuple[Tensor, dict]:
        import torchdiffeq

        from .ode.adjoint import BacksolveAdjoint

        check_state(y0)
        check_times(t, "t", min_len=1)
        if t.ndim != 1:
            raise ValueError(f"the torchdiffeq backend needs t of shape (time,), got {tuple(t.shape)}")
        options = dict(self.options)
        if dt is not None:
            options.setdefault("step_size", dt)
        counted = _Counted(f)
        if isinstance(adjoint, BacksolveAdjoint):
            params = adjoint.adjoint_params
            if params is None:
                params = tuple(f.parameters()) if isinstance(f, nn.Module) else ()
            extra = {"adjoint_options": {"norm": "seminorm"}} if adjoint.seminorm else {}
            ys = torchdiffeq.odeint_adjoint(counted, y0, t, rtol=rtol, atol=atol, method=self.method,
                                            options=options, adjoint_params=tuple(params), **extra)
        else:
            ys = torchdiffeq.odeint(counted, y0, t, rtol=rtol, atol=atol, method=self.method,
                                    options=options)
        return ys, {"nfe": counted.nfe}
