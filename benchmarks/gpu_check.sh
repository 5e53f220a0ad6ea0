#!/usr/bin/env bash
# GPU check: on a CUDA machine, run the GPU tests and a short GPU benchmark of every family that
# offers a `gpu` scale (benchmarks/registry.py), within about 10 minutes, and write the JSON.
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine; results in benchmarks/results/gpu/
#   bash benchmarks/gpu_check.sh --dry-run       # anywhere (CPU): the same pipeline at smoke size
#   options: --out DIR  --speed-budget S (default 250, all speed benchmarks)  --speed-timeout S (default 75,
#            each)  --accuracy-budget S (default 240, each, run together)  --only "NAME ..."  --no-tests  --serial
#
# Steps: (1) device report (torch, CUDA, GPU name, bf16 support); (2) `pytest -m gpu` (dry run:
# collection only); (3) the speed/memory benchmarks with a gpu scale, one after another so that
# each has the device to itself; (4) the accuracy benchmarks with a gpu scale *concurrently*
# (each caps its own training by wall clock and, told the runner's deadline through
# SCIFLOW_BENCH_DEADLINE, fits its phases before it: see benchmarks/_common.training_budget; their
# step rates are those of a shared GPU, said in the summary); `--serial` runs them one by one instead;
# (5) `<out>/gpu_check.json`: device, test outcome, per-benchmark status, wall time, memory.
# Dry run: `--scale smoke` on CPU through the same runner and records.
# After a real run: `python benchmarks/report.py` adds the GPU section to docs/results.md.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0; OUT=""; SPEED_BUDGET=250; SPEED_TIMEOUT=75; ACC_BUDGET=240; ONLY=""; TESTS=1; SERIAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --speed-budget) SPEED_BUDGET="$2"; shift ;;
    --speed-timeout) SPEED_TIMEOUT="$2"; shift ;;
    --accuracy-budget) ACC_BUDGET="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --no-tests) TESTS=0 ;;
    --serial) SERIAL=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi

HAS_CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$DRY" = 0 ] && [ "$HAS_CUDA" != 1 ]; then
  echo "gpu_check.sh: no CUDA device visible to torch; use --dry-run to check the pipeline on CPU" >&2
  exit 3
fi
if [ "$DRY" = 1 ]; then SCALE=smoke; OUT=${OUT:-$(mktemp -d)/gpu-dry-run}; else SCALE=gpu; OUT=${OUT:-benchmarks/results/gpu}; fi
mkdir -p "$OUT/suite"
T0=$(date +%s)

echo "[gpu_check] 1/4 device"
$PY - "$OUT/device.json" <<'PYEOF'
import json, sys, torch
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                bf16_supported=torch.cuda.is_bf16_supported(), memory_gib=p.total_memory / 2**30,
                multiprocessors=p.multi_processor_count)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
PYEOF

echo "[gpu_check] 2/4 tests marked gpu"
TEST_STATUS="skipped"
if [ "$TESTS" = 1 ]; then
  if [ "$DRY" = 1 ]; then ARGS=(--collect-only -q); else ARGS=(-q -rs --continue-on-collection-errors); fi
  timeout 120 $PY -m pytest -m gpu -p no:cacheprovider "${ARGS[@]}" > "$OUT/pytest_gpu.log" 2>&1
  rc=$?
  case $rc in 0) TEST_STATUS="passed" ;; 5) TEST_STATUS="none collected" ;; 124) TEST_STATUS="timeout" ;;
              *) TEST_STATUS="failed (exit $rc)" ;; esac
  tail -5 "$OUT/pytest_gpu.log"
fi

# benchmarks offering the scale, split by kind (speed/memory: alone; accuracy: together)
# (the dry run selects the same benchmarks: those with a gpu scale, run at smoke scale)
pick() {  # $1: "speed" (speed and memory) or "accuracy"
  $PY - "$1" "$ONLY" <<'PYEOF'
import sys
sys.path.insert(0, "benchmarks")
from registry import discover
want, only = sys.argv[1], sys.argv[2].split()
print(" ".join(n for n, b in discover().items() if "gpu" in b.scales and (b.kind == "accuracy") == (want == "accuracy")
               and (not only or n in only)))
PYEOF
}
read -r -a SPEED <<< "$(pick speed)"
read -r -a ACC <<< "$(pick accuracy)"

echo "[gpu_check] 3/4 speed benchmarks at scale $SCALE, one at a time (budget ${SPEED_BUDGET}s): ${SPEED[*]:-none}"
if [ ${#SPEED[@]} -gt 0 ]; then
  $PY benchmarks/run.py "${SPEED[@]}" --scale "$SCALE" --out "$OUT" --budget "$SPEED_BUDGET" \
      --timeout "$SPEED_TIMEOUT" > "$OUT/speed.log" 2>&1
  tail -n $(( ${#SPEED[@]} + 1 )) "$OUT/speed.log"
fi

echo "[gpu_check] 4/4 accuracy benchmarks at scale $SCALE, $([ $SERIAL = 1 ] && echo serial || echo concurrent) (budget ${ACC_BUDGET}s): ${ACC[*]:-none}"
if [ "$SERIAL" = 1 ]; then
  [ ${#ACC[@]} -gt 0 ] && $PY benchmarks/run.py "${ACC[@]}" --scale "$SCALE" --out "$OUT" --budget "$ACC_BUDGET" > "$OUT/accuracy.log" 2>&1
else
  for name in "${ACC[@]}"; do
    $PY benchmarks/run.py "$name" --scale "$SCALE" --out "$OUT" --timeout "$ACC_BUDGET" > "$OUT/suite/$name.runner.log" 2>&1 &
  done
  wait
fi

$PY - "$OUT" "$SCALE" "$TEST_STATUS" "$(( $(date +%s) - T0 ))" "$DRY" "$SERIAL" <<'PYEOF'
import json, sys
from pathlib import Path
out, scale, tests, seconds, dry, serial = (Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                           sys.argv[5] == "1", sys.argv[6] == "1")
recs = {p.stem: json.loads(p.read_text()) for p in sorted((out / "suite").glob("*.json"))}
summary = {"dry_run": dry, "scale": scale, "seconds": seconds, "device": json.loads((out / "device.json").read_text()),
           "pytest_gpu": tests,
           "accuracy_benchmarks": "one after another" if serial else
           "concurrently on the one GPU (each caps its training by wall clock; step rates are shared-GPU rates)",
           "benchmarks": {k: {"kind": r.get("kind"), "status": r["status"], "wall_s": r.get("wall_s"),
                              "cuda_max_memory_allocated_mib": r.get("cuda_max_memory_allocated_mib")}
                          for k, r in recs.items()}}
tmp = out / "gpu_check.json.tmp"
tmp.write_text(json.dumps(summary, indent=2) + "\n")
tmp.replace(out / "gpu_check.json")
for k, v in summary["benchmarks"].items():
    print(f"{k:<34} {v['status']:<10} {v['wall_s'] or 0:7.1f} s")
PYEOF
echo "[gpu_check] done in $(( $(date +%s) - T0 )) s: $OUT/gpu_check.json"
FAILED=$($PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(v['status']!='ok' for v in d['benchmarks'].values()))" "$OUT/gpu_check.json")
case "$TEST_STATUS" in failed*|timeout) exit 1 ;; esac
[ "$FAILED" = 0 ] || exit 1
