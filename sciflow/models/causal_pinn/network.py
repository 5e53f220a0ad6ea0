"""The coordinate network ``u_theta(t, x)`` of a PINN: embedding -> trunk -> optional hard IC.

Architecture choices follow Wang, Sankaran & Perdikaris (2022), section 4: exact periodic
embeddings of periodic spatial axes (eq. 4.1), optional random Fourier features, an MLP or the
modified MLP trunk, optional random weight factorisation; tanh, Glorot init. For ODE PINNs (Lorenz)
the official code enforces the initial state exactly, ``u(t) = u_0 + t * N(t)``; ``hard_ic`` does
the same here.
"""

from __future__ import annotations



import torch
from torch import Tensor, nn

from sciflow.models.causal_pinn.taylor import Jet, jet_forward, register_jet_rule
from sciflow.nn.fourier import FourierFeatures, PeriodicEmbedding
from sciflow.nn.mlp import MLP
from sciflow.nn.modified_mlp import ModifiedMLP


class PINNNetwork(nn.Module):
    """``(N, dim) -> (N, channels)`` with inputs ordered ``(t, x[, y])``.

    Args:
        dim: number of input coordinates (1 for an ODE, 2 for ``(t, x)``, 3 for ``(t, x, y)``).
        channels: number of outputs.
        periodic: ``{axis: period}`` of inputs embedded exactly periodically.
        n_harmonics: ``K`` in ``(1, cos(k w x), sin(k w x))_{k<=K}``.
        fourier_features: number of random Fourier features (0: none), with ``fourier_scale``.
        architecture: ``MLP`` or ``ModifiedMLP`` class (objects inside, not strings).
        hard_ic: optional ``(channels,)`` initial state enforced as ``u0 + t * N(t, x)``.
        time_scale: the time coordinate enters the embedding as ``time_scale * t`` (e.g. the
            inverse window length, so that every window sees ``t in [0, 1]``).
        output_scale: the trunk output is multiplied by it (``u = u0 + t * s * N`` with a hard IC;
            for ODE states of size ~10-50, such as Lorenz-63, a unit-scale tanh network would
            otherwise need thousands of Adam steps just to grow its last layer).
    """

    def __init__(self, dim: int, channels: int, *, width: int = 128, depth: int = 4,
                 architecture: type = MLP, periodic: dict[int, float] | None = None,
                 n_harmonics: int = 1, fourier_features: int = 0, fourier_scale: float = 1.0,
                 fourier_trainable: bool = False, factorized: bool = False,
                 hard_ic: Tensor | None = None, time_scale: float = 1.0, output_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not (time_scale > 0 and output_scale > 0):
            raise ValueError(f"time_scale and output_scale must be > 0, got {time_scale}, {output_scale}")
        self.time_scale, self.output_scale = float(time_scale), float(output_scale)
        self.dim, self.channels = dim, channels
        embed: list[nn.Module] = []
        d = dim
        if periodic:
            pe = PeriodicEmbedding(dim, list(periodic), list(periodic.values()), n_harmonics)
            embed.append(pe)
            d = pe.out_features
        if fourier_features > 0:
            ff = FourierFeatures(d, fourier_features, fourier_scale, trainable=fourier_trainable,
                                 generator=generator)
            embed.append(ff)
            d = ff.out_features
        self.embedding = nn.Sequential(*embed)
        if architecture is ModifiedMLP:
            self.trunk: nn.Module = ModifiedMLP(d, channels, width, depth, factorized=factorized,
                                                generator=generator)
        elif architecture is MLP:
            if factorized:
                raise ValueError("factorized=True needs architecture=ModifiedMLP (sciflow.nn.MLP "
                                 "builds plain nn.Linear layers)")
            if generator is not None:
                # draw the Glorot init from the generator so seeds reproduce networks
                self.trunk = MLP(d, channels, width, depth, "tanh")
                with torch.no_grad():
                    for m in self.trunk.modules():
                        if isinstance(m, nn.Linear):
                            fan = (m.in_features + m.out_features) / 2
                            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / fan ** 0.5)
            else:
                self.trunk = MLP(d, channels, width, depth, "tanh")
        else:
            raise ValueError(f"architecture must be sciflow.nn.MLP or ModifiedMLP, got {architecture}")
        if hard_ic is not None:
            hard_ic = torch.as_tensor(hard_ic, dtype=torch.get_default_dtype()).reshape(channels)
        self.register_buffer("hard_ic", hard_ic)

    def _scale_input(self, x):
        """``(t, x) -> (time_scale t, x)`` for a Tensor or a Jet (no-op when the scale is 1)."""
        if self.time_scale == 1.0:
            return x
        c = torch.ones(self.dim, dtype=x.value.dtype if isinstance(x, Jet) else x.dtype,
                       device=x.value.device if isinstance(x, Jet) else x.device)
        c[0] = self.time_scale
        return x.scale(c) if isinstance(x, Jet) else x * c

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"PINNNetwork expects {self.dim} input coordinates, got shape {tuple(x.shape)}")
        out = self.trunk(self.embedding(self._scale_input(x)))
        if self.output_scale != 1.0:
            out = out * self.output_scale
        if self.hard_ic is not None:
            out = self.hard_ic + x[..., :1] * out
        return out


@register_jet_rule(PINNNetwork)
def _pinn_network(m: PINNNetwork, jet: Jet) -> Jet:
    out = jet_forward(m.trunk, jet_forward(m.embedding, m._scale_input(jet)))
    if m.output_scale != 1.0:
        out = out.scale(m.output_scale)
    if m.hard_ic is not None:
        out = (jet.select([0]) * out) + m.hard_ic
    return out


def make_network(cfg, problem, *, generator: torch.Generator | None = None,
                 hard_ic: Tensor | None = None) -> PINNNetwork:
    """Build the network a :class:`~sciflow.models.causal_pinn.config.Config` describes."""
    periodic = None
    if cfg.periodic_embedding:
        periodic = {1 + i: hi - lo for i, ((lo, hi), p) in
                    enumerate(zip(problem.space_bounds, problem.periodic)) if p}
    arch = ModifiedMLP if cfg.architecture == "modified_mlp" else MLP
    return PINNNetwork(problem.dim, problem.channels, width=cfg.width, depth=cfg.depth,
                       architecture=arch, periodic=periodic or None, n_harmonics=cfg.n_harmonics,
                       fourier_features=cfg.fourier_features, fourier_scale=cfg.fourier_scale,
                       fourier_trainable=cfg.fourier_trainable, factorized=cfg.factorized,
                       hard_ic=hard_ic, generator=generator, output_scale=cfg.output_scale,
                       time_scale=1.0 / (problem.t_span[1] - problem.t_span[0])
                       if cfg.normalize_time else 1.0)


