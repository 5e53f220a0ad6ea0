"""The ``sciflow`` command: list, help, generate, train -> evaluate with UQ, config errors."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from sciflow.cli import build_parser, main, windows
from sciflow.cli.commands import CONFIG_DIR
from sciflow.data.batches import TrajectoryBatch

TINY = ["data.params.n=8", "data.params.n_time=40", "data.params.rtol=1e-6", "data.params.atol=1e-6",
        "data.window=5", "data.stride=5", "data.batch_size=8", "train.max_steps=6", "train.eval_every=3",
        "train.log_every=3", "train.checkpoint_every=3", "train.progress=false", "train.warmup_steps=0",
        "eval.horizon=10", "model.width=8", "data.val_fraction=0.25", "data.test_fraction=0.25"]


def test_list_shows_every_registry(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for needle in ("models:", "neural_ode", "stable_sde", "datasets:", "lorenz63", "BasicMotions", "solvers:",
                   "rk4", "configs:", "lorenz_neural_ode", "uea_lnsde"):
        assert needle in out
    # a second name for the same generator is listed as its alias, not as a second dataset
    assert [ln.split()[1:] for ln in out.splitlines() if ln.split()[:1] == ["lorenz63"]] == [["alias", "of", "lorenz"]]


def test_list_descriptions_are_first_sentences_in_plain_text() -> None:
    from sciflow.cli.registries import _first_line

    class A:
        """Solver of :class:`~sciflow.data.batches.TrajectoryBatch` (Rößler 2010, SIAM J. Numer.
        Anal. 48(3), eq. 5.1) with ``h`` fixed. Second sentence.

        Details."""

    assert _first_line(A) == ("Solver of TrajectoryBatch (Rößler 2010, SIAM J. Numer. Anal. 48(3), eq. 5.1) "
                              "with h fixed.")
    assert _first_line(A, width=20) == "Solver of Trajector…"
    A.__doc__ = "Trajectories on x = 2 pi j / nx. initial_condition: more."
    assert _first_line(A) == "Trajectories on x = 2 pi j / nx."
    A.__doc__ = None
    assert _first_line(A) == ""


@pytest.mark.parametrize("command", ["list", "generate", "train", "evaluate", "demo"])
def test_help_is_useful(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: sciflow " + command in out and len(out) > 200


def test_train_then_evaluate_with_conformal_and_samples(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert main(["train", "lorenz_neural_ode", *TINY, "--run-dir", str(run)]) == 0
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000003.pt", "ckpt-00000006.pt"]
    assert main(["evaluate", str(run), "--uq", "conformal"]) == 0
    m = json.loads((run / "eval_conformal.json").read_text())
    assert m["horizon"] == 10 and len(m["rmse_per_lead"]) == 10 and len(m["coverage_per_lead"]) == 10
    assert 0.0 <= m["coverage"] <= 1.0 and m["mean_interval_width"] > 0
    # conformal half-widths grow with lead time (chaos): the last lead is wider than the first
    assert m["rmse_per_lead"][-1] > m["rmse_per_lead"][0]
    with pytest.warns(RuntimeWarning, match="deterministic, so only its point forecast"):
        assert main(["evaluate", str(run), "--uq", "samples"]) == 0
    s = json.loads((run / "eval_samples.json").read_text())
    assert s["rmse"] == pytest.approx(m["rmse"], rel=1e-5)  # same point forecast
    assert "coverage" not in s and "mean_interval_width" not in s  # no zero-width "intervals" scored
    # resume after the run finished is a no-op continuation
    assert main(["train", "lorenz_neural_ode", *TINY, "--run-dir", str(run), "--resume"]) == 0
    # an ensemble is refused for a single-model run, with the way out in the message
    assert main(["evaluate", str(run), "--uq", "ensemble"]) == 2
    assert "eval.uq=ensemble" in capsys.readouterr().err
    # MC dropout of a model trained without dropout: refused, naming the key to set
    assert main(["evaluate", str(run), "--uq", "mc-dropout"]) == 2
    assert "has no dropout layers" in (err := capsys.readouterr().err) and "model.dropout" in err


def test_config_errors_exit_2_naming_the_key(capsys) -> None:
    assert main(["train", "lorenz_neural_ode", "train.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.max_step'" in err and "did you mean 'train.max_steps'" in err
    assert main(["train", "lorenz_neural_ode", "train.optimizer=adagrad"]) == 2
    assert "allowed values: ['adam', 'adamw', 'sgd', 'lbfgs']" in capsys.readouterr().err
    assert main(["evaluate", "/nonexistent/run"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["generate", "lorenz_63", "--out", "x.nc"]) == 2


def test_generate_writes_a_valid_dataset(tmp_path: Path) -> None:
    from sciflow.data.io import read

    out = tmp_path / "l.nc"
    assert main(["generate", "lorenz63", "--n", "2", "--seed", "3", "--out", str(out), "n_time=20",
                 "rtol=1e-6", "atol=1e-6"]) == 0
    ds = read(out)
    assert ds["state"].shape == (2, 20, 3) and int(ds.attrs["seed"]) == 3


def test_windows_cut_the_condition_like_the_state() -> None:
    """A condition with the time axis (a forcing) is cut into the same windows as the state; one without
    (parameters) is repeated once per window of its trajectory."""
    v = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    t = torch.arange(7.0)
    b = windows(TrajectoryBatch(values=v, times=t, condition=-2 * v), 3, 2)
    assert torch.equal(b.condition, -2 * b.values) and b.values.shape == (6, 3, 3)
    p = windows(TrajectoryBatch(values=v, times=t, condition=torch.tensor([[1.0, 2.0], [3.0, 4.0]])), 3, 2)
    assert torch.equal(p.condition, torch.tensor([[1.0, 2.0]] * 3 + [[3.0, 4.0]] * 3))


def test_wdno_trains_and_evaluates_with_its_forcing_as_condition(tmp_path: Path, capsys) -> None:
    """``data.condition: forcing`` hands the forcing of ``burgers-control`` to WDNO through the CLI
    (it needs it: without, a clear error names the key)."""
    torch.set_num_threads(1)
    tiny = ["data.params.n=10", "data.params.nx=17", "data.params.nt=9", "data.params.n_modes=32",
            "data.params.dt=0.005", "model.base_channels=8", "train.max_steps=2", "train.warmup_steps=0",
            "eval.n_samples=2", "data.batch_size=4"]
    run = tmp_path / "wdno"
    assert main(["train", "wdno_burgers", *tiny, "--run-dir", str(run)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", str(run)]) == 0
    m = json.loads((run / "eval_samples.json").read_text())
    assert m["horizon"] == 8 and math.isfinite(m["crps"]) and 0 <= m["coverage"] <= 1
    for uq in ("laplace", "hmc"):  # weight posteriors of a point model: refused for a generative one
        capsys.readouterr()
        assert main(["evaluate", str(run), "--uq", uq]) == 2
        assert f"--uq {uq} puts a posterior on the weights of a point model; 'wdno' is generative" \
            in capsys.readouterr().err
    assert main(["train", "wdno_burgers", *tiny, "data.condition=u_0", "--run-dir", str(tmp_path / "x")]) == 2
    assert "data.condition = 'u_0' is not a per-sample variable" in capsys.readouterr().err


def test_every_packaged_config_is_listed_as_trainable(capsys) -> None:
    assert main(["list", "configs"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")}
    for name, what in (("mfm_letters", "meta-flow-matching"), ("pinn_burgers", "causal-PINN")):
        assert what in lines[name] and "`sciflow train`)" in lines[name]
    assert lines["wdno_burgers_superres"].split()[1:] == [str(CONFIG_DIR / "wdno_burgers_superres.yaml")]
    assert not any("benchmark" in ln for ln in lines.values())


def test_ensemble_members_in_numeric_order(tmp_path: Path) -> None:
    """member_10 comes after member_9 (a lexicographic sort put it after member_1); strays are ignored."""
    from sciflow.cli import member_dirs

    assert member_dirs(tmp_path) == [tmp_path]
    for i in (0, 1, 2, 9, 10, 11):
        (tmp_path / f"member_{i}").mkdir()
    (tmp_path / "member_notes").mkdir()
    (tmp_path / "member_3.txt").write_text("")
    assert [p.name for p in member_dirs(tmp_path)] == [f"member_{i}" for i in (0, 1, 2, 9, 10, 11)]


def test_windows_cut_trajectories() -> None:
    v = torch.arange(2 * 7 * 1, dtype=torch.float32).reshape(2, 7, 1)
    b = windows(TrajectoryBatch(values=v, times=torch.arange(7.0) * 0.5), 3, 2)
    assert b.values.shape == (6, 3, 1) and torch.equal(b.times, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(b.values[1, :, 0], torch.tensor([2.0, 3.0, 4.0]))
    assert torch.equal(b.values[3, :, 0], torch.tensor([7.0, 8.0, 9.0]))
    irregular = TrajectoryBatch(values=v, times=torch.tensor([0.0, 1, 3, 4, 8, 9, 10]))
    w = windows(irregular, 3, 2)
    assert w.times.shape == (6, 3) and torch.equal(w.times[1], torch.tensor([3.0, 4.0, 8.0]))


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert {"rmse", "coverage", "crps", "rmse_per_lead", "persistence_rmse"} <= set(m)
    for name in ("forecast.png", "error.png", "coverage.png"):
        assert (tmp_path / "demo" / "plots" / name).stat().st_size > 10_000
    assert list((tmp_path / "demo" / "member_0" / "checkpoints").glob("ckpt-*.pt"))


def test_parser_builds() -> None:
    assert build_parser().prog == "sciflow"


def test_every_uq_method_through_the_cli(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "ens"
    extra = ["model.dropout=0.1", "eval.uq=ensemble", "eval.ensemble_size=2", "eval.n_samples=8"]
    assert main(["train", "lorenz_neural_ode", *TINY, *extra, "--run-dir", str(run)]) == 0
    assert (run / "member_0" / "checkpoints").is_dir() and (run / "member_1" / "checkpoints").is_dir()
    for uq in ("ensemble", "mc-dropout", "conformal", "hmc", "laplace", "samples"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["evaluate", str(run), "--uq", uq]) == 0
        m = json.loads((run / f"eval_{uq}.json").read_text())
        assert m["uq"] == uq and math.isfinite(m["rmse"])
        if uq != "samples":
            assert 0 <= m["coverage"] <= 1 and m["mean_interval_width"] > 0
        else:  # the neural ODE is deterministic (dropout off at prediction): its point forecast only
            assert "coverage" not in m and any("point forecast" in str(w.message) for w in caught)
        if uq == "hmc":  # chains vectorised with vmap through the ODE solve, and their diagnostics reported
            assert not [w for w in caught if "vmap over chains failed" in str(w.message)]
            d = m["hmc_diagnostics"]
            assert d["function_space"]["n_chains"] == d["weight_space"]["n_chains"] == 2
            assert d["converged"] == (d["function_space"]["max_rhat"] < 1.05)
            assert d["converged"] or any("chains disagree" in str(w.message) for w in caught)
            assert d["mass_matrix"] == "diag"
        if uq == "laplace":  # forward-mode Jacobian columns vectorised through the ODE solve
            assert not [w for w in caught if "vmap over Jacobian columns failed" in str(w.message)]
            assert m["laplace"]["mixture_of"] == 2  # the ensemble run: one Laplace per member, mixed (MoLA)
            for d in m["laplace"]["members"]:
                assert [w.rsplit(".", 1)[1] for w in d["weights"]] == ["weight", "bias"]
                assert d["n_params"] == 3 * (8 + 1)
                assert 0 < d["effective_parameters"] <= d["n_params"] and d["prior_precision"] > 0
                noise = torch.tensor(d["observation_noise"])                 # per lead time and component
                assert d["noise_dims"] == [1, 2] and noise.shape == (m["horizon"] + 1, 3)
                assert torch.all(noise[0] == 0) and torch.all(noise[1:] > 0)  # the given step is not forecast
            members = m["laplace"]["members"]
            assert members[0]["observation_noise"] != members[1]["observation_noise"]  # two different fits
    # the low-rank Fisher mass matrix through the config (eval.hmc_mass), and a misspelt one refused
    assert main(["evaluate", str(run), "--uq", "hmc", "eval.hmc_mass=low_rank"]) == 0
    m = json.loads((run / "eval_hmc.json").read_text())
    assert m["hmc_diagnostics"]["mass_matrix"] == "low_rank" and 0 <= m["coverage"] <= 1
    capsys.readouterr()
    assert main(["evaluate", str(run), "--uq", "hmc", "eval.hmc_mass=full"]) == 2
    err = capsys.readouterr().err
    assert "hmc_mass" in err and "low_rank" in err, err


def test_module_entry_point_runs_the_command() -> None:
    """``python -m sciflow.cli`` (what ``torchrun -m sciflow.cli`` launches) is the ``sciflow`` command."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sciflow.cli", "list", "configs"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wdno_era5" in out.stdout and "lorenz_neural_ode" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "sciflow.cli", "train", "lorenz_neural_ode", "train.max_step=3"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "train.max_step" in bad.stderr


def test_closed_pipe_stops_quietly() -> None:
    """``sciflow list | head -1``: when the reader leaves, the command stops with the shell's SIGPIPE
    status (141) and no ``BrokenPipeError`` traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "sciflow.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the (slow) import finishes: its first print meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_evaluate_uses_the_ema_weights_that_training_validated(tmp_path: Path) -> None:
    """A run trained with ``train.ema_decay`` is evaluated with its averaged weights (those its
    validation losses were measured with), not the raw last iterate."""
    from sciflow.cli.pipeline import load_run, load_trained
    from sciflow.training import CheckpointManager

    torch.set_num_threads(1)
    run = tmp_path / "ema"
    assert main(["train", "lorenz_neural_ode", *TINY, "train.ema_decay=0.9", "--run-dir", str(run)]) == 0
    ckpt, _ = CheckpointManager(run / "checkpoints").load_latest()
    model = load_trained(load_run(run), run)
    shadow, raw = ckpt["ema"]["shadow"], ckpt["model"]
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), shadow[name]), name
    assert any(not torch.equal(shadow[n], raw[n]) for n in shadow)  # the average is not the last iterate
    assert main(["evaluate", str(run), "--uq", "conformal"]) == 0


def test_evaluate_the_best_checkpoint(tmp_path: Path, capsys) -> None:
    """``train.keep_best`` + ``eval.checkpoint=best`` scores the lowest-validation-loss model;
    asking for it from a run trained without ``keep_best`` names the key to set."""
    torch.set_num_threads(1)
    run = tmp_path / "best"
    assert main(["train", "lorenz_neural_ode", *TINY, "train.eval_every=2", "train.keep_best=true",
                 "--run-dir", str(run)]) == 0
    assert (run / "checkpoints" / "best.pt").is_file()
    assert main(["evaluate", str(run), "--uq", "conformal", "eval.checkpoint=best"]) == 0
    assert main(["evaluate", str(tmp_path / "best"), "eval.checkpoint=last"]) == 0
    plain = tmp_path / "plain"
    assert main(["train", "lorenz_neural_ode", *TINY, "--run-dir", str(plain)]) == 0
    assert main(["evaluate", str(plain), "eval.checkpoint=best"]) == 2
    assert "train.keep_best=true" in capsys.readouterr().err
