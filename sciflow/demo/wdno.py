"""Demo step ``wdno_burgers``: a WDNO surrogate of forced Burgers with an uncertainty band."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from sciflow.demo._common import _plt, _write_json


def run_wdno_burgers(out_dir: str | Path, *, quick: bool = False, seed: int = 0, threads: int | None = 1,
                     **_: Any) -> dict[str, Any]:
    """Step ``wdno_burgers``: a generative surrogate of forced Burgers with an uncertainty band.

    Data: ``sciflow.data.pdes.burgers.generate_control`` (``u_t + u u_x = 0.01 u_xx + f``,
    ``x ∈ [0, 1]``, zero Dirichlet data, Gaussian-bump ``u0`` and space–time Gaussian forcing),
    17 x 33 (time x space). Model: WDNO (Hu et al., ICLR 2025) in the simulation task — given
    ``u(t=0)`` and the forcing ``f``, a DDPM over the one-level wavelet coefficients of the whole
    trajectory generates ``u`` (v-prediction loss, the family default; DDIM sampling; the zero
    Dirichlet data imposed on the samples). An ensemble of generated
    trajectories per test condition gives the mean and the 5–95 % band; scored by relative L2
    of the mean, CRPS and the band's coverage. Small U-Net and budget (a CPU minute); the
    paper-sized run is ``benchmarks/wdno_burgers.py --scale gpu``.
    """
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.data.pdes.burgers import generate_control
    from sciflow.models.wavelet_diffusion import WDNO, Config
    from sciflow.uq.scores import crps_ensemble, interval_coverage

    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_test = (24, 4) if quick else (96, 8)
    steps, n_samples, nfe = (30, 4, 4) if quick else (400, 16, 10)
    t0 = time.perf_counter()
    ds = generate_control(n_train + n_test, seed, nx=33, nt=17, n_modes=64, dt=2e-3)
    u = torch.tensor(ds.u.values, dtype=torch.float32)
    f = torch.tensor(ds.forcing.values, dtype=torch.float32)
    times = torch.tensor(ds.time.values, dtype=torch.float32)
    train_b = TrajectoryBatch(u[:n_train], times, f[:n_train])
    test_b = TrajectoryBatch(u[n_train:], times, f[n_train:])
    data_s = time.perf_counter() - t0

    torch.manual_seed(seed)  # the U-Net's initial weights
    model = WDNO(Config(task="simulation", space="wavelet", base_channels=16, channel_mults=(1, 2),
                        num_res_blocks=1, groups=4, num_heads=2, zero_boundary=True))
    model.fit_scaler(train_b)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (16,), generator=g)
        loss = model.loss(train_b.index(idx), generator=g).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        samples = model.sample(test_b, n_samples, nfe=nfe, generator=torch.Generator().manual_seed(seed + 1))
    fut, true = samples[:, :, 1:], test_b.values[:, 1:]  # frame 0 is given
    mean = fut.mean(0)
    lo, hi = torch.quantile(fut, 0.05, dim=0), torch.quantile(fut, 0.95, dim=0)
    rel = ((mean - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)).mean()
    # the "no dynamics" reference: persistence of the given initial state
    persist = ((test_b.values[:, :1] - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1)).mean()
    metrics = {
        "task": "forced Burgers: u(t) from u(0) and f by a wavelet diffusion neural operator",
        "rel_l2_ensemble_mean": float(rel), "rel_l2_persistence": float(persist),
        "crps": float(crps_ensemble(fut, true, fair=True)), "coverage_90": float(interval_coverage(lo, hi, true)),
        "n_samples": n_samples, "nfe": nfe, "train_steps": steps, "first_loss": losses[0], "last_loss": losses[-1],
        "n_train": n_train, "n_test": n_test, "grid": list(u.shape[1:]), "data_s": data_s, "train_s": train_s,
    }
    plt = _plt()
    x = ds.x.values
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, k in zip(axes, (len(times) // 4, len(times) // 2, len(times) - 1)):
        ax.fill_between(x, lo[0, k - 1], hi[0, k - 1], color="C0", alpha=0.3, label="5-95 % of generated")
        ax.plot(x, mean[0, k - 1], color="C0", label="WDNO ensemble mean")
        ax.plot(x, test_b.values[0, k], "k--", label="solver")
        ax.set_title(f"t = {float(times[k]):.2f}")
        ax.set_xlabel("x")
    axes[0].set_ylabel("u")
    axes[0].legend(fontsize=8)
    fig.suptitle("WDNO surrogate of forced Burgers (held-out u0 and forcing)")
    p1 = out / "wdno_band.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, img, name in zip(axes, (test_b.values[0], samples[0, 0], (hi - lo)[0]),
                             ("solver u(t, x)", "one WDNO sample", "band width (5-95 %)")):
        im = ax.imshow(img.T.numpy(), origin="lower", aspect="auto", extent=[0, float(times[-1]), 0, 1])
        ax.set_title(name)
        ax.set_xlabel("t")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("x")
    p2 = out / "wdno_trajectory.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    metrics["plots"] = [str(p1), str(p2)]
    _write_json(metrics, out / "metrics.json")
    print(f"[demo] WDNO on forced Burgers: rel. L2 of the ensemble mean {metrics['rel_l2_ensemble_mean']:.3g} "
          f"(persistence {metrics['rel_l2_persistence']:.3g}), 90 % band coverage {metrics['coverage_90']:.2f}")
    return metrics


