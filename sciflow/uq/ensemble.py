r"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017).

:math:`M` independently initialised members trained on the same data; the predictive is the
uniform mixture. For Gaussian members (:class:`~sciflow.uq.heads.GaussianPredictive`) the
mixture moments are exact (paper, §2.4):
:math:`\mu_* = \frac1M\sum_m\mu_m`, :math:`\sigma^2_* = \frac1M\sum_m(\sigma^2_m+\mu_m^2)-\mu_*^2`;
otherwise they are estimated from ``n_samples_per_member`` draws of every member.
The paper's adversarial-training term is not used (it matters little for regression, §3.2).

Training is vectorised over members where the model allows: the members' parameters are stacked
(``torch.func.stack_module_state``) and ``model.loss`` is mapped over them with
``torch.func.vmap`` + ``functional_call``, so one step costs one batched forward/backward and
Adam on the stacked leaves equals per-member Adam (it is elementwise). ``observation_noise``
adds a homoscedastic noise variance to every member (point members: the mixture is then a
Gaussian mixture with known moments, reported with its moment-matched Gaussian interval). Models whose ``loss`` is
not vmap-compatible (data-dependent Python control flow, ``.item()``, in-place buffer updates)
fall back to a sequential loop, with a warning naming the error.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from sciflow.models.base import SciflowModel
from sciflow.uq._weights import ModelCall
from sciflow.uq.base import Predictor, check_alpha
from sciflow.uq.heads import GaussianPredictive
from sciflow.uq.prediction import Prediction


def build_members(factory: Callable[[], SciflowModel], n_members: int, seed: int = 0) -> list[SciflowModel]:
    """``n_members`` models from ``factory()``, member ``k`` initialised under seed ``seed + k``
    (inside ``torch.random.fork_rng``, so the caller's global RNG state is left untouched)."""
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    members = []
    for k in range(n_members):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            m = factory()
        if not isinstance(m, SciflowModel):
            raise TypeError(f"factory must return a SciflowModel, got {type(m).__name__}")
        members.append(m)
    return members


def _cycle(batches: Iterable[Any], steps: int) -> Iterable[Any]:
    done = 0
    while done < steps:
        empty = True
        for b in batches:
            empty = False
            yield b
            done += 1
            if done >= steps:
                return
        if empty:
            raise ValueError("train batches are empty")


def _train_vectorised(members: list[SciflowModel], batches: Iterable[Any], steps: int,
                      make_opt: Callable[[list[Tensor]], torch.optim.Optimizer]) -> list[float]:
    params, buffers = stack_module_state(members)
    base = ModelCall(copy.deepcopy(members[0]).to("meta"), use_loss=True)
    pkeys = list(params)

    def one(p: dict[str, Tensor], b: dict[str, Tensor], batch: Any) -> Tensor:
        full = {f"m.{k}": v for k, v in p.items()} | {f"m.{k}": v for k, v in b.items()}
        return functional_call(base, full, (batch,))

    step_fn = vmap(one, in_dims=(0, 0, None), randomness="different")
    opt = make_opt([params[k] for k in pkeys])
    history = []
    for batch in _cycle(batches, steps):
        opt.zero_grad(set_to_none=True)
        losses = step_fn(params, buffers, batch)
        losses.sum().backward()  # members are independent: d(sum)/d(theta_m) = d(loss_m)/d(theta_m)
        opt.step()
        history.append(losses.detach())
    for i, m in enumerate(members):
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
            for name, bf in m.named_buffers():
                bf.copy_(buffers[name][i])
    return torch.stack(history).mean(1).tolist() if history else []


def _train_sequential(members: list[SciflowModel], batches: Iterable[Any], steps: int,
                      make_opt: Callable[[list[Tensor]], torch.optim.Optimizer]) -> list[float]:
    hist = torch.zeros(steps)
    for m in members:
        opt = make_opt(list(m.parameters()))
        for i, batch in enumerate(_cycle(batches, steps)):
            opt.zero_grad(set_to_none=True)
            loss = m.loss(batch).total
            loss.backward()
            opt.step()
            hist[i] += loss.detach().cpu() / len(members)
    return hist.tolist()


class DeepEnsemble(Predictor):
    """Uniform mixture of trained members. Build with :meth:`fit` or from trained models."""

    def __init__(self, members: Sequence[SciflowModel], alpha: float = 0.1,
                 n_samples_per_member: int = 1, observation_noise: float = 0.0) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a deep ensemble needs >= 2 members, got {len(members)}")
        types = {type(m) for m in members}
        if len(types) != 1:
            raise TypeError(f"ensemble members must share one model class, got {sorted(t.__name__ for t in types)}")
        if not isinstance(members[0], SciflowModel):
            raise TypeError(f"ensemble members must be SciflowModels, got {type(members[0]).__name__}")
        if n_samples_per_member < 1:
            raise ValueError(f"n_samples_per_member must be >= 1, got {n_samples_per_member}")
        if observation_noise < 0:
            raise ValueError(f"observation_noise must be >= 0, got {observation_noise}")
        self.members, self.alpha = members, check_alpha(alpha)
        self.n_samples_per_member = n_samples_per_member
        self.observation_noise = observation_noise
        self.loss_history: list[float] = []
        self.vectorised: bool | None = None

    @classmethod
    def fit(cls, factory: Callable[[], SciflowModel], train: Iterable[Any], *, n_members: int = 5,
            steps: int = 1000, lr: float = 1e-3,
            optimizer: Callable[[list[Tensor]], torch.optim.Optimizer] | None = None,
            seed: int = 0, vectorise: bool = True, alpha: float = 0.1,
            n_samples_per_member: int = 1) -> "DeepEnsemble":
        """Train ``n_members`` models from ``factory`` for ``steps`` optimiser steps over ``train``
        (cycled; every member sees the same batches, diversity comes from initialisation).
        ``optimizer`` maps a parameter list to an optimiser (default Adam with ``lr``)."""
        members = build_members(factory, n_members, seed)
        for m in members:
            m.train()
        make_opt = optimizer or (lambda ps: torch.optim.Adam(ps, lr=lr))
        ens = cls(members, alpha, n_samples_per_member)
        ens.vectorised = False
        if vectorise:
            try:
                ens.loss_history = _train_vectorised(members, train, steps, make_opt)
                ens.vectorised = True
            except Exception as err:  # model not vmap-able: fall back, say why
                warnings.warn(f"DeepEnsemble: vectorised training failed ({type(err).__name__}: {err}); "
                              "training members sequentially", RuntimeWarning, stacklevel=2)
                members[:] = build_members(factory, n_members, seed)
        if not ens.vectorised:
            ens.loss_history = _train_sequential(members, train, steps, make_opt)
        for m in members:
            m.eval()
        return ens

    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None) -> Prediction:
        for m in self.members:
            m.eval()
        if isinstance(self.members[0], GaussianPredictive):
            mv = [m.predict_mean_var(batch) for m in self.members]
            mu = torch.stack([a for a, _ in mv])
            var = torch.stack([b for _, b in mv])
            mean = mu.mean(0)
            mix_var = (var + mu**2).mean(0) - mean**2 + self.observation_noise
            samples = torch.cat([m.sample(batch, self.n_samples_per_member, generator=generator)
                                 for m in self.members])
            samples = self._add_noise(samples, generator)
            # interval of the moment-matched Gaussian, as in the paper (sec. 2.4)
            return Prediction.from_gaussian(mean, mix_var.clamp_min(0), self.alpha, samples=samples)
        samples = torch.cat([m.sample(batch, self.n_samples_per_member, generator=generator)
                             for m in self.members])
        if self.observation_noise > 0:
            mean = samples.mean(0)
            var = samples.var(0, unbiased=False) + self.observation_noise
            return Prediction.from_gaussian(mean, var, self.alpha, samples=self._add_noise(samples, generator))
        return Prediction.from_samples(samples, self.alpha)

    def _add_noise(self, samples: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.observation_noise == 0:
            return samples
        dev = samples.device if generator is None else generator.device
        eps = torch.randn(samples.shape, generator=generator, dtype=samples.dtype, device=dev).to(samples.device)
        return samples + self.observation_noise**0.5 * eps
