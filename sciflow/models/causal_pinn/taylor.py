"""Taylor-mode (forward, higher-order) propagation of directional derivatives through a network.

A :class:`Jet` carries, for every point of a batch, the value of a hidden feature and its pure
directional derivatives ``d^k h / d e_a^k`` along a few input axes ``a`` up to an order ``K_a``
(Griewank & Walther 2008, ch. 13; Bettencourt, Johnson & Duvenaud 2019, "Taylor-mode automatic
differentiation for higher-order derivatives in JAX" — what the official causal-PINN code uses for
the Kuramoto–Sivashinsky ``u_xxxx``). Linear layers act on all Taylor coefficients with one matrix
product; an elementwise ``f`` is composed with the truncated Faa di Bruno formula

    a_1 = f' z_1
    a_2 = f' z_2 + f'' z_1^2
    a_3 = f' z_3 + 3 f'' z_1 z_2 + f''' z_1^3
    a_4 = f' z_4 + f'' (4 z_1 z_3 + 3 z_2^2) + 6 f''' z_1^2 z_2 + f'''' z_1^4

and products with the Leibniz rule. The result is *exact* (no truncation of the derivatives
requested), costs one forward pass on ``1 + sum_a K_a`` stacked copies of the batch, and the
parameter gradient of the PINN loss then needs ordinary first-order backprop only — no
double-backward graph. Mixed derivatives (``u_xt``) are not represented: every PINN in this
package is written with pure derivatives only (see ``problems.py``).

Layout: block 0 is the value; block ``k = 1..K_max`` holds the ``k``-th derivatives of the
directions whose order is ``>= k``. Directions are sorted by decreasing order, so block ``k`` is
a prefix of the directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

MAX_ORDER = 4


@dataclass(frozen=True)
class Directions:
    """Input axes and the highest derivative order wanted along each, sorted by order (desc)."""

    axes: tuple[int, ...]
    orders: tuple[int, ...]

    @staticmethod
    def from_spec(spec: Sequence[tuple[int, int]]) -> "Directions":
        merged: dict[int, int] = {}
        for axis, order in spec:
            if not 1 <= order <= MAX_ORDER:
                raise ValueError(f"Taylor mode supports derivative orders 1..{MAX_ORDER}, got {order}")
            merged[axis] = max(order, merged.get(axis, 0))
        items = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
        return Directions(tuple(a for a, _ in items), tuple(o for _, o in items))

    @property
    def max_order(self) -> int:
        return self.orders[0] if self.orders else 0

    def count(self, k: int) -> int:
        """Number of directions with order >= k (the size of block k)."""
        return sum(o >= k for o in self.orders)



def _head(t: Tensor, n: int) -> Tensor:
    """First ``n`` directions of a block, without a slice node when nothing is cut."""
    return t if t.shape[0] == n else t[:n]


class Jet:
    """Value + pure directional derivatives, kept as separate blocks (see the module docstring).

    ``blocks[0]`` is the value ``(*batch, F)``; ``blocks[k]`` (``k >= 1``) is ``(n_k, *batch, F)``,
    the ``k``-th derivatives of the first ``n_k`` directions. Separate tensors (not one stacked
    tensor) keep the backward pass free of slice/cat bookkeeping, which dominated the profile.
    """

    __slots__ = ("blocks", "dirs")

    def __init__(self, blocks: list[Tensor], dirs: Directions) -> None:
        self.blocks, self.dirs = blocks, dirs

    # -- construction / access -------------------------------------------------------------
    @staticmethod
    def seed(x: Tensor, dirs: Directions) -> "Jet":
        """The identity jet of the input coordinates ``x`` ``(N, D)``."""
        blocks = [x]
        for k in range(1, dirs.max_order + 1):
            b = x.new_zeros((dirs.count(k), *x.shape))
            if k == 1:
                for d, axis in enumerate(dirs.axes):
                    b[d, ..., axis] = 1.0
            blocks.append(b)
        return Jet(blocks, dirs)

    @property
    def value(self) -> Tensor:
        return self.blocks[0]

    def derivative(self, axis: int, k: int) -> Tensor:
        d = self.dirs.axes.index(axis)
        if k > self.dirs.orders[d]:
            raise KeyError(f"derivative of order {k} along axis {axis} was not requested")
        return self.blocks[k][d]

    def _map(self, fn: Callable[[Tensor], Tensor], fn0: Callable[[Tensor], Tensor] | None = None) -> "Jet":
        return Jet([(fn0 or fn)(self.blocks[0])] + [fn(b) for b in self.blocks[1:]], self.dirs)

    # -- linear operations -----------------------------------------------------------------
    def linear(self, weight: Tensor, bias: Tensor | None) -> "Jet":
        wt = weight.T
        v = torch.nn.functional.linear(self.blocks[0], weight, bias)
        return Jet([v] + [b @ wt for b in self.blocks[1:]], self.dirs)

    def __add__(self, other: "Jet | Tensor | float") -> "Jet":
        if isinstance(other, Jet):
            return Jet([a + b for a, b in zip(self.blocks, other.blocks)], self.dirs)
        return Jet([self.blocks[0] + other] + self.blocks[1:], self.dirs)

    __radd__ = __add__

    def __neg__(self) -> "Jet":
        return self._map(torch.neg)

    def __sub__(self, other: "Jet | Tensor | float") -> "Jet":
        if isinstance(other, Jet):
            return Jet([a - b for a, b in zip(self.blocks, other.blocks)], self.dirs)
        return self + (-other)

    def __rsub__(self, other: Tensor | float) -> "Jet":
        return (-self) + other

    def scale(self, c: Tensor | float) -> "Jet":
        return self._map(lambda b: b * c)

    def select(self, index: Sequence[int] | slice) -> "Jet":
        """Select features (last axis)."""
        return self._map(lambda b: b[..., index])

    @staticmethod
    def cat(jets: Sequence["Jet"]) -> "Jet":
        n = len(jets[0].blocks)
        return Jet([torch.cat([j.blocks[k] for j in jets], dim=-1) for k in range(n)], jets[0].dirs)

    def constant_like(self, value: Tensor) -> "Jet":
        """A jet whose value is ``value`` and whose derivatives are zero."""
        return Jet([value] + [value.new_zeros((b.shape[0], *value.shape)) for b in self.blocks[1:]],
                   self.dirs)

    # -- nonlinear operations --------------------------------------------------------------
    def compose(self, fderivs: Sequence[Tensor]) -> "Jet":
        """``f(self)`` given ``[f(z0), f'(z0), ..., f^(K)(z0)]`` (each shaped like ``z0``)."""
        z = self.blocks
        K = self.dirs.max_order
        out = [fderivs[0]]
        f1 = fderivs[1] if K >= 1 else None
        if K >= 1:
            out.append(f1 * z[1])
        if K >= 2:
            z1 = _head(z[1], z[2].shape[0])
            out.append(f1 * z[2] + fderivs[2] * (z1 * z1))
        if K >= 3:
            n = z[3].shape[0]
            z1, z2 = _head(z[1], n), _head(z[2], n)
            out.append(f1 * z[3] + 3 * fderivs[2] * (z1 * z2) + fderivs[3] * z1 ** 3)
        if K >= 4:
            n = z[4].shape[0]
            z1, z2, z3 = _head(z[1], n), _head(z[2], n), _head(z[3], n)
            out.append(f1 * z[4] + fderivs[2] * (4 * z1 * z3 + 3 * z2 * z2)
                       + 6 * fderivs[3] * (z1 * z1 * z2) + fderivs[4] * z1 ** 4)
        return Jet(out, self.dirs)

    def __mul__(self, other: "Jet | Tensor | float") -> "Jet":
        if not isinstance(other, Jet):
            return self.scale(other)
        a, b = self.blocks, other.blocks
        out = [a[0] * b[0]]
        for k in range(1, self.dirs.max_order + 1):
            n = a[k].shape[0]
            acc = a[k] * b[0] + a[0] * b[k]
            for j in range(1, k):
                acc = acc + math.comb(k, j) * (_head(a[j], n) * _head(b[k - j], n))
            out.append(acc)
        return Jet(out, self.dirs)

    __rmul__ = __mul__

    def tanh(self) -> "Jet":
        t = torch.tanh(self.blocks[0])
        K = self.dirs.max_order
        d = [t]
        if K >= 1:
            d.append(1 - t * t)
        if K >= 2:
            d.append(-2 * t * d[1])
        if K >= 3:
            d.append(-2 * (d[1] * d[1] + t * d[2]))
        if K >= 4:
            d.append(-2 * (3 * d[1] * d[2] + t * d[3]))
        return self.compose(d)

    def sin(self) -> "Jet":
        s, c = torch.sin(self.blocks[0]), torch.cos(self.blocks[0])
        return self.compose([s, c, -s, -c, s][: self.dirs.max_order + 1])

    def cos(self) -> "Jet":
        s, c = torch.sin(self.blocks[0]), torch.cos(self.blocks[0])
        return self.compose([c, -s, -c, s, c][: self.dirs.max_order + 1])

    def sin_cos(self) -> tuple["Jet", "Jet"]:
        """``(sin(self), cos(self))`` sharing one evaluation of sin/cos of the value."""
        s, c = torch.sin(self.blocks[0]), torch.cos(self.blocks[0])
        K = self.dirs.max_order + 1
        return self.compose([s, c, -s, -c, s][:K]), self.compose([c, -s, -c, s, c][:K])


# -- module rules ---------------------------------------------------------------------------
JetRule = Callable[[nn.Module, Jet], Jet]
_RULES: dict[type, JetRule] = {}


def register_jet_rule(cls: type) -> Callable[[JetRule], JetRule]:
    """Declare how a module type maps a :class:`Jet` (extension point for new layers)."""

    def deco(fn: JetRule) -> JetRule:
        _RULES[cls] = fn
        return fn

    return deco


def jet_forward(module: nn.Module, jet: Jet) -> Jet:
    """Push ``jet`` through ``module`` using the rule registered for its exact type."""
    rule = _RULES.get(type(module))
    if rule is None:
        raise TypeError(
            f"no Taylor-mode rule for {type(module).__name__}; register one with "
            f"sciflow.models.causal_pinn.taylor.register_jet_rule or use the NestedAutograd engine"
        )
    return rule(module, jet)


@register_jet_rule(nn.Linear)
def _linear(m: nn.Linear, jet: Jet) -> Jet:
    return jet.linear(m.weight, m.bias)


@register_jet_rule(nn.Tanh)
def _tanh(m: nn.Module, jet: Jet) -> Jet:
    return jet.tanh()


@register_jet_rule(nn.Identity)
def _identity(m: nn.Module, jet: Jet) -> Jet:
    return jet


@register_jet_rule(nn.Dropout)
def _dropout(m: nn.Dropout, jet: Jet) -> Jet:
    if m.training and m.p > 0:
        raise ValueError("Taylor mode needs one dropout mask for all Taylor coefficients; "
                         "put the network in eval() mode or use p = 0")
    return jet


@register_jet_rule(nn.Sequential)
def _sequential(m: nn.Sequential, jet: Jet) -> Jet:
    for layer in m:
        jet = jet_forward(layer, jet)
    return jet


def _register_sciflow_layers() -> None:
    from sciflow.nn.factorized import FactorizedLinear
    from sciflow.nn.fourier import FourierFeatures, PeriodicEmbedding
    from sciflow.nn.mlp import MLP
    from sciflow.nn.modified_mlp import ModifiedMLP

    @register_jet_rule(MLP)
    def _mlp(m: MLP, jet: Jet) -> Jet:
        return jet_forward(m.net, jet)

    @register_jet_rule(FactorizedLinear)
    def _factorized(m: FactorizedLinear, jet: Jet) -> Jet:
        return jet.linear(m.weight, m.bias)

    @register_jet_rule(ModifiedMLP)
    def _modified(m: ModifiedMLP, jet: Jet) -> Jet:
        u = jet_forward(m.act, jet_forward(m.encoder_u, jet))
        v = jet_forward(m.act, jet_forward(m.encoder_v, jet))
        du = u - v
        h = jet
        for layer in m.hidden:
            z = jet_forward(m.act, jet_forward(layer, h))
            h = v + z * du  # = z*u + (1-z)*v with one jet product
        return jet_forward(m.output, h)

    @register_jet_rule(FourierFeatures)
    def _fourier(m: FourierFeatures, jet: Jet) -> Jet:
        s, c = jet.linear(m.B, None).sin_cos()
        return Jet.cat([c, s])

    @register_jet_rule(PeriodicEmbedding)
    def _periodic(m: PeriodicEmbedding, jet: Jet) -> Jet:
        v = jet.value
        s, c = jet.linear(m.frequencies(v.dtype, v.device), None).sin_cos()
        ones = jet.constant_like(torch.ones_like(jet.value[..., :1]))
        return Jet.cat([jet.select(m.passthrough), ones, c, s])


_register_sciflow_layers()
