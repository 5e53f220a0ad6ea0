"""Stable neural SDEs for irregular, partly missing time series (Oh, Lim & Kim, ICLR 2024).

The latent state ``z(t) ∈ R^d`` starts from ``z(t_0) = ζ_0(x_0)`` (a linear map of the first
observation's features ``[t_0, x(t_0) ⊙ m, m]``) and follows, in the Itô sense with diagonal noise
(the three definitions of §3.1 of arXiv:2402.14989; ``z̃ = ζ(t, z, X(t))`` is the controlled
state of §3.2, see :mod:`~sciflow.models.stable_sde.fields`):

* **LSDE** (Langevin-type):      ``dz = γ(z̃) dt + σ(t) dW``
* **LNSDE** (linear noise):      ``dz = γ(t, z̃) dt + σ(t) ⊙ z dW``
* **GSDE** (geometric):          ``dz = γ(t, z̃) ⊙ z dt + σ(t) ⊙ z dW``  (``z > 0``)

and the baselines on the same pipeline (same ``ζ_0``, control path, readout and batch type):

* **neural_sde** (naive):        ``dz = γ(t, z̃) dt + g(t, z) dW`` with a learned state-dependent ``g``
* **neural_ode**:                ``dz = γ(t, z̃) dt``  (control concatenated through ``z̃``)
* **neural_cde** (Kidger et al. 2020, §3):  ``dz = f(z) dX(t) = f(z) X'(t) dt``
* **ode_rnn** (Rubanova et al. 2019, Alg. 1): ``dh = f(h) dt`` between observations, GRU jumps at them.

``variant="paper"`` integrates exactly these equations with unconstrained networks. The GSDE is
solved for ``u = log z``: by Itô's formula ``du = (γ(t, z̃) − σ(t)²/2) dt + σ(t) dW`` (additive
noise), so ``z = exp(u) > 0`` holds for every step size — the geometric SDE's solution
``z(t) = z(0) exp(∫(γ − σ²/2) ds + ∫ σ dW)`` is positive, but an Euler–Maruyama step in ``z``
(``z (1 + γ h + σ ΔW)``) is not. The networks of the GSDE see ``u`` (a choice of ``ζ``), and the
readout acts on ``u``. ``variant="official"`` uses the runtime forms of the authors' code
(``yongkyung-oh/Stable-Neural-SDEs``, ``Diffusion_model``): drift ``tanh(γ)`` (GSDE:
``tanh(γ ⊙ tanh(z))`` in ``z``-space, which does *not* keep ``z`` positive) and diffusion
``tanh(σ(t))`` / ``tanh(σ(t) ⊙ z)``, so both are bounded by 1 in absolute value.

Tasks: ``classification`` (readout of ``z`` at each series' last observation time -> logits,
cross-entropy; ``readout_norm="batch"``, the default, keeps the official readout's BatchNorm, whose
statistics :meth:`StableSDE.calibrate` recomputes on the training split so that predictions do not
depend on the evaluation batch), ``forecasting`` / ``interpolation`` (decoder of ``z`` at
``batch.target_times`` -> mean and variance, Gaussian NLL; or mean only, MSE). Training uses one
sample path per series, as the paper.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.data.batches import IrregularBatch
from sciflow.models.base import LossOutput, SciflowModel
from sciflow.models.stable_sde.config import Config
from sciflow.models.stable_sde.control import Control, build_control, path_channels
from sciflow.models.stable_sde.fields import (CDEField, ControlledDrift, ODERNNCell, StateDiffusion,
                                             TimeDiffusion)
from sciflow.solvers.ode import odeint
from sciflow.solvers.registry import SOLVERS
from sciflow.solvers.sde import (SRI, Additive, BrownianPath, Diagonal, EulerMaruyama, Milstein, StratonovichHeun,
                                 TorchSDE, sdeint)

_SCIFLOW_SDE = {"euler": EulerMaruyama, "milstein": Milstein, "sri": SRI, "heun": StratonovichHeun}
_TORCHSDE_METHOD = {"euler": "euler", "milstein": "milstein", "sri": "srk", "heun": "heun"}


def eval_path(path, t: Tensor, n_rep: int, derivative: bool = False) -> Tensor:
    """``X(t)`` (or ``X'(t)``) for ``n_rep`` stacked copies of the batch: ``(n_rep * batch, channels)``.

    ``t`` is 0-d (shared clock) or holds one time per stacked sample (per-sample grids; the copies
    share their times, so the first ``batch`` entries are the times of every copy)."""
    fn = path.derivative if derivative else path.evaluate
    if t.ndim == 0:
        x = fn(t)
    else:
        x = fn(t.reshape(-1)[:path.batch].unsqueeze(1))[:, 0]
    return x.repeat(n_rep, 1) if n_rep > 1 else x


class ReadoutBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that uses its running statistics for a batch of one series (a training batch
    of one cannot be normalised by its own statistics)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class _LatentSDE:
    """Drift ``f(t, z)`` and diffusion ``g(t, z)`` of one solve, bound to a batch's control path.

    ``n_rep`` copies of the batch are stacked along the batch axis (independent sample paths);
    the control value ``X(t)`` is evaluated once for the batch and repeated.
    """

    def __init__(self, model: "StableSDE", path, n_rep: int, grid: Tensor | None = None) -> None:
        self.m, self.path, self.n_rep = model, path, n_rep
        cfg = model.cfg
        self.kind, self.official = cfg.kind, cfg.variant == "official"
        self.log_space = cfg.kind == "gsde" and not self.official
        self.grid = self.table = None
        if grid is not None:
            # the solver evaluates the drift at the grid times only: tabulate X there once (data,
            # no gradient) and look it up per step instead of re-evaluating the spline
            # (shared grid (time,): table (time, batch, ch); per-sample grids (batch, time): (batch, time, ch))
            with torch.no_grad():
                self.grid = grid.contiguous()
                x = path.evaluate(self.grid)                                  # (batch, time, ch)
                self.table = x.transpose(0, 1).contiguous() if grid.ndim == 1 else x

    def control(self, t: Tensor) -> Tensor:
        if self.table is None:
            return eval_path(self.path, t, self.n_rep)
        n = self.grid.shape[-1]
        if self.grid.ndim == 1:
            k = torch.searchsorted(self.grid, t.reshape(1), right=True) - 1    # exact grid time: its index
            x = self.table.index_select(0, k.clamp(0, n - 1))[0]
        else:   # per-sample clocks: row b looks up its own time (the stacked copies share times)
            tb = t.reshape(-1)[:self.grid.shape[0]].unsqueeze(1)
            k = (torch.searchsorted(self.grid, tb, right=True) - 1).clamp(0, n - 1)
            x = self.table.gather(1, k.unsqueeze(-1).expand(-1, 1, self.table.shape[-1]))[:, 0]
        return x.repeat(self.n_rep, 1) if self.n_rep > 1 else x

    def f(self, t: Tensor, z: Tensor) -> Tensor:
        gamma = self.m.drift(t, z, self.control(t))
        if self.kind == "gsde":
            if self.log_space:   # du = (γ - σ²/2) dt + σ dW for u = log z
                return gamma - 0.5 * self.m.diffusion(t, z).square()
            return torch.tanh(gamma * torch.tanh(z))
        return torch.tanh(gamma) if self.official else gamma

    def g(self, t: Tensor, z: Tensor) -> Tensor:
        sigma = self.m.diffusion(t, z)
        if self.kind in ("lnsde", "gsde") and not self.log_space:
            sigma = sigma * z
        return torch.tanh(sigma) if self.official else sigma


class StableSDE(SciflowModel):
    """LSDE / LNSDE / GSDE and baselines on :class:`~sciflow.data.batches.IrregularBatch`.

    ``loss(batch)`` -> ``LossOutput`` (classification terms ``ce``, ``accuracy``; regression terms
    ``nll`` or ``mse``). ``predict(batch)`` -> logits ``(batch, n_classes)`` or the mean forecast
    ``(batch, n_target, C)``. ``sample(batch, n)`` -> ``(n, batch, n_classes)`` logits of ``n``
    sample paths, or ``(n, batch, n_target, C)`` draws of the predictive distribution (SDE path
    plus, with the Gaussian likelihood, observation noise). ``latent(batch, n)`` -> the grid and
    the latent paths ``(time, n * batch, d)`` in the paper's coordinates (``z``, also for the GSDE).
    """

    stochastic: ClassVar[bool] = True
    batch_type: ClassVar[type] = IrregularBatch
    config_class: ClassVar[type] = Config

    def __init__(self, cfg: Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or Config(n_classes=2)
        d, w, L = cfg.hidden_dim, cfg.width, cfg.num_layers
        pc = path_channels(cfg.input_channels, cfg.intensity)
        self.initial = nn.Linear(1 + 2 * cfg.input_channels, d)
        if cfg.kind in ("lsde", "lnsde", "gsde", "neural_sde", "neural_ode"):
            self.drift = ControlledDrift(d, pc, w, L, time_dependent=cfg.kind != "lsde")
        if cfg.kind in ("lsde", "lnsde", "gsde"):
            self.diffusion = TimeDiffusion(d, w, theta=cfg.diffusion_init)
        elif cfg.kind == "neural_sde":
            self.diffusion = StateDiffusion(d, w, theta=cfg.diffusion_init)
        elif cfg.kind == "neural_cde":
            self.cde = CDEField(d, pc, w, L)
        elif cfg.kind == "ode_rnn":
            self.odernn = ODERNNCell(d, cfg.input_channels, w, L)
        if cfg.task == "classification":
            norm = [ReadoutBatchNorm(d)] if cfg.readout_norm == "batch" else []
            self.readout = nn.Sequential(nn.Linear(d, d), *norm, nn.ReLU(), nn.Dropout(cfg.dropout),
                                         nn.Linear(d, cfg.n_classes))
        else:
            out = cfg.input_channels * (2 if cfg.likelihood == "gaussian" else 1)
            self.readout = nn.Linear(d, out)
        # deterministic kinds with a Gaussian head still sample (aleatoric) predictive draws
        self.stochastic = cfg.is_sde or (cfg.task != "classification" and cfg.likelihood == "gaussian")

    # ------------------------------------------------------------------ checks
    def _check(self, batch: IrregularBatch) -> None:
        self.check_batch(batch)
        C = batch.values.shape[-1]
        if C != self.cfg.input_channels:
            raise ValueError(f"StableSDE(input_channels={self.cfg.input_channels}) got a batch with {C} channels")
        if self.cfg.task == "classification":
            if batch.labels is None:
                raise ValueError("task='classification' needs IrregularBatch.labels")
            lab = batch.labels
            # range check only where it costs no device sync (CPU); on CUDA cross_entropy asserts
            if lab.device.type == "cpu" and lab.numel() and not bool(((lab >= 0) & (lab < self.cfg.n_classes)).all()):
                raise ValueError(f"labels must be class indices in [0, n_classes={self.cfg.n_classes}), got min "
                                 f"{int(lab.min())}, max {int(lab.max())}")
        else:
            if batch.targets is None or batch.target_times is None:
                raise ValueError(f"task={self.cfg.task!r} needs IrregularBatch.targets and target_times")
            want = (*batch.target_times.shape, C)
            if tuple(batch.targets.shape) != want:
                raise ValueError(f"targets must be (batch, n_target, channel) = {want}, "
                                 f"got {tuple(batch.targets.shape)}")
            if batch.target_mask is not None and tuple(batch.target_mask.shape) != want:
                raise ValueError(f"target_mask must be {want}, got {tuple(batch.target_mask.shape)}")

    def control(self, batch: IrregularBatch) -> Control:
        """The control path and time grid of ``batch`` (see :mod:`~sciflow.models.stable_sde.control`)."""
        cfg = self.cfg
        time_grid = "union" if cfg.solver_backend == "torchsde" else cfg.time_grid
        return build_control(batch, interpolation=cfg.interpolation, intensity=cfg.intensity, n_steps=cfg.n_steps,
                             with_targets=cfg.task != "classification", time_grid=time_grid)

    # ------------------------------------------------------------------ latent solve
    def _solve(self, ctrl: Control, n_rep: int, generator: torch.Generator | None,
               brownian: BrownianPath | None = None) -> Tensor:
        """Latent paths on ``ctrl.grid``: ``(time, n_rep * batch, d)`` in solver coordinates."""
        cfg = self.cfg
        z0 = self.initial(ctrl.x0).to(ctrl.x0.dtype)  # bf16 autocast: the latent path stays in the data's dtype
        if n_rep > 1:
            z0 = z0.repeat(n_rep, 1)
        grid = ctrl.grid.to(z0.dtype)
        if grid.ndim == 2 and n_rep > 1:
            grid = grid.repeat(n_rep, 1)
        if cfg.is_sde:
            # Euler–Maruyama / Milstein with one step per grid gap evaluate the drift at the grid times
            # only (the paper's setting; per-sample grids: each sample's own times, exactly, since
            # the time change maps step k to t_k): then the control is tabulated once
            tabulate = ctrl.dt is None and cfg.method in ("euler", "milstein") and cfg.solver_backend == "sciflow"
            sde = _LatentSDE(self, ctrl.path, n_rep, grid=ctrl.grid.to(z0.dtype) if tabulate else None)
            # (GSDE, paper variant: the initial map gives u0 = log z0, so z0 = exp(u0) > 0)
            noise = Additive() if (cfg.kind == "lsde" or sde.log_space) else Diagonal()
            if cfg.solver_backend == "torchsde":
                # the official path: torchsde.sdeint with dt = the smallest gap (one step per gap on
                # an evenly spaced grid); one host read of the grid per batch
                dt = ctrl.dt if ctrl.dt is not None else float((grid[1:] - grid[:-1]).min())
                solver = TorchSDE(_TORCHSDE_METHOD[cfg.method])
            else:
                dt, solver = ctrl.dt, _SCIFLOW_SDE[cfg.method]()
            return sdeint(sde.f, sde.g, z0, grid, noise=noise, solver=solver, dt=dt, generator=generator,
                          brownian=brownian)
        solver = SOLVERS[cfg.ode_solver]()
        if cfg.kind == "neural_ode":
            path = ctrl.path

            def f(t, z):
                return self.drift(t, z, eval_path(path, t, n_rep))
            return odeint(f, z0, grid, solver=solver, dt=ctrl.dt)
        if cfg.kind == "neural_cde":
            path = ctrl.path

            def f(t, z):
                dx = eval_path(path, t, n_rep, derivative=True)
                return (self.cde(z) @ dx.unsqueeze(-1)).squeeze(-1)
            return odeint(f, z0, grid, solver=solver, dt=ctrl.dt)
        return self._ode_rnn(ctrl, z0, grid, solver, n_rep)

    def _ode_rnn(self, ctrl: Control, h: Tensor, grid: Tensor, solver, n_rep: int) -> Tensor:
        cell = self.odernn
        xs, ms = ctrl.obs_values, ctrl.obs_mask.to(ctrl.obs_values.dtype)
        if n_rep > 1:
            xs, ms = xs.repeat(n_rep, 1, 1), ms.repeat(n_rep, 1, 1)

        def flow(t, z):
            return cell.flow(z)
        # one explicit Runge–Kutta step per grid gap (the default, dt=None): call the solver's
        # step directly with every gap precomputed ((time, batch) step sizes), so the loop has no
        # per-interval odeint set-up or time-grid validation (host syncs); with dt, odeint sub-steps
        direct = ctrl.dt is None and hasattr(solver, "step") and not getattr(solver, "adaptive", True)
        if direct:
            tt = (grid if grid.ndim == 2 else grid.expand(h.shape[0], -1)).transpose(0, 1).to(h.dtype)
            steps = tt[1:] - tt[:-1]                                       # (time - 1, batch)
        out = []
        for k in range(grid.shape[-1]):
            if k > 0:
                if direct:
                    h = solver.step(flow, tt[k - 1], h, steps[k - 1], flow(tt[k - 1], h))[0]
                else:
                    h = odeint(flow, h, grid[..., k - 1:k + 1], solver=solver, dt=ctrl.dt)[-1]
            h = cell.jump(h, xs[:, k], ms[:, k])
            out.append(h)
        return torch.stack(out)

    def latent(self, batch: IrregularBatch, n_samples: int = 1, *, generator: torch.Generator | None = None,
               brownian: BrownianPath | None = None) -> tuple[Tensor, Tensor]:
        """``(grid (time,), z (time, n_samples * batch, d))`` with ``z`` in the paper's coordinates.

        ``brownian``: a :class:`~sciflow.solvers.sde.BrownianPath` of shape ``(n_samples * batch, d)``
        covering the solver's step grid (common random numbers); default: fresh increments drawn
        from ``generator``."""
        self.check_batch(batch)
        ctrl = self.control(batch)
        zs = self._solve(ctrl, n_samples, generator, brownian)
        if self.cfg.kind == "gsde" and self.cfg.variant == "paper":
            zs = zs.exp()
        return ctrl.grid, zs

    def forward(self, batch: IrregularBatch, n_samples: int = 1, *, generator: torch.Generator | None = None,
                brownian: BrownianPath | None = None) -> Tensor:
        """Readout of ``n_samples`` sample paths: logits ``(n_samples, batch, n_classes)``, or the
        decoder output ``(n_samples, batch, n_target, C)`` (``2C`` with the Gaussian likelihood:
        mean and pre-softplus variance)."""
        self._check(batch)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        ctrl = self.control(batch)
        B = batch.values.shape[0]
        try:
            zs = self._solve(ctrl, n_samples, generator, brownian)  # (time, n * B, d)
        except FloatingPointError:
            if self.cfg.nonfinite == "raise":
                raise
            # a diverged solve (e.g. the naive SDE): NaN outputs that stay on the autograd graph,
            # so the trainer's non-finite guard skips and counts the step instead of crashing
            nan = self.initial(ctrl.x0).sum() * float("nan")
            zs = nan + torch.zeros(ctrl.grid.shape[-1], n_samples * B, self.cfg.hidden_dim,
                                   dtype=nan.dtype, device=nan.device)
        cols = torch.arange(n_samples * B, device=zs.device)
        if self.cfg.task == "classification":
            z = zs[ctrl.last_index.repeat(n_samples), cols]          # (n * B, d)
            return self.readout(z).reshape(n_samples, B, -1)
        ti = ctrl.target_index.repeat(n_samples, 1)                  # (n * B, n_target)
        z = zs[ti, cols.unsqueeze(1)]                                # (n * B, n_target, d)
        return self.readout(z).reshape(n_samples, B, *ti.shape[1:], -1)

    @torch.no_grad()
    def calibrate(self, batches, *, generator: torch.Generator | None = None) -> None:
        """Recompute the running statistics of the readout's batch normalisation on ``batches``
        (an :class:`IrregularBatch` or an iterable of them, e.g. the training set) with the current
        weights ("precise BatchNorm"): equal-weight averages over the batches, one sample path per
        series. A no-op without ``readout_norm="batch"``. The training/eval mode is restored."""
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm1d)]
        if not bns:
            return
        if isinstance(batches, IrregularBatch):
            batches = [batches]
        was = self.training
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None                      # cumulative average over the calibration batches
        self.train()
        try:
            for b in batches:
                self(b, generator=generator)
        finally:
            for bn in bns:
                bn.momentum = 0.1
            self.train(was)

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor | None]:
        C = self.cfg.input_channels
        if self.cfg.likelihood == "gaussian":
            return out[..., :C], F.softplus(out[..., C:]) + 1e-6
        return out, None

    # ------------------------------------------------------------------ protocol
    def loss(self, batch: IrregularBatch) -> LossOutput:
        out = self(batch)[0]
        out = out.to(torch.promote_types(out.dtype, torch.float32))  # autocast's bf16 head: the likelihood in fp32
        if self.cfg.task == "classification":
            labels = batch.labels.long()
            ce = F.cross_entropy(out, labels)
            acc = (out.argmax(-1) == labels).to(out.dtype).mean()
            return LossOutput(ce, {"ce": ce.detach(), "accuracy": acc.detach()})
        mean, var = self._split(out)
        y = batch.targets.to(mean.dtype)
        w = (torch.ones_like(y) if batch.target_mask is None else batch.target_mask.to(mean.dtype))
        n = w.sum().clamp_min(1.0)
        y = torch.where(w > 0, y, torch.zeros_like(y))              # never let a NaN target in
        se = (mean - y).square()
        mse = (se * w).sum() / n
        if var is None:
            return LossOutput(mse, {"mse": mse.detach()})
        nll = ((0.5 * (var.log() + se / var + math.log(2 * math.pi))) * w).sum() / n
        return LossOutput(nll, {"nll": nll.detach(), "mse": mse.detach()})

    @torch.no_grad()
    def predict(self, batch: IrregularBatch, n_samples: int | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
        """Logits ``log mean_k softmax(logits_k)`` over ``n_samples`` paths (default
        ``cfg.n_eval_samples``), or the mean forecast ``(batch, n_target, C)``."""
        n = (self.cfg.n_eval_samples if n_samples is None else n_samples) if self.cfg.is_sde else 1
        out = self(batch, n, generator=generator)
        if self.cfg.task == "classification":
            return torch.logsumexp(out.log_softmax(-1), 0) - math.log(n)
        return self._split(out)[0].mean(0)

    def sample(self, batch: IrregularBatch, n_samples: int = 1, *,
               generator: torch.Generator | None = None) -> Tensor:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if self.cfg.is_sde:
            out = self(batch, n_samples, generator=generator)
        else:
            one = self(batch, 1, generator=generator)
            out = one.expand(n_samples, *one.shape[1:])
        if self.cfg.task == "classification":
            return out
        mean, var = self._split(out)
        if var is None:
            return mean
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + var.sqrt() * eps
