"""The benchmark suite: registry, runner records, ratios, smoke runs and the generated results page."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import registry  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from registry import Anchor, Benchmark, Metric, lookup  # noqa: E402

FAKE = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {bench!r})
    from _common import write_result
    mode = sys.argv[1]
    if mode == "fail":
        raise SystemExit("boom: deliberate failure")
    if mode == "hang":
        time.sleep(60)
    x = [0.0] * 2_000_000  # ~16 MB, visible in the peak RSS
    write_result("fake_bench", {{"err": {{"ours": 0.02, "theirs": 0.08}}, "rows": [{{"t": 1.0}}, {{"t": 3.0}}],
                                 "n": float(len(x)), "deadline": float(os.environ.get("SCIFLOW_BENCH_DEADLINE", 0))}})
''')


def fake_benchmark(tmp_path: Path, **kw) -> Benchmark:
    script = tmp_path / "fake_bench.py"
    script.write_text(FAKE.format(bench=str(REPO / "benchmarks")))
    spec = dict(name="fake", script=str(script), family="test", dataset="toy", kind="accuracy", owner="G",
                scales={"smoke": ["ok"], "cpu": ["fail"], "gpu": ["hang"]},
                results={"smoke": ["fake_bench"], "cpu": ["fake_bench"], "gpu": ["fake_bench"]},
                metrics=[Metric("error", "err/ours", anchor=Anchor(0.01, "a paper"),
                                baselines={"theirs": "err/theirs"}),
                         Metric("last row", "rows/-1/t", better="higher"),
                         Metric("absent", "err/nope")])
    spec.update(kw)
    return Benchmark(**spec)


def test_lookup_paths() -> None:
    doc = {"a": {"b.c": [1, {"d": 2.5}]}, "s": "text", "flag": True, "inf": float("inf")}
    assert lookup(doc, "a/b.c/0") == 1.0
    assert lookup(doc, "a/b.c/-1/d") == 2.5
    assert lookup(doc, "a/b.c/5") is None and lookup(doc, "a/x") is None
    assert lookup(doc, "s") is None and lookup(doc, "flag") is None and lookup(doc, "inf") is None
    assert lookup(doc, lambda d: d["a"]["b.c"][1]["d"] * 2) == 5.0
    assert lookup(doc, lambda d: d["missing"]) is None


def test_registry_validates_its_entries() -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        Benchmark(name="x", script="x.py", family="f", dataset="d", kind="speed", owner="o",
                  scales={"huge": []}, results={"huge": ["x"]}, metrics=[])
    with pytest.raises(ValueError, match="no result stem"):
        Benchmark(name="x", script="x.py", family="f", dataset="d", kind="speed", owner="o",
                  scales={"cpu": []}, results={}, metrics=[])
    with pytest.raises(ValueError, match="better"):
        Metric("m", "a", better="up")


def test_every_registered_benchmark_is_runnable_and_reads_its_committed_json() -> None:
    found = registry.discover()
    assert len(found) >= 19
    for b in found.values():
        assert "smoke" in b.scales, f"{b.name}: every benchmark needs a smoke scale"
        assert b.family in report.FAMILY_ORDER, f"{b.name}: family {b.family!r} has no place on the results page"
        if b.owner in ("previous session", "F", "H", "E"):
            assert b.path.is_file(), b.path
        doc, stems = run.load_results(run.BENCH_DIR / "results", b.results.get("cpu", []))
        if stems:  # committed results: the headline metric must resolve to a finite number
            first = run.evaluate_metrics(b, doc)[0]
            assert first["value"] is not None and math.isfinite(first["value"]), (b.name, first)


def test_script_declarations_are_discovered(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "decl.py").write_text(textwrap.dedent('''
        BENCHMARK = {"family": "toy", "dataset": "d", "kind": "speed", "owner": "X",
                     "scales": {"smoke": ["--tiny"]}, "results": {"smoke": "decl_out"},
                     "metrics": [{"label": "t", "path": "a/b", "unit": "s",
                                  "anchor": {"value": 2.0, "source": "paper"}}]}
        raise RuntimeError("never imported")
    '''))
    (tmp_path / "plain.py").write_text("print('no declaration')\n")
    monkeypatch.setattr(registry, "BENCH_DIR", tmp_path)
    found = registry.discover()
    b = found["decl"]
    assert b.results["smoke"] == ["decl_out"] and b.metrics[0].anchor.value == 2.0
    assert "plain.py" in registry.unregistered_scripts(found)


def test_run_one_writes_a_complete_record(tmp_path: Path) -> None:
    b = fake_benchmark(tmp_path)
    rec = run.run_one(b, "smoke", tmp_path / "out")
    assert rec["status"] == "ok", rec.get("log_tail")
    saved = json.loads((tmp_path / "out" / "suite" / "fake.json").read_text())
    assert saved == json.loads(json.dumps(rec, default=float))
    assert rec["wall_s"] > 0 and rec["peak_rss_mib"] > 15  # the 16 MB list is in the peak
    assert rec["seed"] == 0 and rec["environment"]["torch"] and len(rec["environment"]["git_sha"]) >= 7
    err, last, absent = rec["metrics"]
    assert err["value"] == 0.02 and err["anchor"]["ratio"] == pytest.approx(2.0)
    assert err["baselines"]["theirs"]["ratio"] == pytest.approx(0.25)
    assert last["value"] == 3.0 and absent["value"] is None
    # the script wrote into --out, not into benchmarks/results
    assert (tmp_path / "out" / "fake_bench.json").is_file()
    assert not (run.BENCH_DIR / "results" / "fake_bench.json").exists()


def test_run_one_reports_failures_timeouts_and_stale_files(tmp_path: Path) -> None:
    b = fake_benchmark(tmp_path)
    out = tmp_path / "out"
    assert run.run_one(b, "smoke", out)["status"] == "ok"
    failed = run.run_one(b, "cpu", out)  # fails: the older fake_bench.json must not count
    assert failed["status"] == "failed" and "deliberate failure" in failed["log_tail"] and failed["metrics"] == []
    hung = run.run_one(b, "gpu", out, timeout_s=1.0)
    assert hung["status"] == "timeout" and hung["wall_s"] < 30
    missing = run.run_one(fake_benchmark(tmp_path, script=str(tmp_path / "nope.py")), "smoke", out)
    assert missing["status"] == "missing-script"
    noscale = run.run_one(fake_benchmark(tmp_path, scales={"smoke": ["ok"]}), "gpu", out)
    assert noscale["status"] == "no-scale" and noscale["offered"] == ["smoke"]


def test_runner_tells_the_script_its_deadline(tmp_path: Path) -> None:
    import time

    t0 = time.time()
    rec = run.run_one(fake_benchmark(tmp_path), "smoke", tmp_path / "out", timeout_s=100.0)
    assert rec["status"] == "ok"
    deadline = json.loads((tmp_path / "out" / "fake_bench.json").read_text())["deadline"]
    assert t0 + 90 - 1 < deadline < time.time() + 90  # the timeout less a 10 % margin


def test_training_budget_shares_the_time_left(monkeypatch) -> None:
    import time

    from _common import DEADLINE_ENV, time_left, training_budget

    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert time_left() == math.inf and training_budget(12.0, 3) == 12.0 and training_budget(None, 3) is None
    monkeypatch.setenv(DEADLINE_ENV, str(time.time() + 60))
    assert training_budget(None, 3) is None  # a scale without a cap trains for its steps
    assert training_budget(100.0, 3) == pytest.approx(0.5 * 60 / 3, abs=0.1)  # half of the time left, shared
    assert training_budget(5.0, 3) == 5.0
    monkeypatch.setenv(DEADLINE_ENV, str(time.time() - 5))
    assert training_budget(5.0, 2) == 1.0  # past the deadline: the floor (the runner's kill is the backstop)


def test_a_time_budgeted_run_skips_the_parts_the_deadline_leaves_no_time_for(tmp_path: Path) -> None:
    """wdno_burgers with a wall-clock cap and a deadline a few seconds away: the simulation rows are
    scored, the super-resolution and control parts are recorded as skipped, the JSON is complete."""
    import os
    import subprocess
    import time

    env = {**os.environ, "SCIFLOW_BENCH_OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "SCIFLOW_BENCH_DEADLINE": str(time.time() + 1.0)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "wdno_burgers.py"), "--scale", "smoke",
                           "--train-s", "1", "--no-figures"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "wdno_burgers_smoke.json").read_text())
    assert doc["complete"] and set(doc["skipped"]) == {"superres_x4", "control"}
    assert {"wdno", "ddpm_physical", "wdno_same_unet", "fno2d"} <= set(doc["results"])
    assert all(math.isfinite(doc["results"][k]["sim_mse_single_sample"]) for k in ("wdno", "ddpm_physical"))


def test_the_burgers_benchmark_scores_the_packaged_wdno() -> None:
    """At the cpu scale the benchmark's ``wdno`` row is the model ``sciflow train wdno_burgers`` builds:
    the packaged config, whose U-Net is the physical-space DDPM's with its first level dropped."""
    import wdno_burgers as bench

    from sciflow.config import from_dict
    from sciflow.models.wavelet_diffusion import Config

    model_yaml, _ = bench.model_section("wdno_burgers")
    cfgs = bench.simulation_configs(model_yaml, bench.SCALES["cpu"]["unet"])
    build = lambda kw: from_dict(Config, {**kw, "task": "simulation"}, prefix="model")  # noqa: E731
    assert build(cfgs["wdno"]) == build({**model_yaml, "space": "wavelet"})
    ddpm, same = build(cfgs["ddpm_physical"]), build(cfgs["wdno_same_unet"])
    assert (ddpm.base_channels, tuple(ddpm.channel_mults)) == (32, (1, 2, 2)) and ddpm.space == "physical"
    assert (same.base_channels, tuple(same.channel_mults), same.space) == (32, (1, 2, 2), "wavelet")
    assert (build(cfgs["wdno"]).base_channels, tuple(build(cfgs["wdno"]).channel_mults)) == (64, (1, 1))
    from sciflow.models.wavelet_diffusion import SuperResolutionConfig  # its U-Net is the scale's too

    sr_yaml, _ = bench.model_section("wdno_burgers_superres")
    assert (from_dict(SuperResolutionConfig, {**sr_yaml, **bench.SCALES["cpu"]["unet"]}, prefix="model")
            == from_dict(SuperResolutionConfig, sr_yaml, prefix="model"))


def test_smoke_scale_of_a_real_benchmark(tmp_path: Path) -> None:
    """ns_generation at smoke size through the CLI: a schema-complete record with sane numerics."""
    from sciflow.cli import main

    assert main(["benchmark", "ns_generation", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "suite" / "ns_generation.json").read_text())
    assert rec["status"] == "ok" and rec["scale"] == "smoke"
    same_dt, eq, err = rec["metrics"]
    assert same_dt["value"] > 0 and same_dt["baselines"]["FNO generator"]["value"] > 0
    # both generators agree with the fine reference far below the discretisation error of the data
    assert err["value"] < 1e-4 and err["baselines"]["FNO generator"]["value"] < 1e-4


@pytest.mark.slow
def test_smoke_scale_of_every_registered_benchmark(tmp_path: Path) -> None:
    assert run.main(["--scale", "smoke", "--out", str(tmp_path)]) == 0


def test_cli_lists_and_dry_runs(capsys) -> None:
    from sciflow.cli import main

    assert main(["benchmark", "--list"]) == 0
    assert "ode_lorenz" in capsys.readouterr().out
    assert main(["benchmark", "ode_lorenz", "--scale", "smoke", "--dry-run"]) == 0
    assert "--no-compile" in capsys.readouterr().out


def test_results_page_is_generated_from_the_json() -> None:
    page = report.render()
    assert page == report.render()  # a pure function of the files
    current = (REPO / "docs" / "results.md").read_text()
    assert current == page, "docs/results.md is out of date: run `python benchmarks/report.py`"


def test_results_page_shows_the_measured_numbers(tmp_path: Path) -> None:
    b = fake_benchmark(tmp_path)
    (tmp_path / "fake_bench.json").write_text(json.dumps(
        {"err": {"ours": 0.0123, "theirs": 0.0456}, "rows": [{"t": 7.0}], "environment": {"device": "cpu"}}))
    page = report.render(tmp_path, {"fake": b})
    assert "| error ↓ | 0.0123 | 0.01 (ratio 1.23) [a paper] | theirs: 0.0456 (ratio 0.27) |" in page
    assert "| last row ↑ | 7 |" in page
    empty = report.render(tmp_path / "none", {"fake": b})
    assert "Not measured yet" in empty


def test_time_it_reports_the_extra_cuda_memory_of_the_timed_call(monkeypatch) -> None:
    """On CUDA ``time_it`` records the peak allocated above the memory held before the call, and the
    process-wide peak of ``resources`` survives the counter reset (a fake allocator stands in for CUDA)."""
    import _common
    import torch

    state = {"allocated": 100 << 20, "peak": 900 << 20}  # 900 MiB peak from earlier work
    monkeypatch.setattr(_common, "_is_cuda", lambda device: True)
    monkeypatch.setattr(_common, "synchronize", lambda device: None)
    monkeypatch.setattr(_common, "_CUDA_PEAK", {"bytes": 0})
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: state.update(peak=state["allocated"]))

    def fn():  # allocates 50 MiB transiently
        state["peak"] = max(state["peak"], state["allocated"] + (50 << 20))

    out = _common.time_it(fn, repeats=3, device="cuda")
    assert out["cuda_peak_extra_mib"] == pytest.approx(50.0)
    assert _common.resources("cuda")["cuda_max_memory_allocated_mib"] == pytest.approx(900.0)


def test_wdno_burgers_training_stops_when_the_device_slows_after_the_rate_probe() -> None:
    """``wdno_burgers.train`` sizes its schedule from the step rate of steps 10-30; if the steps then
    get 50x slower, it stops at the first progress print past 1.5x the budget instead of overrunning."""
    import time

    import torch
    import wdno_burgers as bench

    w = torch.zeros(3, requires_grad=True)
    calls = {"n": 0}

    def loss_fn(idx, g):
        calls["n"] += 1
        time.sleep(0.1 if calls["n"] > 30 else 0.002)  # a step rate of at most 500/s while probed
        return (w - 1.0).pow(2).sum()

    info = bench.train(loss_fn, [w], 100_000, 1e-2, 64, 8, seed=0, warmup=5, max_time_s=0.3)
    assert info["stopped_early"] and 30 < info["steps"] < info["planned_steps"] < 100_000
    # planned: ~0.3 s at the probed rate (<= 150 steps), i.e. >= 12 s at 0.1 s per step
    assert info["train_wall_s"] < 8.0
