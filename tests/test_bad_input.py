"""Bad input at the public entry points raises a clear error naming the problem.

Each case was, before its fix, a traceback from inside torch/MKL (e.g. ``generate_control(n=0)``
-> "MKL FFT error: Inconsistent configuration parameters"), a hang (an adaptive solve whose
vector field is NaN at the initial state), or a silent NaN / garbage result. Every case asserts
the exception type and a fragment of the message that names the argument and the problem.
"""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.cli import main as cli_main
from sciflow.data.batches import PopulationBatch, TrajectoryBatch
from sciflow.data.pdes import allen_cahn, burgers, kuramoto_sivashinsky, lorenz, navier_stokes
from sciflow.data.schema import DatasetError, validate
from sciflow.models.causal_pinn import Config as PINNConfig
from sciflow.models.neural_ode import Config as NODEConfig
from sciflow.models.neural_ode import NeuralODE
from sciflow.models.neural_operator import Config as NOConfig
from sciflow.models.wavelet_diffusion import Config as WDNOConfig
from sciflow.nn import MLP
from sciflow.training import BatchLoader, TrainConfig
from sciflow.solvers import (RK4, BrownianIncrements, Dopri5, FlowEuler, LinearVP, Tsit5, UnderdampedLangevin,
                             odeint, sample_diffusion, sample_flow, simulate_langevin)
from sciflow.uq import Prediction, gaussian_nll_loss
from sciflow.uq import distances as D
from sciflow.uq import scores as S

NAN = float("nan")
T5 = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
Y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
ONE = torch.ones(4, 3)


def nan_field(t, y):
    return y * NAN


# (call, exception type, message fragment)
CASES = {
    # --- data generators: sizes and parameters checked before any tensor is allocated
    "burgers.generate_control n=0 (was MKL FFT error)": (
        lambda: burgers.generate_control(0, 0, nx=17, nt=9), ValueError,
        r"generate_control: n must be an integer >= 1, got 0"),
    "burgers.generate_control n=-1": (
        lambda: burgers.generate_control(-1, 0, nx=17, nt=9), ValueError, r"n must be an integer >= 1, got -1"),
    "burgers.generate_control nx=0 (was silent)": (
        lambda: burgers.generate_control(1, 0, nx=0, nt=3, n_modes=16), ValueError,
        r"nx must be an integer >= 2, got 0"),
    "burgers.generate_shock n=0 (was silent)": (
        lambda: burgers.generate_shock(0, nx=8, nt=3), ValueError, r"generate_shock: n must be an integer >= 1"),
    "burgers.generate_shock cole_hopf nu=0 (was NaN)": (
        lambda: burgers.generate_shock(1, nx=8, nt=3, nu=0.0, method="cole_hopf"), ValueError,
        r"cole_hopf_sine: nu .* > 0, got 0.0"),
    "burgers.generate length=-1 (was silent)": (
        lambda: burgers.generate(1, 0, nx=16, nt=3, length=-1.0), ValueError,
        r"length must be finite and > 0, got -1.0"),
    "burgers.generate nt=1.5": (
        lambda: burgers.generate(1, 0, nx=16, nt=1.5), ValueError, r"nt must be an integer >= 2, got 1.5"),
    "burgers.solve_periodic empty batch (was MKL FFT error)": (
        lambda: burgers.solve_periodic(torch.zeros(0, 8), nu=0.1, length=1.0, t=[0.0, 0.1], dt=1e-2), ValueError,
        r"u0 must be \(batch, nx\) with batch >= 1, got shape \(0, 8\)"),
    "burgers.solve_periodic numpy u0": (
        lambda: burgers.solve_periodic(torch.zeros(1, 8).numpy(), nu=0.1, length=1.0, t=[0.0, 0.1], dt=1e-2), TypeError,
        r"u0 must be a torch.Tensor"),
    "burgers.solve_periodic dt=nan": (
        lambda: burgers.solve_periodic(torch.zeros(1, 8), nu=0.1, length=1.0, t=[0.0, 0.1], dt=NAN), ValueError,
        r"dt must be positive and finite, got nan"),
    "allen_cahn.generate nt=1 (was silent)": (
        lambda: allen_cahn.generate(1, nx=16, nt=1), ValueError, r"save times .* >= 2 points .*nt >= 2"),
    "allen_cahn.generate eps<0 (was silent)": (
        lambda: allen_cahn.generate(1, nx=16, nt=3, eps=-1.0), ValueError, r"eps .* >= 0, got -1.0"),
    "kuramoto_sivashinsky.generate nt=1 (was silent)": (
        lambda: kuramoto_sivashinsky.generate(1, nx=16, nt=1), ValueError, r"nt >= 2"),
    "kuramoto_sivashinsky.solve gamma<0 (was silent)": (
        lambda: kuramoto_sivashinsky.solve(torch.zeros(1, 16), t=[0.0, 0.01], alpha=1, beta=1, gamma=-1),
        ValueError, r"gamma must be finite and > 0, got -1"),
    "navier_stokes.generate nt=1 (was torch max() error)": (
        lambda: navier_stokes.generate(1, 0, resolution=8, nt=1, t_final=0.1, dt=0.01), ValueError, r"nt >= 2"),
    "navier_stokes.generate stride=0 (was ZeroDivisionError)": (
        lambda: navier_stokes.generate(1, 0, resolution=8, nt=3, t_final=0.1, dt=0.01, stride=0), ValueError,
        r"stride and batch_size must be integers >= 1, got stride=0"),
    "navier_stokes.generate batch_size=0 (was ZeroDivisionError)": (
        lambda: navier_stokes.generate(1, 0, resolution=8, nt=3, t_final=0.1, dt=0.01, batch_size=0), ValueError,
        r"batch_size=0"),
    "lorenz63 rho=nan (was a hang in the adaptive solver)": (
        lambda: lorenz.generate_lorenz63(1, n_time=3, rho=NAN, spinup=0.1), FloatingPointError,
        r"vector field returned non-finite values .* initial state, t = 0"),
    "schema.validate of a non-Dataset (was AttributeError)": (
        lambda: validate(torch.zeros(3).numpy()), DatasetError, r"expected an xarray.Dataset, got ndarray"),
    # --- batches
    "TrajectoryBatch int values": (
        lambda: TrajectoryBatch(torch.ones(2, 3, 4, dtype=torch.long), torch.linspace(0, 1, 3)), TypeError,
        r"values must be a floating tensor, got dtype torch.int64"),
    "TrajectoryBatch empty batch": (
        lambda: TrajectoryBatch(torch.ones(0, 3, 4), torch.linspace(0, 1, 3)), ValueError,
        r"values has an empty batch axis"),
    "TrajectoryBatch numpy values": (
        lambda: TrajectoryBatch(torch.ones(2, 3, 4).numpy(), torch.linspace(0, 1, 3)), TypeError,
        r"values must be a torch.Tensor, got ndarray"),
    "PopulationBatch NaN source": (
        lambda: PopulationBatch(torch.full((2, 5, 2), NAN)), ValueError, r"PopulationBatch: source contains NaN"),
    # --- solvers
    "odeint NaN field, Dopri5 (was a hang to max_steps)": (
        lambda: odeint(nan_field, torch.ones(2, 3), torch.linspace(0, 1, 5)), FloatingPointError,
        r"vector field returned non-finite values \(nan/inf\) at the initial state, t = 0"),
    "odeint NaN field, Tsit5 per-trajectory clocks": (
        lambda: odeint(nan_field, torch.ones(2, 3), torch.linspace(0, 1, 5), solver=Tsit5(), batch_ndim=1),
        FloatingPointError, r"non-finite values .*t = 0 \(every sample's initial time\)"),
    # fixed steps: no extra sync at the first evaluation; the end-of-solve check names the first bad save
    "odeint NaN field, RK4": (
        lambda: odeint(nan_field, torch.ones(2, 3), torch.linspace(0, 1, 5), solver=RK4()), FloatingPointError,
        r"solution became non-finite \(nan/inf\) at save index 1, t = 0.25"),
    "odeint empty batch (was ZeroDivisionError)": (
        lambda: odeint(lambda t, y: -y, torch.ones(0, 3), torch.linspace(0, 1, 5)), ValueError,
        r"y0 is empty \(shape \(0, 3\)\)"),
    "BrownianIncrements negative shape": (
        lambda: BrownianIncrements([0.0, 0.5], (-2, 3)), ValueError,
        r"shape must have non-negative sizes, got \(-2, 3\)"),
    "simulate_langevin NaN z0 (was silent NaN)": (
        lambda: simulate_langevin(UnderdampedLangevin(force=lambda z: -z, gamma=1.0), torch.full((2, 3), NAN),
                                  torch.zeros(2, 3), dt=0.1, n_steps=3), ValueError, r"z0 contains NaN or inf"),
    "simulate_langevin int v0": (
        lambda: simulate_langevin(UnderdampedLangevin(force=lambda z: -z, gamma=1.0), torch.zeros(2, 3),
                                  torch.zeros(2, 3, dtype=torch.long), dt=0.1, n_steps=3), TypeError,
        r"v0 must be a floating tensor"),
    "sample_diffusion NaN model (was silent NaN)": (
        lambda: sample_diffusion(lambda x, t: x * NAN, LinearVP(), torch.randn(2, 3), nfe=3), FloatingPointError,
        r"sample_diffusion \(DDIM.*\) produced non-finite samples"),
    "sample_flow NaN model (was silent NaN)": (
        lambda: sample_flow(lambda x, t: x * NAN, torch.randn(2, 3), sampler=FlowEuler(), nfe=3), FloatingPointError,
        r"sample_flow .* produced non-finite samples"),
    # --- UQ scores and distances
    "crps_ensemble n_samples=0 (was ZeroDivisionError)": (
        lambda: S.crps_ensemble(torch.zeros(0, 4, 3), Y), ValueError, r"samples is empty \(n_samples = 0"),
    "crps_gaussian std<0 (was silent)": (
        lambda: S.crps_gaussian(Y, -ONE, Y), ValueError, r"std must be > 0 everywhere \(min -1"),
    "crps_gaussian std=0 (was NaN)": (
        lambda: S.crps_gaussian(Y, 0 * ONE, Y), ValueError, r"std must be > 0"),
    "crps_gaussian NaN mean (was NaN)": (
        lambda: S.crps_gaussian(torch.full((4, 3), NAN), ONE, Y), ValueError, r"mean contains NaN"),
    "gaussian_nll var=0 (was NaN)": (
        lambda: S.gaussian_nll(Y, 0 * ONE, Y), ValueError, r"var must be > 0"),
    "pit_gaussian std<0 (was silent)": (
        lambda: S.pit_gaussian(Y, -ONE, Y), ValueError, r"std must be > 0"),
    "variogram_score p<=0 (was NaN)": (
        lambda: S.variogram_score(torch.randn(8, 4, 3), Y, p=-1.0), ValueError, r"variogram order p must be > 0"),
    "interval_coverage NaN truth (was silent)": (
        lambda: S.interval_coverage(Y - 1, Y + 1, torch.full((4, 3), NAN)), ValueError, r"y contains NaN"),
    "reliability PIT outside [0, 1] (was silent)": (
        lambda: S.reliability(torch.tensor([1.5, -0.2, 0.3])), ValueError, r"pit_values must lie in \[0, 1\]"),
    "calibration_error NaN PIT (was silent)": (
        lambda: S.calibration_error(torch.tensor([NAN, 0.2, 0.3])), ValueError, r"not be NaN"),
    "reliability levels=0": (
        lambda: S.reliability(torch.rand(10), 0), ValueError, r"levels must be >= 1"),
    "rmse NaN prediction (was NaN)": (
        lambda: S.rmse(torch.full((4, 3), NAN), Y), ValueError, r"prediction contains NaN"),
    "rmse negative weights (was silent)": (
        lambda: S.rmse(Y, Y + 1, weights=-ONE), ValueError, r"weights must be finite and non-negative"),
    "sliced_wasserstein n_projections=0 (was NaN)": (
        lambda: D.sliced_wasserstein(torch.randn(20, 2), torch.randn(30, 2), n_projections=0), ValueError,
        r"n_projections must be >= 1, got 0"),
    "wasserstein_1d NaN (was NaN)": (
        lambda: D.wasserstein_1d(torch.full((5,), NAN), torch.randn(5)), ValueError, r"u or v contains NaN"),
    "gaussian_nll_loss shape mismatch (was torch broadcast error)": (
        lambda: gaussian_nll_loss(Y, ONE, torch.ones(5, 3)), ValueError,
        r"mean, var and y must share one shape, got \(4, 3\), \(4, 3\) and \(5, 3\)"),
    "Prediction NaN mean (documented, was not enforced)": (
        lambda: Prediction(mean=torch.full((4, 3), NAN)), ValueError, r"Prediction.mean contains NaN"),
    "Prediction negative variance": (
        lambda: Prediction(mean=Y, variance=-ONE), ValueError, r"variance is negative"),
    # --- nn
    "MLP width=0 (was ZeroDivisionError in the initialiser)": (
        lambda: MLP(2, 3, width=0), ValueError, r"MLP sizes must be >= 1, got in_features=2, out_features=3, width=0"),
    "MLP dropout=1.5": (
        lambda: MLP(2, 3, dropout=1.5), ValueError, r"MLP dropout must be in \[0, 1\), got 1.5"),
    # --- model configs built in Python (YAML was already checked by sciflow.config)
    "neural_ode.Config solver='foo' (was silent)": (
        lambda: NODEConfig(solver="foo"), ValueError, r"Config.solver='foo' is not allowed; choose one of \['euler'"),
    "neural_ode.Config adjoint='foo'": (
        lambda: NODEConfig(adjoint="foo"), ValueError, r"Config.adjoint='foo'"),
    "neural_ode.Config rtol<0": (
        lambda: NODEConfig(rtol=-1.0), ValueError, r"rtol and atol must be > 0, got rtol=-1.0"),
    "neural_operator.Config architecture='foo' (was silent)": (
        lambda: NOConfig(architecture="foo"), ValueError, r"Config.architecture='foo' is not allowed"),
    "wavelet_diffusion.Config wavelet='foo' (was silent)": (
        lambda: WDNOConfig(wavelet="foo"), ValueError, r"Config.wavelet='foo' is not a discrete PyWavelets wavelet"),
    "causal_pinn.Config problem='foo' (was silent)": (
        lambda: PINNConfig(problem="foo"), ValueError,
        r"Config.problem='foo': unknown problem; choose one of \['allen_cahn'"),
    "causal_pinn.Config n_chunks=0 (was ZeroDivisionError)": (
        lambda: PINNConfig(n_chunks=0), ValueError, r"Config.n_chunks must be >= 1, got 0"),
    "causal_pinn.Config epsilon<0 (was silent)": (
        lambda: PINNConfig(epsilon=-1.0), ValueError, r"epsilon .* must be >= 0, got -1.0"),
    # --- training
    "TrainConfig schedule='foo' built in Python (was silent until fit)": (
        lambda: TrainConfig(schedule="foo"), ValueError, r"TrainConfig.schedule='foo' is not allowed; choose one of"),
    "BatchLoader over a list (was an error at the first batch)": (
        lambda: BatchLoader([1.0, 2.0, 3.0], 2), TypeError, r"BatchLoader takes a batch dataclass .* got list"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_clear_error(name):
    fn, exc, match = CASES[name]
    with pytest.raises(exc, match=match):
        fn()


def _node() -> NeuralODE:
    torch.manual_seed(0)
    return NeuralODE(NODEConfig(width=8, depth=1))


@pytest.mark.parametrize("values, exc, match", [
    # one time step left nothing to fit: the loss was mean([]) = NaN
    (torch.randn(2, 1, 3), ValueError, r"NeuralODE.loss needs trajectories of >= 2 time steps"),
])
def test_neural_ode_loss_bad_batch(values, exc, match):
    batch = TrajectoryBatch(values, torch.linspace(0, 1, values.shape[1]))
    with pytest.raises(exc, match=match):
        _node().loss(batch)


def test_neural_ode_dtype_mismatch_names_both_dtypes():
    # was "mat1 and mat2 must have the same dtype" from inside torch.nn.functional.linear
    batch = TrajectoryBatch(torch.randn(2, 4, 3, dtype=torch.float64), T5[:4])
    with pytest.raises(TypeError, match=r"batch is torch.float64 but the model's parameters are torch.float32"):
        _node().sample(batch, 2)


def test_stable_sde_label_out_of_range():
    from sciflow.data.batches import IrregularBatch
    from sciflow.models.stable_sde import Config, StableSDE

    torch.manual_seed(0)
    model = StableSDE(Config(task="classification", n_classes=2, input_channels=1, hidden_dim=4))
    times = torch.linspace(0, 1, 5).expand(2, 5).contiguous()
    batch = IrregularBatch(torch.randn(2, 5, 1), times, torch.ones(2, 5, 1, dtype=torch.bool),
                           labels=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, n_classes=2\), got min 0, max 5"):
        model.loss(batch)


@pytest.mark.parametrize("argv, fragment", [
    # generator parameter errors were tracebacks; now a message and exit status 2
    (["generate", "burgers-control", "--n", "0", "nx=17", "nt=9"],
     "burgers-control: burgers.generate_control: n must be"),
    (["generate", "burgers", "nu=-1", "nx=16", "nt=3"], "viscosity must be >= 0, got -1"),
    (["generate", "burgers", "foo=1"], "unknown parameter 'foo' for dataset 'burgers'; allowed: ["),
    (["generate", "burgers", "n=3"], "unknown parameter 'n'"),
])
def test_cli_generate_bad_parameters_exit_2(argv, fragment, tmp_path, capsys):
    rc = cli_main([*argv, "--out", str(tmp_path / "o.nc"), "--no-progress"])
    assert rc == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "o.nc").exists()


def test_cli_generate_bad_output_suffix_fails_before_generating(tmp_path, capsys):
    rc = cli_main(["generate", "burgers", "--out", str(tmp_path / "o.csv"), "--no-progress", "nx=16", "nt=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--out:" in err and "cannot infer format from suffix '.csv'" in err


def test_cli_reading_a_corrupt_dataset_exits_2(tmp_path, capsys):
    bad = tmp_path / "data.nc"
    bad.write_bytes(b"not a netcdf file" * 8)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"model:\n  name: neural_ode\ndata:\n  path: {bad}\n  window: 3\n")
    rc = cli_main(["train", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt file" in err


def test_nan_field_mid_integration_still_reports_underflow_not_hang():
    # y' = y^2 from y(0) = 1 is finite at t = 0 and blows up at t = 1: the first-call check does
    # not fire; the step-size underflow (or max_steps) check must, well before max_steps = 1e5
    f = lambda t, y: y * y  # noqa: E731
    with pytest.raises(RuntimeError, match=r"step size underflow|max_steps"):
        odeint(f, torch.ones(1, dtype=torch.float64), torch.linspace(0, 2, 5, dtype=torch.float64),
               solver=Dopri5(), max_steps=20_000)


def test_valid_inputs_still_pass():
    # the new checks must not reject what is valid: a small finite solve, a score, a prediction
    ys = odeint(lambda t, y: -y, torch.ones(2, 3, dtype=torch.float64), T5)
    assert torch.allclose(ys[-1], torch.full((2, 3), math.exp(-1.0), dtype=torch.float64), rtol=1e-5)
    crps = S.crps_gaussian(torch.zeros(1), torch.ones(1), torch.zeros(1))
    assert abs(float(crps) - (2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi))) < 1e-6
    p = Prediction(mean=Y, lower=Y - 1, upper=Y + 1, variance=ONE, alpha=0.1)
    assert float(S.interval_coverage(p.lower, p.upper, Y)) == 1.0
    assert TrajectoryBatch(torch.randn(2, 3, 4), torch.linspace(0, 1, 3)).batch_size == 2
