"""Generate ``docs/results.md`` from the benchmark JSON in ``benchmarks/results/``.

    python benchmarks/report.py            # rewrite docs/results.md
    python benchmarks/report.py --check    # exit 1 if docs/results.md is not what the JSON gives

Every number on the page is read from a result file through the metrics of
``benchmarks/registry.py`` (published anchors come with their source); nothing is typed by hand.
CPU results are ``benchmarks/results/<stem>.json`` (the ``cpu`` scale's stems); GPU results,
where ``gpu_check.sh`` has written them, ``benchmarks/results/gpu/<stem>.json``. The output is a
pure function of those files, so regenerating gives an identical page
(``tests/benchmarks/test_report.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry import Benchmark, discover  # noqa: E402
from run import evaluate_metrics, load_results  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
PAGE = BENCH_DIR.parent / "docs" / "results.md"
FAMILY_ORDER = ("causal PINN", "stable neural SDE", "Langevin flow", "wavelet diffusion", "neural operator",
                "meta flow matching", "uncertainty", "solvers", "data", "layers", "training")


def fmt(v: float | None, unit: str = "") -> str:
    """Three significant digits; bytes as MiB; ``—`` for a missing value."""
    if v is None:
        return "—"
    if unit == "B":
        return f"{v / 2**20:.3g} MiB"
    s = f"{v:.3g}"
    return f"{s} {unit}" if unit and unit not in ("", "1") else s


def _ratio_text(m: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """``value / reference`` as a speed-up for times, otherwise as a plain ratio."""
    r = ref.get("ratio")
    if r is None:
        return ""
    if m["unit"] == "s" and r > 0:
        return f" ({1 / r:.3g}x faster)" if r < 1 else f" ({r:.3g}x slower)"
    return f" (ratio {r:.3g})"


def _env_line(doc: Mapping[str, Any], stems: Sequence[str], record: Mapping[str, Any] | None) -> str:
    env = doc.get("environment", {})
    parts = [f"device `{env.get('device', '?')}`" + (f" ({env['device_name']})" if env.get("device_name") else ""),
             f"torch {env.get('torch', '?')}", f"sciflow {env.get('sciflow', '?')}",
             f"git `{str(env.get('git_sha', '?'))[:10]}`", f"run {doc.get('timestamp', '?')}"]
    res = env.get("resources") or {}
    if record and record.get("wall_s") is not None:
        parts.append(f"wall {record['wall_s']:.0f} s, peak RSS {record.get('peak_rss_mib', 0):.0f} MiB")
    elif res.get("peak_rss_mib") is not None:
        parts.append(f"peak RSS {res['peak_rss_mib']:.0f} MiB")
    if res.get("cuda_max_memory_allocated_mib") is not None:
        parts.append(f"CUDA peak {res['cuda_max_memory_allocated_mib']:.0f} MiB")
    files = ", ".join(f"`benchmarks/results/{s}.json`" for s in stems)
    return f"<small>{'; '.join(parts)}. Source: {files}.</small>"


def benchmark_section(b: Benchmark, results: Path, scale: str, prefix: str) -> tuple[list[str], list[dict]]:
    """Markdown for one benchmark and its speed rows (for the summary table)."""
    stems = b.results.get(scale, [])
    doc, found = load_results(results, stems)
    lines = [f"### {b.dataset}", "", f"`{b.name}` — {b.description} (`benchmarks/{b.script}`, owner {b.owner}).", ""]
    if not found:
        how = (f"`python benchmarks/run.py {b.name} --scale {scale}`" if scale in b.scales
               else f"no `{scale}` scale yet (offers {', '.join(sorted(b.scales))})")
        lines += [f"*Not measured yet at the {scale} scale* — {how}.", ""]
        return lines, []
    rec_path = results / "suite" / f"{b.name}.json"
    record = json.loads(rec_path.read_text()) if rec_path.is_file() else None
    lines += ["| metric | sciflow | published anchor | baselines in the same run |", "|---|---|---|---|"]
    speed = []
    for m in evaluate_metrics(b, doc):
        arrow = "↓" if m["better"] == "lower" else "↑"
        anchor = "—"
        if "anchor" in m:
            a = m["anchor"]
            anchor = f"{fmt(a['value'], m['unit'])}{_ratio_text(m, a)} [{a['source']}]"
        base = "; ".join(f"{k}: {fmt(v['value'], m['unit'])}{_ratio_text(m, v)}"
                         for k, v in m.get("baselines", {}).items() if v["value"] is not None) or "—"
        note = f" ({m['note']})" if m.get("note") else ""
        cells = [f"{m['label']} {arrow}{note}", fmt(m['value'], m['unit']), anchor, base]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if b.kind == "speed" and m["unit"] == "s" and m["value"] is not None:
            for k, v in m.get("baselines", {}).items():
                if v["value"] is not None and v["ratio"]:
                    speed.append({"benchmark": b.name, "family": b.family, "what": m["label"], "baseline": k,
                                  "sciflow": m["value"], "reference": v["value"], "speedup": 1 / v["ratio"]})
    lines += ["", _env_line(doc, [f"{prefix}{s}" for s in found], record), ""]
    return lines, speed


def render(results: Path = RESULTS, benchmarks: Mapping[str, Benchmark] | None = None) -> str:
    """The whole page as a string (a pure function of the JSON under ``results``)."""
    benchmarks = benchmarks if benchmarks is not None else discover()
    families = sorted({b.family for b in benchmarks.values()},
                      key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER), f))
    body: list[str] = []
    speed: list[dict] = []
    for fam in families:
        body += [f"## {fam[0].upper() + fam[1:]}", ""]
        for b in (b for b in benchmarks.values() if b.family == fam):
            lines, sp = benchmark_section(b, results, "cpu", "")
            body += lines
            speed += sp
    gpu_dir = results / "gpu"
    gpu_body: list[str] = []
    if gpu_dir.is_dir():
        for b in benchmarks.values():
            if "gpu" in b.results and load_results(gpu_dir, b.results["gpu"])[1]:
                lines, _ = benchmark_section(b, gpu_dir, "gpu", "gpu/")
                gpu_body += lines
    head = [
        "# Results",
        "",
        "<!-- generated by `python benchmarks/report.py` from benchmarks/results/*.json; do not edit -->",
        "",
        "What sciflow measures, against what, and how to reproduce it. Every number below is read from the",
        "JSON that a benchmark script wrote (`benchmarks/results/`); published anchors carry their source;",
        "baselines were measured in the same run on the same machine. ↓: lower is better, ↑: higher is better.",
        "Timings on the shared 2-core CPU machine are noisy: compare the ratios, not the seconds.",
        "",
        "Reproduce: `sciflow benchmark NAME --scale cpu` (or `python benchmarks/run.py NAME --scale cpu`),",
        "then `python benchmarks/report.py`. `--scale smoke` runs every benchmark in CI size;",
        "`bash benchmarks/gpu_check.sh` the GPU-sized checks. `python benchmarks/run.py --list` lists them all.",
        "",
    ]
    if speed:
        head += ["## Speed at a glance", "",
                 "sciflow against the reference implementation, same problem, same run (speed-up > 1: sciflow faster).",
                 "", "| benchmark | what | reference | sciflow | reference time | speed-up |",
                 "|---|---|---|---|---|---|"]
        head += [f"| `{r['benchmark']}` | {r['what']} | {r['baseline']} | {fmt(r['sciflow'], 's')} | "
                 f"{fmt(r['reference'], 's')} | {r['speedup']:.3g}x |" for r in speed]
        head.append("")
    tail = []
    if gpu_body:
        notes = gpu_dir / "CONDITIONS.md"  # how the GPU run went (prose, no measured numbers)
        tail = ["## GPU", "", "Written by `benchmarks/gpu_check.sh` into `benchmarks/results/gpu/`.", "",
                *([notes.read_text().rstrip(), ""] if notes.is_file() else []), *gpu_body]
    return "\n".join(head + body + tail).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate docs/results.md from benchmarks/results/*.json.")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=PAGE)
    ap.add_argument("--check", action="store_true", help="fail if --out differs from the regenerated page")
    args = ap.parse_args(argv)
    page = render(args.results)
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != page:
            print(f"{args.out} is out of date: run `python benchmarks/report.py`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
