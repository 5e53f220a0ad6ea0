"""The main job (``sciflow demo``): a walk through sciflow in a few CPU minutes, one step at a time.

Steps (:data:`STEPS`; each runs alone with ``sciflow demo --step NAME``, all run by default):

``lorenz_ensemble``
    Chaotic dynamics learned end to end, with honest uncertainty (writes into the run folder
    itself, as it always has):

    1. **Data.** Lorenz-63 trajectories (σ=10, ρ=28, β=8/3) generated in-process by
       ``sciflow.data.pdes.lorenz`` (tight-tolerance Tsit5 on the shared solvers), split by
       trajectory into train / calibration / test.
    2. **Model.** A deep ensemble (Lakshminarayanan et al. 2017) of neural ODEs (Chen et al. 2018)
       ``dz/dt = f_θ(z)``, each trained by :func:`sciflow.training.fit` from its own seed on short
       windows (RK4 on the observation grid), with checkpoints and JSONL logs per member.
    3. **Uncertainty.** Forecasts from held-out initial conditions over about one Lyapunov time
       (λ₁ ≈ 0.9, so errors grow ~e-fold per time unit): the ensemble spread, wrapped in split
       conformal intervals (Vovk et al. 2005; Lei et al. 2018) calibrated per lead time and
       component on the calibration trajectories, so the band has ≥ 1 − α marginal coverage on
       exchangeable test windows.
    4. **Outputs**: ``metrics.json`` (RMSE per lead time vs. persistence, interval coverage and
       width, CRPS), ``config.yaml``, ``member_*/checkpoints``, ``plots/`` (``forecast.png``,
       ``error.png``, ``coverage.png``).

``causal_pinn_burgers``
    A PDE solved without data: viscous Burgers ``u_t + u u_x = (0.01/π) u_xx`` on ``[-1, 1]``,
    ``u(x, 0) = -sin(πx)``, by a causal PINN (Wang, Sankaran & Perdikaris 2022, eq. 3.4: the
    residual of time chunk ``i`` is weighted by ``exp(-ε Σ_{k<i} L_k)``), compared with the
    reference solution ``burgers_shock.mat`` (relative L2). Writes ``causal_pinn_burgers/``
    (``metrics.json``, ``solution.png``, ``causal_weights.png``, ``losses.png``).

``wdno_burgers``
    A wavelet diffusion neural operator (Hu et al., ICLR 2025) as a generative surrogate of forced
    Burgers, with the 5–95 % band of its samples; relative L2 of the ensemble mean vs persistence,
    CRPS and band coverage. Writes ``wdno_burgers/``.

``stable_sde_irregular``
    An irregular, partly missing time series (Lorenz-63 at random times, 30 % of the values
    missing) forecast with a predictive distribution by a stable neural SDE (LNSDE, Oh, Lim &
    Kim, ICLR 2024); CRPS vs persistence and 90 % coverage. Writes ``stable_sde_irregular/``.

Every step writes its own ``metrics.json``; the run folder gets ``report.md`` (metrics tables
and plots of the steps run, newest run of each step) and ``metrics.json`` with a ``steps``
summary. ``quick=True`` is a ~20 s-per-step smoke run.

Modules: one per step (:mod:`~sciflow.demo.lorenz`, :mod:`~sciflow.demo.pinn`, :mod:`~sciflow.demo.wdno`,
:mod:`~sciflow.demo.stable_sde`) and :mod:`~sciflow.demo.steps` (the registry, the report, :func:`run_demo`).
"""

from sciflow.demo.lorenz import demo_experiment, run_lorenz_ensemble
from sciflow.demo.pinn import pinn_config, run_causal_pinn_burgers
from sciflow.demo.stable_sde import run_stable_sde_irregular
from sciflow.demo.steps import STEPS, Step, run_demo, write_report
from sciflow.demo.wdno import run_wdno_burgers

__all__ = ["STEPS", "Step", "demo_experiment", "pinn_config", "run_causal_pinn_burgers", "run_demo",
           "run_lorenz_ensemble", "run_stable_sde_irregular", "run_wdno_burgers", "write_report"]
