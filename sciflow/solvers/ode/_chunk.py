"""Compiled chunks of masked attempts, the ``compile=True`` path of :mod:`._integrate`.

``n`` attempts of the masked adaptive loop run as one ``torch.compile`` graph
(:func:`make_chunk`), compiled once per field, solver, controller and shape
(:func:`compiled_attempt`); with one shared clock the dense output is evaluated outside the
graph, for the attempts that save only (:func:`dense_writes`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .solver import ODESolver

__all__ = ["CHUNK", "compiled_attempt", "dense_writes", "make_chunk"]


def dense_writes(solver: ODESolver, coef: Tensor, where_to: Tensor, parts: list[Tensor],
                  n: int, Kw: int, T: int) -> tuple[Tensor, Tensor]:
    """The dense-output writes of a chunk run with ``defer_dense``: the interpolant evaluated
    (eagerly) for the attempts among its ``n`` that write a save time (one host sync).

    ``where_to: (B, n Kw)``; ``parts``: per attempt ``theta (B, Kw), h (B,), y, y1, f1 (B, S), k_1 … k_s``.
    Returns ``(where_to (B, m Kw), vals (B, m Kw, S))`` for those ``m`` attempts.
    """
    B = where_to.shape[0]
    hit = (where_to.view(B, n, Kw) < T).any(2).any(0).tolist()
    per = len(parts) // n
    idx, vals = [], []
    for j in range(n):
        if hit[j]:
            theta, h, y, y1, f1, *ks = parts[j * per:(j + 1) * per]
            vals.append(solver.interpolate(theta, h, y, y1, ks, f1, coef=coef))
            idx.append(where_to[:, j * Kw:(j + 1) * Kw])
    return torch.cat(idx, 1), torch.cat(vals, 1)



def make_chunk(attempt: Callable, n: int, T: int):
    """``n`` masked attempts in a row as one pure tensor function (compiled as one graph).

    Per-call costs of a compiled region (guard evaluation, wrapper, output allocation, the host
    sync on the flags) are paid once per ``n`` attempts instead of once per attempt. Semantics
    equal ``n`` single attempts with the host check after each: once the flags say "all done" or
    "step underflow", or ``budget`` attempts (the ``max_steps`` left) have been made, the
    remaining attempts of the chunk run with every trajectory masked as done — a masked attempt
    changes nothing (no accepted step, same ``h``, no dense-output write) — and are not counted.
    Returns the state, accepted steps ``(B,)``, the dense-output writes of all ``n`` attempts
    ``(B, n Kw)``/``(B, n Kw, S)`` (index ``T``: no write) and ``[all done, any underflow,
    attempts made, number of real writes, any non-finite error estimate]`` (the caller skips the
    write when there is none; see :func:`._integrate._regraph` for the last).
    """

    def chunk(t, y, h, k1, r_prev, idx, done, ts, t_end, budget):
        n_acc = torch.zeros_like(idx)
        made = torch.zeros_like(budget)
        stop = torch.zeros((), dtype=torch.bool, device=t.device)
        where_tos, valss = [], []
        flags = None
        blowup = torch.zeros_like(stop)
        for j in range(n):
            live = ~stop & (budget > j)
            t, y, h, k1, r_prev, idx, done, accept, where_to, vals, flags = attempt(
                t, y, h, k1, r_prev, idx, done | ~live, ts, t_end)
            n_acc = n_acc + accept
            made = made + live
            stop = stop | flags[0] | flags[1]
            if len(flags) > 2:
                blowup = blowup | flags[2]
            where_tos.append(where_to)
            valss.append(vals)
        where_to = torch.cat(where_tos, 1)
        info = torch.stack([flags[0].long(), flags[1].long(), made, (where_to < T).sum(), blowup.long()])
        vals = [v for vs in valss for v in vs] if isinstance(valss[0], tuple) else torch.cat(valss, 1)
        return t, y, h, k1, r_prev, idx, done, n_acc, where_to, vals, info

    return chunk


_COMPILED: dict = {}


# attempts per compiled call (compile=True). Measured on 512 batched Lorenz trajectories, Tsit5,
# 1 CPU thread: 4 attempts per call take 0.57x (one error norm) / 0.72x (per trajectory) the time
# of 1; 8 gain little more (0.68x) while compile time grows about linearly with the chunk.
CHUNK = 4


def compiled_attempt(key, build, device: torch.device):
    """``torch.compile`` of the attempt function, cached per (field, solver, controller, shapes).

    On CPU with Inductor's C++ wrapper (``cpp_wrapper``): the graph is one fused C++ kernel plus
    some 200 buffer allocations, which the default Python wrapper makes one by one; in C++ they
    cost far less (measured on 512 batched Lorenz trajectories, Tsit5, chunk of 4 attempts,
    1 thread: 125 vs 194 µs per attempt; per trajectory 0.27 vs 0.32 s per solve; compile CPU
    time within noise).
    """
    fn = _COMPILED.get(key)
    if fn is None:
        if len(_COMPILED) > 32:
            _COMPILED.clear()
        options = {"cpp_wrapper": True} if device.type == "cpu" else None
        fn = _COMPILED[key] = _compile(build(), dynamic=False, options=options)
    return fn


# the compiler of the ``compile=True`` path; tests replace it by the identity to run the very same
# chunk functions eagerly (seconds instead of minutes of compilation)
_compile = torch.compile
