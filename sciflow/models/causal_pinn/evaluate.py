"""Evaluation against reference solutions (relative L2 over the reference grid) and seed
ensembles for UQ.

References: ``burgers`` / ``allen_cahn`` from the bundled fixtures
(:func:`sciflow.data.reference.load_reference`); Kuramoto–Sivashinsky from the data layer's
ETDRK4 solver; Navier–Stokes (Taylor–Green) in closed form; Lorenz-63 from
:func:`sciflow.solvers.ode.odeint` (Dopri5, rtol 1e-10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sciflow.models.causal_pinn.problems import Problem, navier_stokes_exact


@dataclass(frozen=True)
class GridReference:
    """``values[i_t, i_x(, i_y), c]`` on the tensor grid ``t`` x ``space[0]`` (x ``space[1]``)."""

    t: Tensor
    space: tuple[Tensor, ...]
    values: Tensor

    def points(self) -> Tensor:
        """All grid points ``(T * X * ..., dim)`` in C order of ``values``."""
        grids = torch.meshgrid(self.t, *self.space, indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=1)


def relative_l2(pred: Tensor | np.ndarray, ref: Tensor | np.ndarray) -> float:
    """``||pred - ref||_2 / ||ref||_2`` over all entries (shapes must match)."""
    pred, ref = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"relative_l2: prediction shape {tuple(pred.shape)} != reference {tuple(ref.shape)}")
    return float(torch.linalg.vector_norm(pred - ref) / torch.linalg.vector_norm(ref))


def reference(problem: Problem, *, nx: int = 256, nt: int = 101) -> GridReference:
    """The reference solution of a named benchmark problem on its grid."""
    name = problem.name
    if name in ("burgers", "allen_cahn"):
        from sciflow.data.reference import load_reference

        r = load_reference("burgers_shock" if name == "burgers" else "allen_cahn")
        t, x = torch.as_tensor(r.t), torch.as_tensor(r.x)
        return GridReference(t, (x,), torch.as_tensor(r.u).T[..., None].contiguous())
    if name.startswith("kuramoto_sivashinsky"):
        from sciflow.data.pdes.kuramoto_sivashinsky import solve

        (lo, hi), = problem.space_bounds
        x = lo + torch.arange(nx, dtype=torch.float64) * ((hi - lo) / nx)
        t = torch.linspace(*problem.t_span, nt, dtype=torch.float64)
        u0 = problem.initial_condition(x[:, None])[:, 0][None]
        p = {k: problem.parameters[k] for k in ("alpha", "beta", "gamma")}
        u = solve(u0, t=t - t[0], length=hi - lo, **p)[0]  # (time, x)
        return GridReference(t, (x,), u[..., None])
    if name == "navier_stokes" and "modes" in problem.parameters:
        return navier_stokes_reference(problem, n=64, nt=11)
    if name == "navier_stokes":
        n = 64
        x = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        t = torch.linspace(*problem.t_span, 11, dtype=torch.float64)
        T, X, Y = torch.meshgrid(t, x, x, indexing="ij")
        return GridReference(t, (x, x), navier_stokes_exact(T, X, Y, problem.parameters["nu"]))
    if name == "lorenz63":
        raise ValueError("use lorenz_reference(problem, t_final) for the Lorenz system")
    raise ValueError(f"no reference known for problem {name!r}")


def navier_stokes_reference(problem: Problem, n: int = 64, nt: int = 11, dt: float = 1e-3) -> GridReference:
    """``(u, v, w)`` on an ``n x n`` grid of the ``2 pi`` torus at ``nt`` times: vorticity from the
    data layer's pseudo-spectral CNAB2 solver (:func:`sciflow.data.pdes.navier_stokes.solve`,
    float64) started from the problem's exact initial vorticity; velocity from the stream
    function (``u = psi_y``, ``v = -psi_x``, ``-Lap psi = w``) spectrally."""
    from sciflow.data.pdes.navier_stokes import solve

    L = 2 * math.pi
    x = torch.arange(n, dtype=torch.float64) * (L / n)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w0 = problem.initial_condition(torch.stack([X.reshape(-1), Y.reshape(-1)], 1))[:, 2].reshape(1, n, n)
    t = torch.linspace(*problem.t_span, nt, dtype=torch.float64)
    w = solve(w0, t=t - t[0], nu=problem.parameters["nu"], dt=dt, length=L)[0]  # (time, n, n)
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None]
    ky = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)[None, :]
    k2 = kx ** 2 + ky ** 2
    k2[0, 0] = 1.0
    psi = torch.fft.rfft2(w) / k2
    psi[..., 0, 0] = 0
    u = torch.fft.irfft2(1j * ky * psi, s=(n, n))
    v = torch.fft.irfft2(-1j * kx * psi, s=(n, n))
    return GridReference(t, (x, x), torch.stack([u, v, w], dim=-1))


def lorenz_reference(problem: Problem, t: Tensor, rtol: float = 1e-10, atol: float = 1e-10) -> Tensor:
    """Lorenz-63 trajectory ``(time, 3)`` from ``problem.hard_ic`` at times ``t`` (from 0)."""
    from sciflow.data.pdes.lorenz import lorenz63_rhs
    from sciflow.solvers.ode import odeint

    p = problem.parameters
    y0 = torch.tensor(problem.hard_ic, dtype=torch.float64)
    return odeint(lambda _t, y: lorenz63_rhs(y, p["sigma"], p["rho"], p["beta"]), y0,
                  t.to(torch.float64), rtol=rtol, atol=atol)


def evaluate(predict: Callable[[Tensor], Tensor], ref: GridReference,
             dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Relative L2 error of ``predict(points) (N, C)`` over the reference grid, overall and per
    channel, plus the max abs error."""
    pred = predict_grid(predict, ref, dtype)
    out = {"rel_l2": relative_l2(pred, ref.values),
           "max_abs": float((pred - ref.values).abs().max())}
    if ref.values.shape[-1] > 1:
        for c in range(ref.values.shape[-1]):
            out[f"rel_l2_{c}"] = relative_l2(pred[..., c], ref.values[..., c])
    return out


def predict_grid(predict: Callable[[Tensor], Tensor], ref: GridReference,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """The prediction on the reference grid (points cast to ``dtype``), shaped like
    ``ref.values``, in float64."""
    pts = ref.points()
    with torch.no_grad():
        pred = torch.cat([predict(pts[i:i + 65536].to(dtype)).double() for i in range(0, pts.shape[0], 65536)])
    return pred.reshape(ref.values.shape)


def seed_ensemble(predictors: Sequence[Callable[[Tensor], Tensor]], points: Tensor):
    """Stack the predictions of models trained with different seeds into a UQ
    :class:`sciflow.uq.prediction.Prediction` (mean, 2.5/97.5 % bounds, samples)."""
    from sciflow.uq.prediction import Prediction

    if len(predictors) < 2:
        raise ValueError("a seed ensemble needs at least 2 members")
    with torch.no_grad():
        s = torch.stack([p(points) for p in predictors])  # (n_samples, N, C)
    q = torch.quantile(s.double(), torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0).to(s.dtype)
    return Prediction(mean=s.mean(0), lower=q[0], upper=q[1], samples=s, alpha=0.05)
