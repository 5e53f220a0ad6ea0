"""Shared benchmark plumbing: timing medians, environment metadata, JSON output.

Every benchmark writes ``benchmarks/results/<name>.json`` with the device, library versions,
git SHA, the raw timings (medians over repeats), the anchor measured in the same run and the
ratios. Tests never assert wall-clock times; these scripts do the measuring.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch._dynamo  # noqa: F401  (see below)

# The first torch.optim optimiser imports torch._dynamo (~2 CPU-s on this machine): importing it
# here keeps that one-off cost out of the training time of whichever model a benchmark fits first.

#: Where results go. ``benchmarks/run.py`` points ``SCIFLOW_BENCH_OUT`` at its ``--out`` folder so a
#: script run by the suite (smoke scale in CI, GPU check) never overwrites the committed results.
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
RESULTS = Path(os.environ.get("SCIFLOW_BENCH_OUT") or DEFAULT_RESULTS)
_T_START = time.perf_counter()


def git_sha() -> str:
    """``git rev-parse HEAD``, or ``$SCIFLOW_GIT_SHA`` where the tree is a copy without ``.git``."""
    if os.environ.get("SCIFLOW_GIT_SHA"):
        return os.environ["SCIFLOW_GIT_SHA"]
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, text=True,
            stderr=subprocess.DEVNULL,
        ).strip()
    except Exception:
        return "unknown"


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    device = torch.device(device)
    env: dict[str, Any] = {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "git_sha": git_sha(),
        "platform": platform.platform(),
    }
    for mod in ("sciflow", "numpy", "scipy", "torchdiffeq", "torchsde"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            pass
    return env


def resources(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Peak memory of this process so far: RSS (MiB) and, on CUDA, ``max_memory_allocated`` (MiB)."""
    out: dict[str, Any] = {"process_wall_s": time.perf_counter() - _T_START}
    try:
        import resource

        # Linux reports ru_maxrss in KiB, macOS in bytes
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_mib"] = rss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    except Exception:  # no resource module (Windows)
        pass
    if _is_cuda(device):
        out["cuda_max_memory_allocated_mib"] = max(_CUDA_PEAK["bytes"], torch.cuda.max_memory_allocated(device)) / 2**20
    return out


#: the process's CUDA peak before :func:`time_it` last reset the counter (``resources`` reports the larger)
_CUDA_PEAK = {"bytes": 0}


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


#: Set by ``benchmarks/run.py``: the ``time.time()`` by which this process must have written its
#: results (its timeout less a margin). Unset when a script is run by hand.
DEADLINE_ENV = "SCIFLOW_BENCH_DEADLINE"


def time_left() -> float:
    """Seconds until the runner's deadline (``$SCIFLOW_BENCH_DEADLINE``); ``inf`` when there is none."""
    stamp = os.environ.get(DEADLINE_ENV)
    return float("inf") if not stamp else float(stamp) - time.time()


def training_budget(cap_s: float | None, phases_left: int, share: float = 0.5) -> float | None:
    """Wall-clock seconds for the next of ``phases_left`` training phases of a time-budgeted scale.

    ``cap_s``: the scale's own cap (``None``: the scale trains for its step count, untouched). Under
    the runner's deadline the cap shrinks so that the training still to run takes at most ``share``
    of the time left, the rest being for sampling, scoring and writing the results.
    """
    if cap_s is None:
        return None
    left = time_left()
    if left == float("inf"):
        return cap_s
    return max(min(cap_s, share * left / max(phases_left, 1)), 1.0)


def shown_path(path: Path) -> str:
    """How a written file is recorded in a result: relative to the repository when inside it (the
    committed results), else absolute (a suite run's ``--out`` folder elsewhere)."""
    repo, path = Path(__file__).resolve().parents[1], Path(path).resolve()
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_it(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
            device: torch.device | str = "cpu") -> dict[str, float]:
    """Median/min/max wall time of ``fn()`` over ``repeats`` after ``warmup`` calls; on CUDA also
    ``cuda_peak_extra_mib``, the most memory ``fn`` allocated above what was allocated before it
    (the process-wide peak stays in :func:`resources`)."""
    cuda = _is_cuda(device)
    if cuda:
        synchronize(device)
        _CUDA_PEAK["bytes"] = max(_CUDA_PEAK["bytes"], torch.cuda.max_memory_allocated(device))
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    out = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}
    if cuda:
        out["cuda_peak_extra_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return out


def seed_summary(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    """``<key>_median``, ``_min`` and ``_max`` over the runs (seeds) of each scalar metric ``key``."""
    out: dict[str, float] = {}
    for key in keys:
        vals = [r[key] for r in runs if key in r]
        if vals:
            out.update({f"{key}_median": statistics.median(vals), f"{key}_min": min(vals), f"{key}_max": max(vals)})
    return out


def scale_config(scales: dict[str, dict[str, Any]], args: Any) -> dict[str, Any]:
    """The settings of scale ``args.scale`` with the command-line overrides (``args.<key>`` not
    ``None``) applied."""
    cfg = dict(scales[args.scale])
    for key in cfg:
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def median_run(runs: list[dict[str, Any]], key: str = "rel_l2") -> dict[str, Any]:
    """The run (seed) at the median of ``key`` (the lower of the two middle ones for an even count)."""
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


def keep_median_figures(runs: list[dict[str, Any]], median: dict[str, Any]) -> None:
    """Pop each run's ``figures`` (paths tagged ``_seed<k>``): the median run's lose the tag, taking
    the benchmark's figure names; the others are deleted."""
    for r in runs:
        for f in map(Path, r.pop("figures", ())):
            if r is median:
                f.replace(f.with_name(f.name.replace(f"_seed{r['seed']}", "")))
            else:
                f.unlink(missing_ok=True)


def write_result(name: str, payload: dict[str, Any], device: torch.device | str = "cpu",
                 out_dir: Path | None = None) -> Path:
    """Write ``payload`` plus the environment to ``<out_dir>/<name>.json`` atomically."""
    out_dir = Path(out_dir or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    env = {**environment(device), "resources": resources(device)}
    doc = {"benchmark": name, "environment": env,
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    print(json.dumps(doc, indent=2, default=float))
    return path
