"""The sub-commands of ``sciflow`` and the argument parser."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from sciflow.cli.evaluation import evaluate_run
from sciflow.cli.mfm import evaluate_mfm, is_mfm_run, train_mfm
from sciflow.cli.pinn import evaluate_pinn, is_pinn_run, train_pinn
from sciflow.cli.pipeline import (_is_main_process, prepare_splits, resolve_model_for_data, train_experiment,
                                  write_config)
from sciflow.cli.registries import _first_line, _generators, _models, _solvers, _write_json
from sciflow.config import ConfigError, load_experiment, parse_overrides
from sciflow.config.experiment import config_path, family_config, is_mfm_config, is_pinn_config
from sciflow.config.schema import read_yaml
from sciflow.data.schema import DatasetError
from sciflow.training.checkpoint import CheckpointError


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _uea_datasets() -> dict[str, str]:
    """UEA/UCR problems for ``data.name=`` (irregular-series models), with where they are found."""
    from sciflow.data.timeseries.bundled import BUNDLED, DatasetNotFoundError, find_uea

    out = {}
    for name in BUNDLED:
        try:
            where = f"UEA/UCR .ts archive ({find_uea(name)[0].parent})"
        except DatasetNotFoundError:
            where = "UEA/UCR .ts archive (not found: pip install aeon, or data.root=FOLDER)"
        out[name] = where
    return out


def _described(registry: dict) -> dict[str, str]:
    """``name -> first sentence`` of each entry; a second name for the same object is listed as an alias."""
    out: dict[str, str] = {}
    first: dict[int, str] = {}
    for k, v in registry.items():
        out[k] = f"alias of {first[id(v)]}" if id(v) in first else _first_line(v)
        first.setdefault(id(v), k)
    return out


def _config_line(path: Path) -> str:
    """A packaged config's path; a model family's own config (not an experiment) says so."""
    family = family_config(read_yaml(path))
    return str(path) if family is None else f"{path} ({family[0]}: `sciflow train`)"


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    sections = {
        "models": lambda: _described(_models()),
        "datasets": lambda: _described(_generators()) | _uea_datasets(),
        "solvers": lambda: _described(_solvers()),
        "configs": lambda: {p.stem: _config_line(p) for p in sorted(CONFIG_DIR.glob("*.yaml"))},
    }
    for name in ([what] if what != "all" else list(sections)):
        entries = sections[name]()
        print(f"{name}:")
        if not entries:
            print("  (none registered yet)")
        width = max([24, *(len(k) + 1 for k in entries)])  # one aligned column per section
        for k, doc in entries.items():
            print(f"  {k:<{width}} {doc}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    gens = _generators()
    if args.name not in gens:
        raise ConfigError(f"unknown dataset {args.name!r}; allowed values: {sorted(gens)}")
    params = parse_overrides(args.params)
    from sciflow.data.io import _format, write

    try:  # the output format is known from --out: fail before generating, not after
        _format(Path(args.out), None)
    except ValueError as err:
        raise ConfigError(f"--out: {err}") from err
    t0 = time.perf_counter()
    gen = gens[args.name]
    sig = inspect.signature(gen).parameters
    allowed = sorted(k for k in sig if k not in ("n", "seed", "progress"))
    open_kwargs = any(v.kind is v.VAR_KEYWORD for v in sig.values())
    for k in params:
        if (k not in sig and not open_kwargs) or k in ("n", "seed", "progress"):
            raise ConfigError(f"unknown parameter {k!r} for dataset {args.name!r}; allowed: {allowed} "
                              f"(n and seed are --n / --seed)")
    bar = None
    if "progress" in inspect.signature(gen).parameters and not args.no_progress:
        from tqdm.auto import tqdm

        def _progress(done: int, total: int) -> None:  # the bar opens with the first step, after the checks
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, desc=f"generate {args.name}", unit="step", dynamic_ncols=True)
            bar.total = total
            bar.n = done
            bar.refresh()

        params["progress"] = _progress
    try:
        ds = gen(n=args.n, seed=args.seed, **params)
    except ValueError as err:  # the generator's own parameter checks: a usage error, not a crash
        raise ConfigError(f"{args.name}: {err}") from err
    finally:
        if bar is not None:
            bar.close()
    path = write(ds, args.out)
    print(f"wrote {args.name} (n={args.n}, seed={args.seed}) to {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    raw = read_yaml(config_path(args.config))
    if is_pinn_config(raw):
        print(json.dumps(train_pinn(args.config, args.overrides, args.run_dir, args.resume), indent=2))
        return 0
    if is_mfm_config(raw):
        metrics = train_mfm(args.config, args.overrides, args.run_dir, args.resume)
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("scores", "history")}, indent=2))
        return 0
    exp = load_experiment(args.config, args.overrides)
    run_dir = Path(args.run_dir or exp.run_dir)
    splits = prepare_splits(exp)
    exp = resolve_model_for_data(exp, splits)  # irregular series: input_channels / n_classes from the data
    write_config(exp, run_dir)
    n_members = exp.eval.ensemble_size if exp.eval.uq == "ensemble" else 1
    summary = []
    for i in range(n_members):
        d = run_dir / f"member_{i}" if n_members > 1 else run_dir
        _, res = train_experiment(exp, d, resume=args.resume, splits=splits, member=i)
        summary.append({"member": i, "steps": res.steps, "skipped_steps": res.skipped_steps,
                        "final_val_loss": res.final_val, "checkpoint": res.last_checkpoint})
        if _is_main_process():
            print(f"member {i}: {res.steps} steps, final val loss {res.final_val}, checkpoint {res.last_checkpoint}")
    if _is_main_process():
        _write_json(summary, run_dir / "train_summary.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if is_pinn_run(args.run_dir):
        print(json.dumps(evaluate_pinn(args.run_dir, args.uq, args.overrides), indent=2))
        return 0
    if is_mfm_run(args.run_dir):
        metrics = evaluate_mfm(args.run_dir, args.uq, args.overrides)
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("scores", "history")}, indent=2))
        return 0
    metrics = evaluate_run(Path(args.run_dir), args.uq, args.overrides)
    print(json.dumps(_without_lists(metrics), indent=2))
    return 0


def _without_lists(d: dict) -> dict:
    """The scalars of a metrics dict, nested blocks included, for the terminal; the per-lead lists
    are in the JSON file."""
    return {k: _without_lists(v) if isinstance(v, dict) else v for k, v in d.items() if not isinstance(v, list)}


def cmd_demo(args: argparse.Namespace) -> int:
    from sciflow.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress, steps=args.step)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run.py`` of the source checkout (the suite is not part of the wheel)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not path.is_file():
        raise ConfigError(f"the benchmark suite ships with the source repository ({path} not found); "
                          "run `sciflow benchmark` from a git checkout of sciflow")
    spec = importlib.util.spec_from_file_location("sciflow_benchmarks_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    argv = [*args.names, "--scale", args.scale]
    for flag, value in (("--out", args.out), ("--seed", args.seed), ("--timeout", args.timeout)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--list"] if args.list else []
    argv += ["--dry-run"] if args.dry_run else []
    return int(run.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sciflow",
        description="Learning physical dynamics with neural differential equations.",
        epilog="Start with `sciflow demo`; see `sciflow COMMAND --help` for each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list registered models, datasets, solvers and packaged configs",
                       description="List what the registries hold.")
    s.add_argument("what", nargs="?", default="all", choices=["all", "models", "datasets", "solvers", "configs"])
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("generate", help="generate a dataset and write it (NetCDF/HDF5 or zarr)",
                       description="Run a registered generator and write a schema-valid dataset.",
                       epilog="example: sciflow generate lorenz63 --n 64 --out lorenz.nc n_time=1000 dt=0.01")
    s.add_argument("name", help="dataset name (see `sciflow list datasets`)")
    s.add_argument("--n", type=int, default=32, help="number of samples (default 32)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--out", required=True, help="output path: .nc/.h5 (NetCDF4) or .zarr")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("params", nargs="*", help="generator keyword arguments as key=value")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("train", help="train a model from a YAML config with dotted overrides",
                       description="Train from CONFIG (a YAML path or a packaged config name) over the "
                                   "dataclass defaults; overrides look like train.max_steps=500. A causal-PINN "
                                   "config (flat Config fields) takes flat overrides (steps=300 lbfgs_steps=200) "
                                   "and writes checkpoints, metrics.json and figures to --run-dir.",
                       epilog="examples: sciflow train lorenz_neural_ode train.max_steps=500 model.width=128; "
                              "sciflow train pinn_burgers --run-dir runs/pb steps=300 [--resume]; "
                              "sciflow train mfm_letters --run-dir runs/mfm train.steps=500")
    s.add_argument("config", help="YAML file or packaged config name (see `sciflow list configs`)")
    s.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    s.add_argument("--run-dir", help="output folder (default: run_dir of the config)")
    s.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a trained run on its test split, with uncertainty",
                       description="Score a run folder's model on held-out forecasts: RMSE per lead time, "
                                   "interval coverage and width, CRPS; writes eval_<uq>.json. A run split by time "
                                   "(ERA5): --uq online-conformal recalibrates the intervals online along the "
                                   "test stream (data.test_stride=1: a forecast every step). A super-resolution run: "
                                   "x4 upsampling against interpolation, with a band. A causal-PINN run: relative L2 "
                                   "against the reference solution (no --uq); writes eval_pinn.json. A meta-flow-"
                                   "matching run: W1/W2/MMD/energy vs identity and oracle; writes eval_mfm.json.")
    s.add_argument("run_dir", help="a folder written by `sciflow train` or `sciflow demo`")
    s.add_argument("--uq", choices=["samples", "ensemble", "mc-dropout", "conformal", "hmc", "laplace",
                                        "online-conformal"],
                   help="uncertainty method (default: eval.uq of the run's config); online-conformal: a run split "
                        "by time, intervals recalibrated along the test stream (eval.online=aci|dtaci|quantile|pid)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.alpha=0.05 eval.horizon=50")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("demo", help="the main job: four CPU-minute steps through sciflow, with a report",
                       description="The main job, no downloads: a neural ODE ensemble with conformal bands on "
                                   "Lorenz-63, Burgers solved by a causal PINN, a WDNO surrogate of forced "
                                   "Burgers with an uncertainty band, and an irregular series forecast by a "
                                   "stable neural SDE; writes metrics, plots and <out>/report.md.")
    s.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    s.add_argument("--quick", action="store_true", help="a smaller run for smoke tests (~20 s a step)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.add_argument("--step", action="append", default=None, metavar="NAME",
                   help="run only this step (repeatable): lorenz_ensemble, causal_pinn_burgers, "
                        "wdno_burgers, stable_sde_irregular (default: all four)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("benchmark", help="run registered benchmarks (smoke / cpu / gpu scale), one JSON each",
                       description="Run benchmarks/run.py: every registered benchmark (or NAMES) at a scale; "
                                   "writes <out>/suite/<name>.json with device, versions, git SHA, seed, wall "
                                   "time, peak memory, metrics, anchors and ratios.",
                       epilog="example: sciflow benchmark ns_generation burgers_generation --scale smoke --out /tmp/b")
    s.add_argument("names", nargs="*", help="benchmark names (default: all; see --list)")
    s.add_argument("--scale", choices=["smoke", "cpu", "gpu"], default="smoke")
    s.add_argument("--out", help="output folder (default: benchmarks/results[/<scale>])")
    s.add_argument("--seed", type=int, default=None, help="seed for benchmarks that take one")
    s.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    s.add_argument("--list", action="store_true", help="list the registry and exit")
    s.add_argument("--dry-run", action="store_true", help="print the commands only")
    s.set_defaults(fn=cmd_benchmark)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value items may follow options (`generate NAME --out x.nc n_time=100`)
    listed = "overrides" if hasattr(args, "overrides") else "params" if hasattr(args, "params") else None
    if extra:
        if listed is None or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, listed, [*getattr(args, listed), *extra])
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, DatasetError, FileNotFoundError, CheckpointError) as e:  # bad input: a message
        print(f"sciflow {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (`sciflow list | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by the signal


if __name__ == "__main__":
    sys.exit(main())
