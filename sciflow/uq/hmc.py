r"""Hamiltonian Monte Carlo over the weights of small networks.

Target: :math:`\log\pi(\theta)=\log p(\theta)+\sum_{\text{batches}}\log p(y\mid f_\theta(x))` with an
explicit :class:`~sciflow.uq.bayes.Prior` and :class:`~sciflow.uq.bayes.Likelihood` (or a
:class:`~sciflow.uq.bayes.LossLikelihood` built from ``model.loss``); full-batch gradients, so
this is exact HMC (Neal 2011), meant for the small networks of the neural-PDE UQ comparisons
(Dongre & Hora 2023), not for large models.

Algorithm (all chains advance together; per-chain state lives in tensors, with no host
synchronisation inside a transition):

- Leapfrog integration of :math:`H(\theta,p)=-\log\pi(\theta)+\tfrac12 p^\top M^{-1}p` with a
  diagonal (default), dense or low-rank-plus-diagonal mass matrix :math:`M`
  (``run(mass_matrix=...)``), steps of size :math:`\varepsilon`; after warm-up each transition
  draws its number of steps uniformly from ``n_leapfrog·(1 ± length_jitter)`` (default 50 %,
  shared by the chains; the step size can be jittered instead, ``step_jitter``) to break
  periodic orbits (Neal 2011, Sec. 5.4.2.2): with a good mass matrix the whitened target is
  nearly standard normal, and a fixed trajectory length near :math:`\pi` maps :math:`y\mapsto
  -y`, which mixes the mean perfectly and the spread not at all (``benchmarks/hmc_mass.py``,
  D = 72, low-rank mass: tail ESS 41 of 2000 draws with ±10 % step jitter; the length jitter
  also keeps the ESS of a short warm-up that a ±50 % step jitter halves); Metropolis accept
  :math:`\min(1, e^{-\Delta H})`; a transition with :math:`\Delta H > 1000` or a non-finite energy
  counts as divergent and is rejected.
- Warm-up (Stan's windowed adaptation): step size by dual averaging (Hoffman & Gelman 2014,
  Alg. 5, eq. 6, :math:`\gamma=0.05, t_0=10, \kappa=0.75`) towards ``target_accept``;
  :math:`M^{-1}` set at the end of each doubling slow window (first window 25 draws,
  initial/terminal fast buffers 75/50, scaled down proportionally for short warm-ups) to the
  regularised per-chain sample variances (``"diag"``) or covariance (``"dense"``) of its draws, or
  to the Fisher-divergence minimiser from its draws and their gradients (``"fisher_diag"``,
  ``"low_rank"``; Seyboldt, Carlson & Carpenter 2026); dual averaging restarts after each update
  (:mod:`sciflow.uq._adaptation`, :mod:`sciflow.uq._mass`, :mod:`sciflow.uq._fisher_mass`).
  A dense matrix needs windows of many more draws than weights (:mod:`sciflow.uq._mass`); a
  low-rank one does not.
- Initial step size: Hoffman & Gelman 2014 Alg. 4 heuristic (per chain).
- Diagnostics after sampling: rank-normalised split-:math:`\widehat R`, bulk and tail ESS (Vehtari
  et al. 2021) of every weight and of the log posterior, acceptance rate, divergences.

Which :math:`\widehat R` to read: **function space**, :meth:`HMC.function_diagnostics`. A network's
likelihood is exactly invariant under permuting hidden units (and, for odd activations such as
tanh, flipping their signs), so the posterior has many weight-space copies of every mode that
predict identically. Chains that settle in different copies give a large weight-space
:math:`\widehat R` (``HMCResult.rhat``) even if they sample the same distribution of functions,
which is all the posterior predictive uses; a small weight-space :math:`\widehat R` is
informative, a large one is not. Izmailov, Vikram, Hoffman & Wilson (2021), "What Are Bayesian
Neural Network Posteriors Really Like?" (ICML, Sec. 5), therefore judge HMC convergence in
function space: :math:`\widehat R` of the softmax predictions at each test input across their 3
chains, with 1.1 as the threshold, shown beside the (much larger) weight-space values.
:meth:`HMC.function_diagnostics` does the same for any model output: the network's noise-free
prediction :math:`f_\theta(x)` under every kept draw, chain by chain, at the inputs of a
(held-out) batch, with the rank-normalised split-:math:`\widehat R` and bulk/tail ESS of Vehtari
et al. (2021) per output value (deviation from Izmailov et al.: their :math:`\widehat R` is the
classic Gelman–Rubin one; the rank-normalised version is stricter, and the usual thresholds
1.01/1.05 apply). ``HMCResult.summary()`` also reports the :math:`\widehat R` of the log
posterior, another symmetry-invariant scalar. A large function-space :math:`\widehat R` means
that the chains predict differently: genuinely distinct modes, or chains that have not
forgotten their start; then more chains and longer runs, not a better weight-space statistic,
are the remedy. (A large weight-space :math:`\widehat R` need not come from symmetries either:
chains started at the same weights drift apart along directions the data barely constrain.)

:class:`~sciflow.uq.nuts.NUTS` subclasses :class:`HMC` with adaptive trajectory lengths.
Chains are evaluated with ``torch.func.vmap`` over ``functional_call`` where the model allows,
else one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from sciflow.models.base import SciflowModel
from sciflow.uq._adaptation import MASS_MATRICES, DualAveraging, check_mass_matrix, warmup_windows
from sciflow.uq._mass import Mass
from sciflow.uq._weights import ModelCall, WeightSpace
from sciflow.uq.base import Predictor, check_alpha, observed_for, target_for
from sciflow.uq.bayes import Likelihood, LossLikelihood, Prior
from sciflow.uq.diagnostics import ConvergenceDiagnostics, convergence_diagnostics, rhat
from sciflow.uq.prediction import Prediction


@dataclass(frozen=True)
class HMCResult:
    """Posterior draws and diagnostics.

    ``samples``: ``(chains, n_samples, D)`` flat weights; ``rhat``, ``ess_bulk``, ``ess_tail``:
    ``(D,)`` weight-space diagnostics (large for a network even when its predictions have mixed:
    read :meth:`HMC.function_diagnostics`, see the module docstring); ``accept_rate``,
    ``step_size``: ``(chains,)``; ``inv_mass``: the adapted :math:`M^{-1}`, ``(chains, D, D)``
    (dense) or ``(chains, D)``, its diagonal (the other kinds); ``divergences``: ``(chains,)``
    counts after warm-up; ``log_prob``: ``(chains, n_samples)``.
    """

    samples: Tensor
    log_prob: Tensor
    accept_rate: Tensor
    step_size: Tensor
    inv_mass: Tensor
    divergences: Tensor
    rhat: Tensor
    ess_bulk: Tensor
    ess_tail: Tensor

    def summary(self) -> dict[str, float]:
        def nanmin(x: Tensor) -> float:  # NaN ESS = a parameter constant within every chain
            x = x[~torch.isnan(x)]
            return float(x.min()) if x.numel() else math.nan

        r = self.rhat[~torch.isnan(self.rhat)]
        return {"max_rhat": float(torch.nan_to_num(self.rhat, nan=math.inf).max()),
                "median_rhat": float(r.median()) if r.numel() else math.nan,
                "min_ess_bulk": nanmin(self.ess_bulk), "min_ess_tail": nanmin(self.ess_tail),
                "rhat_log_prob": float(rhat(self.log_prob.to(torch.float64))),
                "accept_rate": float(self.accept_rate.mean()),
                "divergences": int(self.divergences.sum()),
                "n_chains": int(self.samples.shape[0]), "n_samples": int(self.samples.shape[1])}


class HMC(Predictor):
    """HMC posterior over ``model``'s parameters; :meth:`run` samples, :meth:`predict` gives the
    posterior predictive (with the likelihood's noise if ``include_noise``).

    ``data``: the batches of the (full) training set; ``target(batch, prediction)`` the truth
    (default :func:`~sciflow.uq.base.target_for`), ``observed(batch, prediction)`` which of its
    entries the likelihood counts (default :func:`~sciflow.uq.base.observed_for`). Parameters
    listed in ``frozen`` (names) are held at their current values.
    """

    def __init__(self, model: SciflowModel, prior: Prior, likelihood: Likelihood | LossLikelihood,
                 data: Iterable[Any], *, target: Callable[[Any, Tensor], Tensor] = target_for,
                 observed: Callable[[Any, Tensor], Tensor | None] | None = observed_for,
                 alpha: float = 0.1, include_noise: bool = True, frozen: Sequence[str] = ()) -> None:
        if not isinstance(model, SciflowModel):
            raise TypeError(f"HMC samples the weights of a SciflowModel, got {type(model).__name__}")
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a sciflow.uq.bayes.Prior, got {type(prior).__name__}")
        if not isinstance(likelihood, (Likelihood, LossLikelihood)):
            raise TypeError(f"likelihood must be a Likelihood or LossLikelihood, got {type(likelihood).__name__}")
        self.model, self.prior, self.likelihood = model, prior, likelihood
        self.data = list(data)
        if not self.data:
            raise ValueError("HMC needs at least one data batch")
        self.target, self.observed = target, observed
        self.alpha, self.include_noise = check_alpha(alpha), include_noise
        self.weights = WeightSpace(model, frozen, who="HMC", rows="chains")
        self._call = ModelCall(model, isinstance(likelihood, LossLikelihood))
        self._predict_call = ModelCall(model, False)
        self._targets = None
        self.result: HMCResult | None = None

    # -------------------------------------------------------------- the target density
    @property
    def dim(self) -> int:
        return self.weights.dim

    def flat_parameters(self) -> Tensor:
        return self.weights.flat()

    def _forward_chains(self, theta: Tensor, batch: Any, *, predict: bool = False) -> Tensor:
        """Model output for every row of ``theta``: ``(rows, ...)``; the likelihood's quantity
        (prediction, or loss for a :class:`LossLikelihood`), or the prediction if ``predict``."""
        return self.weights.evaluate(self._predict_call if predict else self._call, theta, batch)

    def log_prob(self, theta: Tensor) -> Tensor:
        """Unnormalised log posterior, ``theta``: ``(chains, D)`` -> ``(chains,)``."""
        lp = self.prior.log_prob(theta)
        self.model.eval()
        for batch in self.data:
            out = self._forward_chains(theta, batch)
            if isinstance(self.likelihood, LossLikelihood):
                lp = lp - self.likelihood.scale(batch) * out
            else:
                y = self.target(batch, out[0])
                m = None if self.observed is None else self.observed(batch, out[0])
                lp = lp + self.likelihood.log_prob(out, y.to(out.dtype), m)
        return lp

    def _grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            lp = self.log_prob(th)
            (g,) = torch.autograd.grad(lp.sum(), th)
        return lp.detach(), g

    # -------------------------------------------------------------- the sampler
    def _leapfrog(self, theta: Tensor, p: Tensor, g: Tensor, eps: Tensor, mass: Mass,
                  n_steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        e = eps.unsqueeze(-1)
        p = p + 0.5 * e * g
        lp = None
        for i in range(n_steps):
            theta = mass.drift(theta, e, p)
            lp, g = self._grad(theta)
            if i < n_steps - 1:
                p = p + e * g
        p = p + 0.5 * e * g
        return theta, p, lp, g

    def _momentum(self, like: Tensor, mass: Mass, generator: torch.Generator | None) -> Tensor:
        dev = like.device if generator is None else generator.device
        return mass.momentum(torch.randn(like.shape, generator=generator, dtype=like.dtype, device=dev).to(like.device))

    def _uniform(self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
        dev = like.device if generator is None else generator.device
        return torch.rand(shape, generator=generator, dtype=like.dtype, device=dev).to(like.device)

    def _transition(self, theta, lp, g, eps, mass, n_leapfrog, generator):
        p0 = self._momentum(theta, mass, generator)
        h0 = -lp + mass.kinetic(p0)
        th1, p1, lp1, g1 = self._leapfrog(theta, p0, g, eps, mass, n_leapfrog)
        h1 = -lp1 + mass.kinetic(p1)
        dh = h1 - h0
        finite = torch.isfinite(dh) & torch.isfinite(th1).all(-1) & torch.isfinite(g1).all(-1)
        dh = torch.where(finite, dh, torch.full_like(dh, math.inf))
        accept_prob = torch.exp(-dh.clamp_min(0))
        accept = torch.log(self._uniform(dh.shape, dh, generator)) < -dh
        a = accept.unsqueeze(-1)
        theta = torch.where(a, th1, theta)
        g = torch.where(a, g1, g)
        lp = torch.where(accept, lp1, lp)
        divergent = dh > 1000
        return theta, lp, g, accept_prob, accept, divergent

    @staticmethod
    def _lengths(n: int, n_leapfrog: int, jitter: float, generator: torch.Generator | None) -> list[int]:
        """Leapfrog steps of ``n`` transitions: uniform on ``[ceil((1-j)L), floor((1+j)L)]`` (all
        drawn at once: one host transfer, none inside the sampling loop)."""
        if jitter == 0:
            return [n_leapfrog] * n
        lo, hi = max(1, math.ceil((1 - jitter) * n_leapfrog)), math.floor((1 + jitter) * n_leapfrog)
        dev = None if generator is None else generator.device
        return torch.randint(lo, hi + 1, (n,), generator=generator, device=dev).tolist()

    def _initial_step_size(self, theta, lp, g, mass, generator) -> Tensor:
        """Hoffman & Gelman (2014) Alg. 4, per chain: double/halve until the one-step acceptance
        crosses 1/2."""
        eps = torch.full(theta.shape[:1], 0.1, dtype=theta.dtype, device=theta.device)
        p = self._momentum(theta, mass, generator)
        h0 = -lp + mass.kinetic(p)

        def log_accept(e: Tensor) -> Tensor:
            _, p1, lp1, _ = self._leapfrog(theta, p, g, e, mass, 1)
            d = h0 - (-lp1 + mass.kinetic(p1))
            return torch.where(torch.isfinite(d), d, torch.full_like(d, -math.inf))

        la = log_accept(eps)
        direction = torch.where(la > math.log(0.5), 1.0, -1.0).to(theta.dtype)
        active = torch.ones_like(eps, dtype=torch.bool)
        for _ in range(40):  # warm-up only: host-side loop control is fine here
            new = eps * 2.0**direction
            la = log_accept(new)
            still = torch.where(direction > 0, la > math.log(0.5), la <= math.log(0.5)) & active
            eps = torch.where(active, new, eps)
            active = still
            if not bool(active.any()):
                break
        return eps.clamp(1e-8, 10.0)

    def run(self, n_samples: int = 500, n_warmup: int = 500, n_chains: int = 4, *,
            n_leapfrog: int = 20, target_accept: float = 0.8, init: Tensor | None = None,
            init_jitter: float = 0.1, step_jitter: float = 0.0, length_jitter: float = 0.5, thin: int = 1,
            mass_matrix: str = "diag", generator: torch.Generator | None = None) -> HMCResult:
        """Run ``n_chains`` chains: ``n_warmup`` adaptation transitions, then ``n_samples * thin``
        transitions of which every ``thin``-th is kept. ``init``: ``(n_chains, D)`` or ``(D,)``
        start (default the model's current weights plus ``init_jitter`` Gaussian noise).
        ``mass_matrix``: ``"diag"`` (Stan's ``diag_e``), ``"dense"`` (``dense_e``: for posteriors
        with strong linear correlations and ``D`` well below the last slow window, about
        ``n_warmup / 2`` draws; :mod:`sciflow.uq._mass`), or the Fisher-divergence minimisers from
        draws and gradients (:mod:`sciflow.uq._fisher_mass`): ``"fisher_diag"`` (diagonal) and
        ``"low_rank"`` (low-rank plus diagonal: correlations along the directions the warm-up
        explored, at any ``D``). After warm-up each chain's step size is jittered by
        ±``step_jitter`` and every transition's number of leapfrog steps (shared by the chains) is
        drawn uniformly from ``n_leapfrog·(1 ± length_jitter)`` (mean ``n_leapfrog``): two ways to
        break periodic trajectories (Neal 2011, Sec. 5.4.2.2)."""
        if n_samples < 4 or n_chains < 1 or n_warmup < 0 or n_leapfrog < 1 or thin < 1:
            raise ValueError("need n_samples >= 4, n_chains >= 1, n_warmup >= 0, n_leapfrog >= 1, thin >= 1")
        if not 0 < target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        if not 0 <= step_jitter < 1:
            raise ValueError(f"step_jitter must be in [0, 1) (a fraction of the step size), got {step_jitter}")
        if not 0 <= length_jitter < 1:
            raise ValueError(f"length_jitter must be in [0, 1) (a fraction of n_leapfrog), got {length_jitter}")
        base = self.flat_parameters()
        D = base.numel()
        check_mass_matrix(mass_matrix, D)
        if init is None:
            dev = base.device if generator is None else generator.device
            noise = torch.randn((n_chains, D), generator=generator, dtype=base.dtype, device=dev).to(base.device)
            theta = base.unsqueeze(0) + init_jitter * noise
        else:
            theta = init.to(base).expand(n_chains, D).clone()
        adaptation = MASS_MATRICES[mass_matrix]
        mass = adaptation.identity(theta)
        lp, g = self._grad(theta)
        if not bool(torch.isfinite(lp).all()):
            raise ValueError("log posterior is not finite at the initial weights")
        eps = self._initial_step_size(theta, lp, g, mass, generator)

        adapt = DualAveraging(eps, target_accept)
        start, _, ends = warmup_windows(n_warmup)
        draws: list[Tensor] = []   # the slow window's draws, and the gradients there if the estimator reads them
        grads: list[Tensor] = []
        for it in range(n_warmup):
            theta, lp, g, acc_prob, _, _ = self._transition(theta, lp, g, eps, mass, n_leapfrog, generator)
            eps = adapt.update(acc_prob)
            if start <= it < (ends[-1] if ends else -1):
                draws.append(theta)
                if adaptation.needs_gradients:
                    grads.append(g)
            if ends and it + 1 == ends[0]:  # end of a slow window: new mass matrix, restart the step size
                ends.pop(0)
                mass = adaptation.estimate(torch.stack(draws, 1), torch.stack(grads, 1) if grads else None)
                draws, grads = [], []
                eps = self._initial_step_size(theta, lp, g, mass, generator)
                adapt = DualAveraging(eps, target_accept)
        if n_warmup > 0:
            eps = adapt.final

        lengths = self._lengths(n_samples * thin, n_leapfrog, length_jitter, generator)
        draws, lps, n_acc, n_div = [], [], torch.zeros_like(eps), torch.zeros_like(eps)
        for it in range(n_samples * thin):
            jit = 1 + step_jitter * (2 * self._uniform(eps.shape, eps, generator) - 1)
            theta, lp, g, _, acc, div = self._transition(theta, lp, g, eps * jit, mass, lengths[it], generator)
            n_acc = n_acc + acc.to(eps.dtype)
            n_div = n_div + div.to(eps.dtype)
            if (it + 1) % thin == 0:
                draws.append(theta)
                lps.append(lp)
        samples = torch.stack(draws, 1)
        weights = convergence_diagnostics(samples)  # split chains: defined for one chain too
        self.result = HMCResult(
            samples=samples, log_prob=torch.stack(lps, 1), accept_rate=n_acc / (n_samples * thin),
            step_size=eps, inv_mass=mass.inverse, divergences=n_div,
            rhat=weights.rhat, ess_bulk=weights.ess_bulk, ess_tail=weights.ess_tail)
        return self.result

    # -------------------------------------------------------------- function-space diagnostics
    @torch.no_grad()
    def function_draws(self, batch: Any) -> Tensor:
        """The network's prediction (``model.sample(batch, 1)[0]``, noise-free for the
        deterministic networks HMC is meant for) under every kept draw, chain structure kept:
        ``(chains, n_samples, *event)`` (one chain's draws evaluated at a time)."""
        if self.result is None:
            raise RuntimeError("HMC.run(...) must be called before function_draws / function_diagnostics")
        self.model.eval()
        return torch.stack([self._forward_chains(chain, batch, predict=True) for chain in self.result.samples])

    def function_diagnostics(self, batch: Any) -> ConvergenceDiagnostics:
        r"""Function-space convergence: rank-normalised split-:math:`\widehat R` and bulk/tail ESS
        of every output value :math:`f_\theta(x)_j` at ``batch``'s inputs (use held-out inputs),
        shaped like one prediction; ``.summary()`` gives the median and max :math:`\widehat R`
        and the min ESS. These, not the weight-space ``HMCResult.rhat``, say whether the chains
        agree on the posterior predictive (module docstring; Izmailov et al. 2021)."""
        return convergence_diagnostics(self.function_draws(batch))

    # -------------------------------------------------------------- the posterior predictive
    @torch.no_grad()
    def predict(self, batch: Any, *, generator: torch.Generator | None = None,
                max_draws: int | None = None) -> Prediction:
        """Posterior predictive: the network under every kept draw (pooled over chains,
        at most ``max_draws`` evenly spaced), plus the likelihood's noise if ``include_noise``."""
        if self.result is None:
            raise RuntimeError("HMC.run(...) must be called before predict")
        if isinstance(self.likelihood, LossLikelihood):
            raise TypeError("predict needs an explicit Likelihood (LossLikelihood has no predictive)")
        theta = self.result.samples.reshape(-1, self.result.samples.shape[-1])
        if max_draws is not None and theta.shape[0] > max_draws:
            idx = torch.linspace(0, theta.shape[0] - 1, max_draws, device=theta.device).round().long()
            theta = theta[idx]
        self.model.eval()
        f = self._forward_chains(theta, batch, predict=True)
        samples = self.likelihood.sample(f, generator) if self.include_noise else f
        return Prediction.from_samples(samples, self.alpha)
