"""Validation shared by the solvers: time grids, state/vector-field shapes, non-finite states.

Every check raises ``ValueError`` (bad input) or ``FloatingPointError`` (a non-finite state
during integration) with a message naming the argument, the offending index/time and the shapes.
Checks run once at the boundary of a solve (or once at its end), never inside the step loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_times", "check_state", "check_vector_field_output", "check_finite_trajectory",
           "check_term_kind", "all_finite"]


def all_finite(x: Tensor) -> bool:
    """``bool(isfinite(x).all())`` (one host sync); ``True`` under ``torch.func.vmap``, where a
    data-dependent check cannot run (HMC vectorises chains that way) — the check is then skipped,
    not failed."""
    try:
        return bool(torch.isfinite(x).all())
    except RuntimeError as err:
        if "vmap" in str(err):
            return True
        raise


def check_times(t: Tensor, name: str = "t", *, min_len: int = 2) -> int:
    """Check a time grid ``(*batch, time)``: floating, finite, strictly monotone along ``time``.

    Returns the direction ``+1`` (increasing) or ``-1`` (decreasing); every row of a per-sample
    grid must run in the same direction. Duplicated or unsorted times raise with their index.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim == 0:
        raise ValueError(f"{name} must have shape (time,) or (*batch, time), got a 0-d tensor")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if t.shape[-1] < min_len:
        raise ValueError(f"{name} needs at least {min_len} time points, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = torch.nonzero(~torch.isfinite(t))[0].tolist()
        raise ValueError(f"{name} contains a non-finite time at index {tuple(bad)}")
    if t.shape[-1] < 2:
        return 1
    d = t[..., 1:] - t[..., :-1]
    if bool((d == 0).any()):
        bad = torch.nonzero(d == 0)[0].tolist()
        raise ValueError(f"{name} has duplicated times: {name}[{tuple(bad[:-1] + [bad[-1]])}] == "
                         f"{name}[{tuple(bad[:-1] + [bad[-1] + 1])}] = {t[tuple(bad)].item()!r}")
    if bool((d > 0).all()):
        return 1
    if bool((d < 0).all()):
        return -1
    sign = torch.sign(d[..., :1])
    changes = torch.nonzero(torch.sign(d) != sign)
    if changes.shape[0] == 0:       # every row monotone, but not all the same way
        first = sign.reshape(-1)[0]
        row = torch.nonzero(sign.reshape(-1) != first)[0].item()
        raise ValueError(f"{name}: every trajectory's times must run in the same direction (t1 - t0 of one "
                         f"sign); trajectory {row} (row-major) runs the other way from trajectory 0")
    bad = changes[0].tolist()
    raise ValueError(f"{name} must be strictly increasing or strictly decreasing along its last axis; "
                     f"order changes at index {tuple(bad[:-1] + [bad[-1] + 1])}")


def check_state(y0: Tensor, name: str = "y0") -> None:
    if not isinstance(y0, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y0).__name__}")
    if not (y0.is_floating_point() or y0.is_complex()):
        raise ValueError(f"{name} must be a floating tensor, got dtype {y0.dtype}")
    if y0.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(y0.shape)}); pass at least one state")
    if not bool(torch.isfinite(y0).all()):
        raise ValueError(f"{name} contains non-finite values")


def check_vector_field_output(out: object, y: Tensor, what: str = "vector field", *,
                              t: Tensor | None = None) -> None:
    """The vector field must return a tensor of the state's shape (checked on the first call).

    With ``t`` (the time of that first call) the output must also be finite: one host sync, once
    per solve. A field that is NaN/inf at the initial state makes the adaptive solvers' first
    step size NaN, which no step-size control recovers from.
    """
    if not isinstance(out, Tensor):
        raise TypeError(f"the {what} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != y.shape:
        raise ValueError(f"shape mismatch: the {what} returned shape {tuple(out.shape)} for a state of "
                         f"shape {tuple(y.shape)}; f(t, y) must return dy/dt with y's shape")
    if t is not None and not all_finite(out):
        lo, hi = t.min().item(), t.max().item()
        when = (f"t = {lo:.6g}" if t.numel() == 1 else f"t = {lo:.6g} (every sample's initial time)" if lo == hi
                else f"t in [{lo:.6g}, {hi:.6g}] (per-sample initial times)")
        raise FloatingPointError(f"the {what} returned non-finite values (nan/inf) at the initial state, {when}; "
                                 f"check f and its parameters")


def check_finite_trajectory(ys: Tensor, ts: Tensor) -> None:
    """Raise naming the first save time at which ``ys (time, *batch, *state)`` is non-finite.

    ``ts`` is ``(time,)`` or ``(*batch, time)``. One host sync, called once after a solve; skipped
    under ``torch.func.vmap`` (see :func:`all_finite`).
    """
    if all_finite(ys):
        return
    finite = torch.isfinite(ys.reshape(ys.shape[0], -1)).all(dim=1)
    i = int(torch.nonzero(~finite)[0])
    t_bad = ts[..., i]
    when = f"t = {t_bad.item():.6g}" if t_bad.numel() == 1 else (
        f"t in [{t_bad.min().item():.6g}, {t_bad.max().item():.6g}] (per-sample grid)")
    raise FloatingPointError(f"the solution became non-finite (nan/inf) at save index {i}, {when}; "
                             f"the problem may be stiff or the step too large")


def check_term_kind(term: object, solver: object) -> None:
    """Capabilities are declared: ``term.kind`` must be one of ``solver.term_kinds``."""
    kind = getattr(type(term), "kind", None)
    allowed = getattr(type(solver), "term_kinds", ())
    if kind not in allowed:
        raise TypeError(f"{type(solver).__name__} solves {' or '.join(map(str, allowed)) or 'nothing'} "
                        f"terms but was handed a {type(term).__name__} (kind {kind!r}); use a solver "
                        f"for {kind!r} terms")
