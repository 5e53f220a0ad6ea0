"""Run registered benchmarks at one scale and write one JSON record per benchmark.

    python benchmarks/run.py [NAMES ...] --scale smoke|cpu|gpu [--out DIR] [--list] [--dry-run]
    sciflow benchmark [NAMES ...] --scale smoke        # the same, from the CLI

Each benchmark script runs in its own process (``python benchmarks/<script> <scale args>``) with
``SCIFLOW_BENCH_OUT=<out>`` so that its JSON (``_common.write_result``) and figures land in
``--out``, and ``SCIFLOW_BENCH_DEADLINE`` (its timeout less a margin) so that a scale whose
training is capped by wall clock fits its phases before the kill (``_common.training_budget``);
the runner then writes ``<out>/suite/<name>.json``:

* ``environment``: device, torch / sciflow / numpy versions, git SHA (from the script's JSON);
* ``seed``, ``command``, ``status``, ``wall_s`` (the whole process), ``peak_rss_mib`` (the
  process and its children, from ``wait4``), ``cuda_max_memory_allocated_mib`` (on CUDA, from
  the script);
* ``metrics``: per registered :class:`~registry.Metric`, sciflow's value, the same-run
  baselines, the published anchor with its source, and the ratios ``value / reference``.

Default ``--out``: ``benchmarks/results`` for ``cpu`` (the committed results that
``report.py`` renders), ``benchmarks/results/<scale>`` for ``smoke`` and ``gpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEADLINE_ENV, environment  # noqa: E402
from registry import SCALES, Benchmark, discover, lookup, unregistered_scripts  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_TIMEOUT_S = {"smoke": 300.0, "cpu": 3600.0, "gpu": 600.0}
MIN_START_S = 30.0  #: ``--budget``: a benchmark is not started with less than this left


def default_out(scale: str) -> Path:
    return BENCH_DIR / "results" if scale == "cpu" else BENCH_DIR / "results" / scale


def _mtimes(out: Path) -> dict[str, int]:
    """``stem -> st_mtime_ns`` of every result file in ``out`` now (to tell stale files from fresh
    ones, also for a second benchmark entry that reads the same run with other stems)."""
    return {p.stem: p.stat().st_mtime_ns for p in Path(out).glob("*.json")}


def load_results(out: Path, stems: Sequence[str], stale: Mapping[str, int] | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """The script's JSON files ``<out>/<stem>.json`` merged (first wins), and the stems found.

    ``stale``: ``stem -> st_mtime_ns`` taken before the run; a file still carrying that exact
    mtime was left by an earlier run and is ignored (no clock-granularity guesswork).
    """
    doc: dict[str, Any] = {}
    found = []
    for stem in stems:
        path = Path(out) / f"{stem}.json"
        if path.is_file() and (stale is None or path.stat().st_mtime_ns != stale.get(stem)):
            try:
                part = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: corrupt benchmark JSON ({e})") from None
            for k, v in part.items():
                doc.setdefault(k, v)
            found.append(stem)
    return doc, found


def evaluate_metrics(bench: Benchmark, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registered metrics read from ``doc``: value, baselines, anchor and ratios (value / reference)."""
    rows = []
    for m in bench.metrics:
        value = lookup(doc, m.path)
        row: dict[str, Any] = {"label": m.label, "value": value, "unit": m.unit, "better": m.better}
        if m.note:
            row["note"] = m.note
        if m.anchor is not None:
            row["anchor"] = {"value": m.anchor.value, "source": m.anchor.source,
                             "ratio": value / m.anchor.value if value is not None and m.anchor.value else None}
        base = {}
        for label, path in m.baselines.items():
            b = lookup(doc, path)
            base[label] = {"value": b, "ratio": value / b if value is not None and b else None}
        if base:
            row["baselines"] = base
        rows.append(row)
    return rows


def _run_process(cmd: list[str], env: dict[str, str], log: Path, timeout_s: float) -> tuple[int | None, float, float]:
    """Run ``cmd`` (own process group) with output to ``log``; (returncode or None on timeout, wall s, peak RSS MiB)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        rc: int | None = None
        rss_kib = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                rss_kib = usage.ru_maxrss  # the child, including the descendants it waited for
                proc.returncode = rc
                break
            if time.perf_counter() - t0 > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                rss_kib = usage.ru_maxrss
                break
            time.sleep(0.05)
    return rc, time.perf_counter() - t0, rss_kib / 1024


def run_one(bench: Benchmark, scale: str, out: Path, *, seed: int | None = None, timeout_s: float | None = None,
            cache: dict | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run ``bench`` at ``scale`` into ``out``; write and return ``<out>/suite/<name>.json``."""
    out = Path(out).resolve()
    suite = out / "suite"
    suite.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"benchmark": bench.name, "family": bench.family, "dataset": bench.dataset,
                              "kind": bench.kind, "owner": bench.owner, "scale": scale, "script": bench.script}
    if not bench.path.is_file():
        record.update(status="missing-script", environment=environment("cpu"))
    elif scale not in bench.scales:
        record.update(status="no-scale", offered=sorted(bench.scales), environment=environment("cpu"))
    else:
        seed_used = bench.seed if seed is None or bench.seed_flag is None else seed
        args = bench.command(scale, seed if bench.seed_flag else None)
        cmd = [sys.executable, str(bench.path), *args]
        record.update(command=["python", f"benchmarks/{bench.script}", *args], seed=seed_used,
                      seed_source=bench.seed_flag or "fixed in the script")
        key = (bench.script, tuple(args))
        stale = _mtimes(out)
        if cache is not None and key in cache:  # two entries reading one run of the same command
            rc, wall, rss, log, stale = cache[key]
            record["shared_run_with"] = log.stem
        else:
            env = dict(os.environ, SCIFLOW_BENCH_OUT=str(out), PYTHONUNBUFFERED="1")
            env.setdefault("OMP_NUM_THREADS", "1")
            log = suite / f"{bench.name}.log"
            limit = timeout_s or bench.timeout_s.get(scale) or DEFAULT_TIMEOUT_S[scale]
            # the script sizes its time-budgeted phases to finish (and write its JSON) before the kill
            env[DEADLINE_ENV] = f"{time.time() + limit - min(30.0, 0.1 * limit):.3f}"
            if verbose:
                print(f"[benchmark] {bench.name} ({scale}): {' '.join(record['command'])}", flush=True)
            rc, wall, rss = _run_process(cmd, env, log, limit)
            if cache is not None:
                cache[key] = (rc, wall, rss, log, stale)
        record.update(returncode=rc, wall_s=wall, peak_rss_mib=rss, log=str(log.relative_to(out)))
        doc, found = load_results(out, bench.results[scale], stale=stale)
        record["result_files"] = [f"{s}.json" for s in found]
        record["status"] = ("timeout" if rc is None else "failed" if rc != 0
                            else "ok" if found else "no-result")
        env_doc = doc.get("environment") or environment("cpu")
        res = env_doc.get("resources", {}) if isinstance(env_doc, dict) else {}
        record["environment"] = {k: v for k, v in env_doc.items() if k != "resources"}
        if "cuda_max_memory_allocated_mib" in res:
            record["cuda_max_memory_allocated_mib"] = res["cuda_max_memory_allocated_mib"]
        record["metrics"] = evaluate_metrics(bench, doc) if found else []
        if record["status"] != "ok":
            record["log_tail"] = log.read_text()[-3000:] if log.is_file() else ""
    path = suite / f"{bench.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    return record


def select(names: Sequence[str], benchmarks: Mapping[str, Benchmark]) -> list[Benchmark]:
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; registered: {sorted(benchmarks)}")
    return [benchmarks[n] for n in names] if names else list(benchmarks.values())


def summary_line(r: Mapping[str, Any]) -> str:
    first = next((m for m in r.get("metrics", []) if m["value"] is not None), None)
    shown = f"{first['label']} = {first['value']:.4g}" if first else ""
    wall = f"{r['wall_s']:.1f} s" if "wall_s" in r else ""
    return f"{r['benchmark']:<32} {r['status']:<15} {wall:>9}  {shown}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run registered sciflow benchmarks and write one JSON per benchmark.")
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all registered)")
    ap.add_argument("--scale", choices=SCALES, default="smoke")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: benchmarks/results for cpu, benchmarks/results/<scale> otherwise)")
    ap.add_argument("--seed", type=int, default=None, help="seed for scripts that take one")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default by scale)")
    ap.add_argument("--budget", type=float, default=None,
                    help="total seconds: benchmarks not started within it are recorded as skipped-budget")
    ap.add_argument("--only-with-scale", action="store_true",
                    help="run only the benchmarks that offer --scale (others are not recorded)")
    ap.add_argument("--list", action="store_true", help="list registered benchmarks and unregistered scripts")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    benchmarks = discover()
    if args.list:
        for b in benchmarks.values():
            present = "" if b.path.is_file() else "  [script missing]"
            print(f"{b.name:<32} {b.family:<20} scales: {','.join(sorted(b.scales)):<15} {b.script}{present}")
        extra = unregistered_scripts(benchmarks)
        if extra:
            print("unregistered scripts (add a BENCHMARK declaration or a registry entry):", ", ".join(extra))
        return 0
    chosen = select(args.names, benchmarks)
    out = args.out or default_out(args.scale)
    if args.dry_run:
        for b in chosen:
            if args.scale in b.scales:
                print("python", f"benchmarks/{b.script}", *b.command(args.scale, args.seed if b.seed_flag else None))
            else:
                print(f"# {b.name}: no {args.scale} scale (offers {sorted(b.scales)})")
        return 0
    if args.only_with_scale:
        chosen = [b for b in chosen if args.scale in b.scales]
    cache: dict = {}
    records = []
    t_start = time.perf_counter()
    for b in chosen:
        elapsed = time.perf_counter() - t_start
        # a benchmark started with seconds of budget left is only killed ("timeout", a failure: the
        # GPU check's ns_generation got 1 s that way): below MIN_START_S it is skipped instead
        if args.budget is not None and args.budget - elapsed < MIN_START_S:
            records.append({"benchmark": b.name, "status": "skipped-budget", "scale": args.scale})
            continue
        limit = args.timeout
        if args.budget is not None:  # never run past the budget
            limit = min(limit or DEFAULT_TIMEOUT_S[args.scale], max(args.budget - elapsed, 1.0))
        records.append(run_one(b, args.scale, out, seed=args.seed, timeout_s=limit, cache=cache, verbose=True))
    print(f"\n[benchmark] scale {args.scale}, records in {Path(out) / 'suite'}")
    for r in records:
        print(summary_line(r))
    failed = [r["benchmark"] for r in records if r["status"] in ("failed", "timeout", "no-result")]
    if failed:
        print(f"[benchmark] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
