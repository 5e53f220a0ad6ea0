"""Every family on a CUDA device: losses and samples stay on the device, gradients are finite,
deterministic computations agree with the CPU in float64. Run by ``benchmarks/gpu_check.sh``
(``pytest -m gpu``); skipped where torch sees no CUDA device (tests/conftest.py).

They catch device mismatches (a tensor created on the CPU inside a model, a CPU generator fed
to CUDA sampling) that only a GPU shows. ``SCIFLOW_TEST_DEVICE`` picks another device for checking
this module itself: ``SCIFLOW_TEST_DEVICE=cpu pytest -m gpu`` runs them on the CPU.
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

pytestmark = pytest.mark.gpu
DEV = torch.device(os.environ.get("SCIFLOW_TEST_DEVICE", "cuda"))


def _on_device(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.device.type == DEV.type, f"tensor on {t.device}, expected {DEV}"


def _grads_finite(model: torch.nn.Module) -> None:
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, "no parameter received a gradient"
    for g in grads:
        _on_device(g)
        assert torch.isfinite(g).all()


def test_odeint_dopri5_matches_cpu_and_adjoint_gradients_on_device() -> None:
    from sciflow.solvers import BacksolveAdjoint, Dopri5, odeint

    def f(t, y):
        return torch.stack([10 * (y[..., 1] - y[..., 0]), y[..., 0] * (28 - y[..., 2]) - y[..., 1],
                            y[..., 0] * y[..., 1] - 8 / 3 * y[..., 2]], -1)

    y0 = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 0.5, 20.0]], dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    ref = odeint(f, y0, t, solver=Dopri5(), rtol=1e-9, atol=1e-9)
    got = odeint(f, y0.to(DEV), t.to(DEV), solver=Dopri5(), rtol=1e-9, atol=1e-9)
    _on_device(got)
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-7, atol=1e-7)
    # adjoint gradient w.r.t. y0 agrees with backpropagation through the solver
    y = y0.to(DEV).requires_grad_()
    (g_direct,) = torch.autograd.grad(odeint(f, y, t.to(DEV), solver=Dopri5(), rtol=1e-9, atol=1e-9)[-1].sum(), y)
    y = y0.to(DEV).requires_grad_()
    (g_adj,) = torch.autograd.grad(odeint(f, y, t.to(DEV), solver=Dopri5(), rtol=1e-9, atol=1e-9,
                                          adjoint=BacksolveAdjoint())[-1].sum(), y)
    _on_device(g_adj)
    torch.testing.assert_close(g_adj, g_direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["euler_maruyama", "torchsde"])
def test_sdeint_on_device_with_a_device_generator(method: str) -> None:
    """Both fixed-step paths draw from a generator on the device (the torchsde one seeds its Brownian
    interval there: an H200 run failed with "Expected a 'cpu' device type for generator")."""
    from sciflow.solvers import EulerMaruyama, TorchSDE, sdeint

    # Ornstein-Uhlenbeck dX = -X dt + 0.5 dW: E X(1) = x0 e^-1, Var X(1) = 0.125 (1 - e^-2)
    n = 20000
    x0 = torch.ones(n, 1, dtype=torch.float64, device=DEV)
    t = torch.linspace(0, 1, 2, dtype=torch.float64, device=DEV)
    g = torch.Generator(device=DEV).manual_seed(0)
    solver = EulerMaruyama() if method == "euler_maruyama" else TorchSDE("euler")
    xs = sdeint(lambda t, x: -x, lambda t, x: 0.5 * torch.ones_like(x), x0, t, solver=solver, dt=1e-2, generator=g)
    _on_device(xs)
    x1 = xs[-1, :, 0]
    assert abs(float(x1.mean()) - math.exp(-1)) < 0.01
    assert abs(float(x1.var()) - 0.125 * (1 - math.exp(-2))) < 0.01


def test_reversible_adjoint_on_device_matches_backprop() -> None:
    """The reversible Heun adjoint on the device: the gradients of backprop through the same steps."""
    from torch import nn

    from sciflow.solvers import ReversibleAdjoint, ReversibleHeun, sdeint

    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4)).double().to(DEV)
    g = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4)).double().to(DEV)
    y0 = torch.randn(8, 4, dtype=torch.float64, device=DEV)
    t = torch.linspace(0, 1, 3, dtype=torch.float64, device=DEV)
    grads = []
    for adjoint in (None, ReversibleAdjoint([*f.parameters(), *g.parameters()])):
        ys = sdeint(lambda t, y: f(y), lambda t, y: 0.2 * torch.sigmoid(g(y)), y0, t, solver=ReversibleHeun(),
                    dt=0.02, generator=torch.Generator(DEV).manual_seed(1), adjoint=adjoint)
        _on_device(ys)
        grads.append(torch.autograd.grad(ys[-1].square().sum(), [*f.parameters(), *g.parameters()]))
    for a, b in zip(*grads):
        _on_device(a)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_adaptive_sdeint_with_a_device_generator() -> None:
    """The adaptive solve seeds its virtual Brownian tree from a generator on the device (the same CPU
    draw from a CUDA generator as the torchsde path's). Itô GBM dy = 0.5 y dt + 0.2 y dW: E y(1) = e^0.5."""
    from sciflow.solvers import Milstein, PIController, sdeint

    n = 4000
    y0 = torch.ones(n, 1, dtype=torch.float64, device=DEV)
    g = torch.Generator(device=DEV).manual_seed(0)
    ys = sdeint(lambda t, y: 0.5 * y, lambda t, y: 0.2 * y, y0, [0.0, 1.0], solver=Milstein(),
                controller=PIController(rtol=1e-3, atol=1e-3), generator=g)
    _on_device(ys)
    assert abs(float(ys[-1].mean()) - math.exp(0.5)) < 0.03


def test_causal_pinn_loss_matches_cpu() -> None:
    from sciflow.models.causal_pinn import CausalPINN, Config

    torch.manual_seed(0)
    cfg = Config(problem="allen_cahn", architecture="modified_mlp", width=16, depth=2, n_interior=128,
                 n_chunks=8, n_initial=32, fourier_features=8)
    model = CausalPINN(cfg).double()
    batch = model.problem.sample(128, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = model.loss(batch).total
    model.to(DEV)
    out = model.loss(batch.to(DEV) if hasattr(batch, "to") else batch)
    _on_device(out.total)
    torch.testing.assert_close(out.total.cpu(), ref, rtol=1e-9, atol=1e-12)
    out.total.backward()
    _grads_finite(model)


def test_stable_sde_classification_step_on_device() -> None:
    from sciflow.data.batches import IrregularBatch
    from sciflow.models.stable_sde import Config, StableSDE

    g = torch.Generator().manual_seed(0)
    n, T = 8, 12
    t = torch.sort(torch.rand(n, T, generator=g), 1).values * 4 + torch.arange(T) * 1e-3
    x = torch.randn(n, T, 2, generator=g)
    m = torch.rand(n, T, 2, generator=g) > 0.3
    m[:, 0] = True
    batch = IrregularBatch(torch.where(m, x, torch.zeros(())), t, m, labels=torch.arange(n) % 2).to(DEV)
    for kind in ("lsde", "lnsde", "gsde"):
        model = StableSDE(Config(kind=kind, input_channels=2, hidden_dim=8, n_classes=2)).to(DEV)
        out = model.loss(batch)
        _on_device(out.total)
        out.total.backward()
        _grads_finite(model)


def test_wdno_loss_and_sampling_stay_on_device() -> None:
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.models.wavelet_diffusion import WDNO, Config

    g = torch.Generator().manual_seed(0)
    u, f = torch.randn(4, 9, 17, generator=g), torch.randn(4, 9, 17, generator=g)
    b = TrajectoryBatch(u, torch.linspace(0, 1, 9), f)
    m = WDNO(Config(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, num_heads=2))
    m.fit_scaler(b)
    m.to(DEV)
    bd = b.to(DEV)
    out = m.loss(bd)
    _on_device(out.total)
    out.total.backward()
    _grads_finite(m)
    with torch.no_grad():
        s = m.eval().sample(bd, 2, nfe=4, generator=torch.Generator(device=DEV).manual_seed(1))
    _on_device(s)
    assert s.shape == (2, 4, 9, 17) and torch.isfinite(s).all()
    torch.testing.assert_close(s[:, :, 0], bd.values[None, :, 0].expand(2, -1, -1))  # replaced initial state


def test_wdno_control_guidance_through_the_differentiable_solver_on_device() -> None:
    """The wdno_burgers benchmark's guided control on the device: ``burgers_simulator`` (ETDRK4 under
    the bilinear ``grid_forcing`` interpolants, whose time grid stays on the host and space grid on the
    forcing's device) matches the CPU in float64, value and gradient w.r.t. the forcing (the
    adjoint-descent baseline's step); guided sampling through ``ResimulatedObjective`` stays on the
    device and the guidance reaches the generated forcing."""
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.data.pdes.burgers import generate_control
    from sciflow.models.wavelet_diffusion import WDNO, Config, ResimulatedObjective, burgers_simulator

    ds = generate_control(3, 0, nx=17, nt=9, n_modes=32, dt=5e-3)
    u, f = torch.tensor(ds.u.values), torch.tensor(ds.forcing.values)  # float64 (3, 9, 17)
    t, x = torch.tensor(ds.time.values), torch.tensor(ds.x.values)
    solver = dict(nu=0.01, n_modes=16, dt=5e-2)
    outs = []
    for dev in (torch.device("cpu"), DEV):
        fv = f.unsqueeze(1).to(dev).requires_grad_(True)
        traj = burgers_simulator(u[:, 0].to(dev), t, x, **solver)(fv)  # (3, 1, 9, 17)
        (g,) = torch.autograd.grad((traj[:, 0, -1] - u[:, -1].to(dev)).pow(2).sum(), fv)
        outs.append((traj, g))
    _on_device(*outs[1])
    assert torch.isfinite(outs[0][1]).all() and outs[0][1].abs().max() > 0
    torch.testing.assert_close(outs[1][0].cpu(), outs[0][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(outs[1][1].cpu(), outs[0][1], rtol=1e-8, atol=1e-12)

    torch.manual_seed(0)
    m = WDNO(Config(task="control", base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, num_heads=2))
    b = TrajectoryBatch(u.float(), t.float(), f.float())
    m.fit_scaler(b)
    m.to(DEV).eval()
    objective = ResimulatedObjective(burgers_simulator(u[:, 0].to(DEV), t, x, **solver), u[:, -1:].float().to(DEV),
                                     weight=0.01)
    draws = [m.generate(b.to(DEV), 2, nfe=3, guidance=objective, guidance_scale=w, exact_known=False,
                        generator=torch.Generator(device=DEV).manual_seed(1)) for w in (0.0, 100.0)]
    for d in draws:
        _on_device(d.state, d.forcing)
        assert d.forcing.shape == (2, 3, 9, 17) and torch.isfinite(d.forcing).all()
    assert (draws[1].forcing - draws[0].forcing).abs().max() > 1e-6  # the solver's gradient reached f


def test_navier_stokes_generate_on_device_matches_cpu() -> None:
    """``navier_stokes.generate(device=...)`` (the wdno_navier_stokes benchmark solves its data on the
    GPU): chunked solves on the device, the dataset (forcing included) assembled on the host,
    equal to the CPU's in float64."""
    from sciflow.data.pdes import navier_stokes

    kw = dict(setting="fno", nu=1e-3, resolution=16, t_final=0.2, nt=3, dt=2e-2, stride=2, batch_size=2)
    ref = navier_stokes.generate(3, 0, **kw)
    got = navier_stokes.generate(3, 0, device=DEV, **kw)
    for var in ("vorticity", "forcing"):
        assert got[var].shape == ref[var].shape
        torch.testing.assert_close(torch.as_tensor(got[var].values), torch.as_tensor(ref[var].values),
                                   rtol=1e-9, atol=1e-11)


def test_cli_train_and_evaluate_on_device(tmp_path) -> None:
    import json

    from sciflow.cli import main

    tiny = ["data.params.n=8", "data.params.n_time=40", "data.window=5", "data.stride=5", "data.batch_size=8",
            "train.max_steps=4", "train.eval_every=2", "train.log_every=2", "train.progress=false",
            "train.warmup_steps=0", "eval.horizon=10", "model.width=8", f"train.device={DEV.type}"]
    run = tmp_path / "run"
    assert main(["train", "lorenz_neural_ode", "--run-dir", str(run), *tiny]) == 0
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads(next(run.rglob("eval*.json")).read_text())
    assert metrics


def test_batch_round_trip_to_the_host_is_complete() -> None:
    """``batch.to("cpu")`` of a device batch holds the values once it returns (a non-blocking
    device-to-host copy into pageable memory may still be in flight when read)."""
    from sciflow.data.batches import TrajectoryBatch

    g = torch.Generator(device=DEV).manual_seed(0)
    for _ in range(3):
        b = TrajectoryBatch(torch.randn(2048, 64, 256, device=DEV, generator=g), torch.arange(64.0, device=DEV))
        host = b.to("cpu")
        torch.testing.assert_close(host.values, b.values.cpu(), rtol=0, atol=0)


def test_causal_pinn_march_checkpoint_resume_on_device(tmp_path) -> None:
    """Time marching with checkpoints on the device: a run stopped inside the second of two
    windows (Adam, then an L-BFGS finish) and resumed from its newest checkpoint file (loaded to
    the host, as ``sciflow train --resume`` does) ends with the uninterrupted run's parameters."""
    from sciflow.models.causal_pinn import Config, march
    from sciflow.training.checkpoint import CheckpointManager

    cfg = Config(problem="burgers", width=8, depth=2, n_interior=64, n_chunks=8, n_initial=16, n_boundary=16,
                 steps=6, lbfgs_steps=4, check_every=3, time_windows=2, dtype="float64")
    ref = march(cfg, device=DEV)
    ckpts = CheckpointManager(tmp_path)

    class Stop(Exception):
        pass

    def save(state: dict) -> None:
        ckpts.save(state)
        if state["step"] == 13:
            raise Stop

    with pytest.raises(Stop):
        march(cfg, device=DEV, checkpoint_every=1, on_checkpoint=save)
    state, _ = ckpts.load_latest()
    resumed = march(cfg, device=DEV, checkpoint_every=1, on_checkpoint=ckpts.save, resume_state=state)
    for a, b in zip(ref.models, resumed.models):
        for k, v in a.state_dict().items():
            _on_device(v)
            assert torch.equal(v, b.state_dict()[k]), k


def test_mfm_train_checkpoint_resume_on_device(tmp_path) -> None:
    """Meta flow matching trained on the device (a device generator draws the flow-matching times):
    a run stopped after the checkpoint of step 4 and resumed from the file ends with the
    uninterrupted run's parameters, history and selected state."""
    from sciflow.data.batches import PopulationBatch
    from sciflow.models.meta_flow_matching import Config, TrainConfig, init_model, predict, train
    from sciflow.training.checkpoint import CheckpointManager
    from sciflow.uq.distances import mean_population_metrics

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 32, 2, generator=g)
    data = PopulationBatch(source=x0, target=-x0 + 0.1 * torch.randn(8, 32, 2, generator=g),
                           population_id=torch.arange(8))
    val = data.index(slice(0, 2)).to(DEV)
    cfg = Config(knn_k=4, gnn_hidden=8, embedding_dim=8, field_width=16, field_depth=2, time_embedding_dim=8,
                 fourier_features=8, solver="rk4", nfe=4, coupling="sinkhorn")
    tc = TrainConfig(steps=8, lr=3e-3, populations_per_step=4, points_per_population=16, eval_every=2,
                     selection="best_val", augment_rotation=True)

    def validate(m):
        pred = predict(m, val)
        _on_device(pred)
        return mean_population_metrics(pred.cpu(), val.target.cpu())["W2"]

    ref = init_model(cfg, 0)
    ref_res = train(ref, data, tc, validate=validate, device=DEV)
    ckpts = CheckpointManager(tmp_path)

    class Stop(Exception):
        pass

    def save(state: dict) -> None:
        ckpts.save(state)
        if state["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        train(init_model(cfg, 0), data, tc, validate=validate, device=DEV, checkpoint_every=2, on_checkpoint=save)
    state, _ = ckpts.load_latest()
    model = init_model(cfg, 1)
    res = train(model, data, tc, validate=validate, device=DEV, checkpoint_every=2, on_checkpoint=ckpts.save,
                resume_state=state)
    # bit for bit on the CPU; on CUDA to the float rounding of the gather's backward (index_select's
    # gradient is an atomic index_add, whose summation order varies from run to run)
    tol = dict(rtol=0.0, atol=0.0) if DEV.type == "cpu" else dict(rtol=1e-5, atol=1e-6)
    for key in ("train_loss", "val"):
        torch.testing.assert_close([h[key] for h in res.history], [h[key] for h in ref_res.history], **tol)
    assert res.best_step == ref_res.best_step
    for k, v in ref.state_dict().items():
        _on_device(v)
        torch.testing.assert_close(v, model.state_dict()[k], **tol, msg=k)


def test_superres_cli_train_and_evaluate_on_device(tmp_path) -> None:
    import json

    from sciflow.cli import main

    tiny = ["data.params.n=12", "data.params.nx=17", "data.params.nt=9", "data.params.n_modes=32",
            "data.params.dt=0.005", "train.max_steps=3", "train.warmup_steps=0", "train.progress=false",
            "model.base_channels=8", "eval.n_samples=3", f"train.device={DEV.type}"]
    run = tmp_path / "sr"
    assert main(["train", "wdno_burgers_superres", "--run-dir", str(run), *tiny]) == 0
    assert main(["evaluate", str(run)]) == 0
    m = json.loads((run / "eval_samples.json").read_text())
    assert m["factor"] == 4 and all(math.isfinite(c["mse"]) for c in m["channels"].values())


def _conjugate_regression():
    """y = x A + 0.3 e with x, y in R^2 (64 rows), prior N(0, 1) on the weights and bias of a linear
    map: the features with a bias column, the posterior covariance and the posterior mean
    ``(outputs, inputs + bias)`` (nn.Linear's weight rows, then bias)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64) + 0.3 * torch.randn(64, 2, generator=g,
                                                                                               dtype=torch.float64)
    Phi = torch.cat([x, torch.ones(64, 1, dtype=torch.float64)], 1)
    C = torch.linalg.inv(Phi.T @ Phi / 0.09 + torch.eye(3, dtype=torch.float64))
    return x, y, Phi, C, (C @ Phi.T @ y / 0.09).T


@pytest.mark.parametrize("mass_matrix", ["diag", "dense", "low_rank"])
def test_hmc_on_device_with_a_device_generator(mass_matrix: str) -> None:
    """HMC chains (vmapped) on the device, every draw from a device generator, in float64: draws,
    adapted mass matrix and step sizes stay there, and the posterior mean of a conjugate linear
    regression comes out within 4 Monte-Carlo standard errors."""
    from torch import nn

    from sciflow.data.batches import TrajectoryBatch
    from sciflow.uq import HMC, GaussianLikelihood, GaussianPrior, PointForecaster
    from sciflow.uq.diagnostics import ess_basic

    x, y, Phi, C, M = _conjugate_regression()
    mean = torch.cat([M[:, :2].reshape(-1), M[:, 2]])
    sd = torch.cat([C.diagonal()[:2].sqrt().repeat(2), C.diagonal()[2].sqrt().expand(2)])
    batch = TrajectoryBatch(torch.stack([x, y], 1), torch.tensor([0.0, 1.0], dtype=torch.float64)).to(DEV)
    torch.manual_seed(0)
    model = PointForecaster(nn.Linear(2, 2)).double().to(DEV)
    hmc = HMC(model, GaussianPrior(1.0), GaussianLikelihood(0.3), [batch])
    res = hmc.run(n_samples=200, n_warmup=200, n_chains=4, n_leapfrog=6, mass_matrix=mass_matrix,
                  generator=torch.Generator(DEV).manual_seed(0))
    _on_device(res.samples, res.inv_mass, res.step_size, res.log_prob)
    assert torch.isfinite(res.samples).all() and int(res.divergences.sum()) == 0
    flat = res.samples.reshape(-1, 6).cpu()
    ess = ess_basic(res.samples.cpu()).clamp(max=flat.shape[0])
    assert ((flat.mean(0) - mean).abs() / (sd / ess.sqrt())).max() < 4
    pred = hmc.predict(batch, generator=torch.Generator(DEV).manual_seed(1), max_draws=100)
    _on_device(pred.samples)


def test_last_layer_laplace_on_device_matches_the_conjugate_posterior() -> None:
    """Last-layer Laplace of a linear model on the device with a device generator: the predictive
    variance of the conjugate Bayesian linear regression (prior precision 1, noise 0.09)."""
    from torch import nn

    from sciflow.data.batches import TrajectoryBatch
    from sciflow.uq import LastLayerLaplace, PointForecaster

    x, y, Phi, C, M = _conjugate_regression()
    model = PointForecaster(nn.Linear(2, 2)).double()
    with torch.no_grad():
        model.net.weight.copy_(M[:, :2])
        model.net.bias.copy_(M[:, 2])
    model = model.to(DEV)
    batch = TrajectoryBatch(torch.stack([x, y], 1), torch.tensor([0.0, 1.0], dtype=torch.float64)).to(DEV)
    lap = LastLayerLaplace(model, prior_precision=1.0, observation_noise=0.09, n_samples=50).fit([batch])
    pred = lap.predict(batch, generator=torch.Generator(DEV).manual_seed(0))
    _on_device(pred.mean, pred.variance, pred.samples, pred.lower)
    var = (Phi @ C * Phi).sum(1) + 0.09
    torch.testing.assert_close(pred.variance[:, 0].cpu(), var[:, None].expand(-1, 2), rtol=1e-10, atol=0)
    torch.testing.assert_close(pred.mean[:, 0].cpu(), Phi @ M.T, rtol=1e-10, atol=1e-12)


def test_linearized_laplace_through_an_ode_solve_on_device_matches_cpu() -> None:
    """Linearised Laplace over the last layer of a neural ODE's field (forward-mode Jacobian
    columns vmapped through the solve), one noise per lead time, the given step left out and the
    noise fitted on held-out windows: on the device with a device generator, equal to the CPU."""
    from sciflow.data.batches import TrajectoryBatch
    from sciflow.models.neural_ode.config import Config
    from sciflow.models.neural_ode.model import NeuralODE
    from sciflow.uq import LinearizedLaplace

    g = torch.Generator().manual_seed(0)
    times = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    windows = [TrajectoryBatch(torch.randn(8, 6, 3, generator=g, dtype=torch.float64), times) for _ in range(2)]
    torch.manual_seed(0)
    cpu_model = NeuralODE(Config(width=8, depth=1, solver="rk4")).double()
    forecast = lambda b, p: torch.arange(p.shape[1], device=p.device)[None, :, None].expand_as(p) > 0  # noqa: E731
    out = []
    for dev in (torch.device("cpu"), DEV):
        model = copy.deepcopy(cpu_model).to(dev)
        train, val = (w.to(dev) for w in windows)
        lap = LinearizedLaplace(model, noise_dims=(1,), n_samples=20).fit([train], forecast).fit_noise([val], forecast)
        pred = lap.predict(val, generator=torch.Generator(dev).manual_seed(0))
        _on_device(*(() if dev.type == "cpu" else (pred.mean, pred.variance, pred.samples, lap.root, lap.noise)))
        out.append((pred.variance.cpu(), lap.noise.cpu(), lap.prior_precision))
    (var_cpu, noise_cpu, lam_cpu), (var_dev, noise_dev, lam_dev) = out
    torch.testing.assert_close(var_dev, var_cpu, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(noise_dev, noise_cpu, rtol=1e-8, atol=0)
    assert noise_cpu[0] == 0 and bool((noise_cpu[1:] > 0).all())      # the given step: no noise
    assert abs(lam_dev / lam_cpu - 1) < 1e-8


def test_swag_on_device_with_a_device_generator() -> None:
    """SWAG's SGD phase, its moments and its vmapped draws stay on the device."""
    from torch import nn

    from sciflow.data.batches import TrajectoryBatch
    from sciflow.uq import SWAG, PointForecaster

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = torch.tanh(x) + 0.1 * torch.randn(64, 2, generator=g)
    batches = [TrajectoryBatch(torch.stack([x[i::4], y[i::4]], 1), torch.tensor([0.0, 1.0])).to(DEV) for i in range(4)]
    torch.manual_seed(0)
    model = PointForecaster(nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))).to(DEV)
    swag = SWAG(model, rank=4, n_samples=16, observation_noise=0.01).fit(batches, steps=40, lr=0.05, collect_every=4)
    _on_device(swag.mean, swag.diag, swag.deviations)
    pred = swag.predict(batches[0], generator=torch.Generator(DEV).manual_seed(0))
    _on_device(pred.mean, pred.samples, pred.lower)
    assert pred.samples.shape == (16, 16, 1, 2) and bool(torch.isfinite(pred.samples).all())
    assert float(pred.samples.var(0).mean()) > 0.005          # the noise variance 0.01, plus the weights'


@pytest.mark.parametrize("dtaci", [False, True])
def test_adaptive_conformal_on_device_matches_cpu(dtaci: bool) -> None:
    """ACI's per-step quantiles and level updates (and DtACI's weights) run on the device with no
    host round trip per step and issue the CPU's intervals (ACI: exactly; DtACI's exponentials
    may differ in the last bit)."""
    from sciflow.uq import AbsoluteResidual, AdaptiveConformal, Prediction
    from sciflow.uq.adaptive_conformal import DTACI_GAMMAS

    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 4, 5, generator=g, dtype=torch.float64)
    y[150:] *= 3
    pred = Prediction(torch.zeros_like(y))
    gamma = DTACI_GAMMAS if dtaci else 0.02
    ref = AdaptiveConformal(0.1, gamma, AbsoluteResidual(), delay=2).run(pred, y)
    res = AdaptiveConformal(0.1, gamma, AbsoluteResidual(), delay=2).run(pred.to(DEV), y.to(DEV))
    _on_device(res.lower, res.upper, res.alpha_t, res.miscovered)
    tol = 1e-9 if dtaci else 0.0
    torch.testing.assert_close(res.alpha_t.cpu(), ref.alpha_t, rtol=tol, atol=tol)
    assert (res.miscovered.cpu() != ref.miscovered).double().mean() <= (1e-3 if dtaci else 0.0)
    if not dtaci:
        torch.testing.assert_close(res.upper.cpu(), ref.upper, rtol=0, atol=0)


def test_quantile_tracking_on_device_matches_cpu() -> None:
    """Quantile tracking (calibrated on the host, run on the device) keeps its thresholds on the
    device and issues the CPU's thresholds and errors."""
    from sciflow.uq import AbsoluteResidual, Prediction, QuantileTracker

    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 4, 5, generator=g, dtype=torch.float64)
    y[150:] *= 3
    pred = Prediction(torch.zeros_like(y))
    cal = torch.randn(50, 4, 5, generator=g, dtype=torch.float64).abs()
    ref = QuantileTracker(0.1, 0.05, AbsoluteResidual(), delay=2).calibrate_scores(cal).run(pred, y)
    qt = QuantileTracker(0.1, 0.05, AbsoluteResidual(), delay=2).calibrate_scores(cal.to(DEV))
    res = qt.run(pred.to(DEV), y.to(DEV))
    _on_device(res.lower, res.upper, res.threshold, res.miscovered, qt.threshold)
    torch.testing.assert_close(res.threshold.cpu(), ref.threshold, rtol=0, atol=1e-12)
    assert torch.equal(res.miscovered.cpu(), ref.miscovered)


def test_conformal_pid_with_scorecaster_on_device_matches_cpu() -> None:
    """Conformal PID (integrator and AR scorecaster; calibrated on the host, run on the device) keeps
    its state on the device and issues the CPU's thresholds."""
    from sciflow.uq import AbsoluteResidual, ARScorecaster, ConformalPID, Prediction

    g = torch.Generator().manual_seed(0)
    t = torch.arange(350, dtype=torch.float64)[:, None, None]
    y = (2 + torch.sin(2 * torch.pi * t / 24)) * torch.randn(350, 4, 5, generator=g, dtype=torch.float64)
    cal, y = y[:50].abs(), y[50:]
    pred = Prediction(torch.zeros_like(y))

    def make():
        return ConformalPID(0.1, 0.05, AbsoluteResidual(), delay=2, ki=1.0, csat=0.5,
                            scorecaster=ARScorecaster(order=1, period=24))

    ref = make().calibrate_scores(cal).run(pred, y)
    pid = make().calibrate_scores(cal)
    res = pid.run(pred.to(DEV), y.to(DEV))
    _on_device(res.lower, res.upper, res.threshold, res.miscovered, pid.threshold, pid.integral, pid.scorecaster.w)
    torch.testing.assert_close(res.threshold.cpu(), ref.threshold, rtol=1e-9, atol=1e-9)
    assert (res.miscovered.cpu() != ref.miscovered).double().mean() <= 1e-3


def test_rodas4_stiff_batch_on_device_matches_cpu_with_gradients() -> None:
    """Rodas4's batched Jacobians (vjp under vmap), LU solves and per-trajectory clocks on the device:
    the same steps and values as on the CPU for trajectories of very different stiffness, and the
    gradient through the solve."""
    from sciflow.solvers import Rodas4, odeint

    lam = torch.tensor([1.0, 1e2, 1e4, 1e6], dtype=torch.float64)

    def f(t, y):  # Prothero-Robinson: y' = -lam (y - cos t) - sin t, exact y = cos t
        return -lam.to(y.device)[:, None] * (y - torch.cos(t)) - torch.sin(t)  # t broadcasts like y

    y0 = torch.ones(4, 1, dtype=torch.float64)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    ref, ref_stats = odeint(f, y0, t, solver=Rodas4(), rtol=1e-7, atol=1e-9, batch_ndim=1, return_stats=True)
    got, stats = odeint(f, y0.to(DEV), t.to(DEV), solver=Rodas4(), rtol=1e-7, atol=1e-9, batch_ndim=1,
                        return_stats=True)
    _on_device(got)
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-9, atol=1e-11)
    assert torch.equal(stats["n_accepted"].cpu(), ref_stats["n_accepted"])
    torch.testing.assert_close(got[-1, :, 0].cpu(), torch.cos(t[-1]).expand(4), rtol=0, atol=1e-5)
    a = torch.tensor(0.5, dtype=torch.float64, device=DEV, requires_grad=True)
    (g,) = torch.autograd.grad(odeint(lambda s, y: -a * y, y0.to(DEV), t.to(DEV), solver=Rodas4(), rtol=1e-9,
                                      atol=1e-12, batch_ndim=1)[-1].sum(), a)
    torch.testing.assert_close(g.cpu(), torch.tensor(-4 * 2 * math.exp(-1.0), dtype=torch.float64), rtol=1e-6, atol=0)


def test_events_on_device_match_cpu_with_gradients() -> None:
    """Per-trajectory event detection, the batched root search and the implicit-function gradient on
    the device: the same event times, states and dt*/dg as on the CPU (free fall, closed form)."""
    from sciflow.solvers import Dopri5, Event, ODETerm, PIController, solve

    def run(device):
        g = torch.tensor(9.81, dtype=torch.float64, device=device, requires_grad=True)
        y0 = torch.tensor([[10.0, 0.0], [5.0, 2.0], [1.0, -1.0]], dtype=torch.float64, device=device)
        sol = solve(ODETerm(lambda t, y: torch.stack([y[..., 1], -g * torch.ones_like(y[..., 1])], -1)), Dopri5(),
                    0.0, 10.0, y0, batch_ndim=1, controller=PIController(rtol=1e-10, atol=1e-12),
                    event=Event(lambda t, y: y[..., 0], direction=-1))
        (dg,) = torch.autograd.grad(sol.event.t.sum(), g)
        return sol, dg

    ref, dg_ref = run("cpu")
    got, dg = run(DEV)
    _on_device(got.event.t, got.event.y, got.event.occurred, got.ys, dg)
    torch.testing.assert_close(got.event.t.detach().cpu(), ref.event.t.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.event.y.detach().cpu(), ref.event.y.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dg.cpu(), dg_ref, rtol=1e-10, atol=0)
    h0, v0 = torch.tensor([10.0, 5.0, 1.0]), torch.tensor([0.0, 2.0, -1.0])
    exact = (v0 + torch.sqrt(v0 ** 2 + 2 * 9.81 * h0)) / 9.81
    torch.testing.assert_close(got.event.t.detach().cpu().float(), exact, rtol=1e-6, atol=0)
    # recorded crossings (non-terminal, several per trajectory) on the device: sin t = 0 at k pi
    from sciflow.solvers import ODETerm as Term
    osc = Term(lambda t, y: torch.stack([y[..., 1], -y[..., 0]], -1))
    y0 = torch.tensor([[0.0, 1.0], [math.sin(0.5), math.cos(0.5)]], dtype=torch.float64, device=DEV)
    sol = solve(osc, Dopri5(), 0.0, 12.0, y0, batch_ndim=1, controller=PIController(rtol=1e-10, atol=1e-12),
                event=Event(lambda t, y: y[..., 0], terminal=False, max_events=3))
    _on_device(sol.event.t, sol.event.occurred)
    k = torch.arange(1, 4, dtype=torch.float64) * math.pi
    torch.testing.assert_close(sol.event.t.cpu(), torch.stack([k, k - 0.5]), rtol=0, atol=1e-9)
    # several events (the device tensors of directions, terminal flags and counts): a terminal stop at
    # the first rise through 0 (2 pi, resp. 2 pi - 0.5) beside recorded zeros of cos (pi/2 + k pi)
    sol = solve(osc, Dopri5(), 0.0, 12.0, y0, batch_ndim=1, controller=PIController(rtol=1e-10, atol=1e-12),
                event=[Event(lambda t, y: y[..., 0], direction=+1),
                       Event(lambda t, y: y[..., 1], terminal=False, max_events=5)])
    rise, zeros = sol.event
    _on_device(rise.t, zeros.t, zeros.occurred, sol.ts)
    torch.testing.assert_close(sol.ts[:, -1].cpu(), torch.tensor([2 * math.pi, 2 * math.pi - 0.5], dtype=torch.float64),
                               rtol=0, atol=1e-9)
    assert zeros.occurred.sum(-1).tolist() == [2, 2]         # two zeros of cos before the stop


def test_events_under_checkpoint_adjoint_on_device_match_direct() -> None:
    """The replay of an event solve with CheckpointAdjoint (grid merge by sorting, gathers of the
    replayed states, the Newton step) on the device: the direct solve's event times and dt*/dg."""
    from sciflow.solvers import CheckpointAdjoint, DirectAdjoint, Dopri5, Event, ODETerm, PIController, SaveAt, solve

    def run(adjoint):
        g = torch.tensor(9.81, dtype=torch.float64, device=DEV, requires_grad=True)
        y0 = torch.tensor([[10.0, 0.0], [5.0, 2.0], [1.0, -1.0]], dtype=torch.float64, device=DEV)
        ts = torch.linspace(0.0, 3.0, 7, dtype=torch.float64, device=DEV)
        sol = solve(ODETerm(lambda t, y: torch.stack([y[..., 1], -g * torch.ones_like(y[..., 1])], -1)), Dopri5(),
                    0.0, 3.0, y0, batch_ndim=1, saveat=SaveAt(ts=ts), adjoint=adjoint,
                    controller=PIController(rtol=1e-10, atol=1e-12), event=Event(lambda t, y: y[..., 0], direction=-1))
        (dg,) = torch.autograd.grad(sol.event.t.sum() + torch.nan_to_num(sol.ys).sum(), g)
        return sol, dg

    ref, dg_ref = run(DirectAdjoint())
    got, dg = run(CheckpointAdjoint(segments=2))
    _on_device(got.event.t, got.event.y, got.ys, got.ts, dg)
    torch.testing.assert_close(got.event.t.detach(), ref.event.t.detach(), rtol=1e-13, atol=1e-13)
    assert torch.equal(got.ys.isnan(), ref.ys.isnan())
    torch.testing.assert_close(torch.nan_to_num(got.ys.detach()), torch.nan_to_num(ref.ys.detach()),
                               rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dg, dg_ref, rtol=1e-8, atol=0)


def test_first_passage_on_device_with_a_device_generator() -> None:
    """SDE first passage with the Brownian-bridge correction on the device (increments and uniform
    draws from a device generator): the exit probability of Brownian motion with drift matches the
    inverse Gaussian law, and everything stays on the device."""
    from scipy.stats import norm

    from sciflow.solvers import Event, first_passage

    n, mu, sig, a = 20_000, 0.5, 1.0, 1.0
    y0 = torch.zeros(n, 1, dtype=torch.float64, device=DEV)
    res = first_passage(lambda t, y: torch.full_like(y, mu), lambda t, y: torch.full_like(y, sig), y0, 0.0, 1.0,
                        Event(lambda t, y: y[:, 0] - a, direction=1), dt=0.25,
                        generator=torch.Generator(device=DEV).manual_seed(0))
    _on_device(res.t, res.y, res.occurred)
    p = norm.cdf((mu - a) / sig) + math.exp(2 * mu * a / sig ** 2) * norm.cdf((-a - mu) / sig)
    assert abs(float(res.occurred.double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    # two barriers (exit from the corridor (0, a) from z = 0.4): the gambler's-ruin probability of the top
    z = 0.4
    res = first_passage(lambda t, y: torch.full_like(y, mu), lambda t, y: torch.full_like(y, sig), y0 + z, 0.0, 4.0,
                        [Event(lambda t, y: y[:, 0], direction=-1), Event(lambda t, y: y[:, 0] - a, direction=1)],
                        dt=0.1, generator=torch.Generator(device=DEV).manual_seed(0))
    _on_device(res.which, res.probabilities)
    p_up = (1 - math.exp(-2 * mu * z / sig ** 2)) / (1 - math.exp(-2 * mu * a / sig ** 2))
    assert abs(float(res.probabilities[:, 1].mean()) - p_up) < 4 * math.sqrt(p_up * (1 - p_up) / n)


def test_gradients_stay_finite_after_an_overflowed_rejected_step_on_device() -> None:
    """The masked loop's re-run of an attempt whose rejected rows overflowed, on the device:
    y' = -k y^3 from 10 with a first step of 1 (its stages overflow; the step is rejected); dy/dk
    equals the closed form -t y^3 and the CPU's, and stays on the device."""
    from sciflow.solvers import Dopri5, ODETerm, PIController, solve

    def run(device):
        k = torch.tensor([1.0, 0.9], dtype=torch.float64, device=device, requires_grad=True)
        sol = solve(ODETerm(lambda t, y: -k.unsqueeze(-1) * y ** 3), Dopri5(), 0.0, 100.0,
                    torch.full((2, 1), 10.0, dtype=torch.float64, device=device), batch_ndim=1,
                    controller=PIController(rtol=1e-8, atol=1e-10, dt0=1.0))
        (dk,) = torch.autograd.grad(sol.ys[-1].sum(), k)
        return sol.ys[-1, :, 0].detach(), dk

    y_ref, dk_ref = run("cpu")
    y, dk = run(DEV)
    _on_device(y, dk)
    exact = (1 / 100.0 + 2 * torch.tensor([1.0, 0.9], dtype=torch.float64) * 100.0) ** -0.5
    torch.testing.assert_close(dk.cpu(), -100.0 * exact ** 3, rtol=1e-5, atol=0)
    torch.testing.assert_close(dk.cpu(), dk_ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(y.cpu(), y_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,overrides", [
    ("wdno_navier_stokes", ["data.params.n=6", "data.params.nt=11", "data.batch_size=4"]),
    ("fno_navier_stokes", ["data.params.n=6", "data.params.nt=11", "data.batch_size=4"]),
    ("lorenz_irregular_lnsde", ["data.params.n=20", "data.batch_size=8"]),
    ("langevin_flow_lorenz", ["data.params.n=8"]),
    ("lorenz_neural_ode", []),
])
def test_bf16_autocast_keeps_states_and_losses_float32_on_device(name: str, overrides: list[str]) -> None:
    """``train.precision=bf16`` on the device's autocast lists (CUDA's differ from the CPU's: GRUs,
    group norms): the loss stays float32 and within bf16 rounding of the fp32 loss at the same
    weights and noise draws, and the gradient keeps its direction."""
    from sciflow.cli.pipeline import model_for_data, prepare_splits, resolve_model_for_data, windows
    from sciflow.config import load_experiment
    from sciflow.training import BatchLoader
    from sciflow.training._batch_stream import to_device

    exp = load_experiment(name, overrides)
    splits = prepare_splits(exp)
    exp = resolve_model_for_data(exp, splits)
    model = model_for_data(exp, splits, 0).to(DEV)
    batch = to_device(next(iter(BatchLoader(windows(splits.train, exp.data.window, exp.data.stride),
                                            exp.data.batch_size, seed=0))), DEV)
    losses, grads = [], []
    for autocast in (False, True):
        torch.manual_seed(0)
        model.zero_grad(set_to_none=True)
        with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(batch).total
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        _grads_finite(model)
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double())
    assert abs(losses[1] - losses[0]) < 1e-2 * abs(losses[0]), losses
    assert float(torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)) > 0.99
