#!/usr/bin/env bash
# GPU check: on a CUDA machine, run the GPU tests and a short GPU benchmark of every family that
# offers a `gpu` scale (benchmarks/registry.py), within a time budget, and write the JSON.
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine; results in benchmarks/results/gpu/
#   bash benchmarks/gpu_check.sh --dry-run       # anywhere (CPU): the same pipeline at smoke size
#   options: --out DIR  --budget SECONDS (benchmarks, default 480)  --only "NAME ..."  --no-tests
#
# Steps: (1) device report (torch, CUDA, GPU name, bf16 support); (2) `pytest -m gpu`
# (dry run: collection only); (3) `benchmarks/run.py --scale gpu` (dry run: `--scale smoke` on
# CPU, same runner, same records) for the benchmarks with a gpu scale, stopping new ones when the
# budget is spent; (4) `<out>/gpu_check.json`: device, test outcome, per-benchmark status.
# After a real run: `python benchmarks/report.py` adds the GPU section to docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0; OUT=""; BUDGET=480; ONLY=""; TESTS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --no-tests) TESTS=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
mkdir -p "$OUT"
T0=$(date +%s)

echo "[gpu_check] 1/3 device"
$PY - "$OUT/device.json" <<'PYEOF'
import json, sys, torch
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
if torch.cuda.is_available():
    info.update(name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                bf16_supported=torch.cuda.is_bf16_supported(),
                memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
PYEOF

echo "[gpu_check] 2/3 tests marked gpu"
TEST_STATUS="skipped"
if [ "$TESTS" = 1 ]; then
  if [ "$DRY" = 1 ]; then ARGS=(--collect-only -q); else ARGS=(-q); fi
  if $PY -m pytest -m gpu -p no:cacheprovider "${ARGS[@]}" > "$OUT/pytest_gpu.log" 2>&1; then
    TEST_STATUS="passed"
  else
    rc=$?; [ $rc = 5 ] && TEST_STATUS="none collected" || TEST_STATUS="failed (exit $rc)"
  fi
  tail -3 "$OUT/pytest_gpu.log"
fi

echo "[gpu_check] 3/3 benchmarks at scale $SCALE into $OUT (budget ${BUDGET}s)"
# shellcheck disable=SC2086
if [ -n "$ONLY" ]; then NAMES=($ONLY); else NAMES=($($PY benchmarks/run.py --list | awk '$0 ~ /scales: [^ ]*gpu/ {print $1}')); fi
BENCH_STATUS=0
$PY benchmarks/run.py "${NAMES[@]}" --scale "$SCALE" --out "$OUT" --budget "$BUDGET" --only-with-scale || BENCH_STATUS=$?

$PY - "$OUT" "$SCALE" "$TEST_STATUS" "$(( $(date +%s) - T0 ))" "$DRY" <<'PYEOF'
import json, sys
from pathlib import Path
out, scale, tests, seconds, dry = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
recs = {p.stem: json.loads(p.read_text()) for p in sorted((out / "suite").glob("*.json"))}
summary = {"dry_run": dry, "scale": scale, "seconds": seconds, "device": json.loads((out / "device.json").read_text()),
           "pytest_gpu": tests,
           "benchmarks": {k: {"status": r["status"], "wall_s": r.get("wall_s"),
                              "cuda_max_memory_allocated_mib": r.get("cuda_max_memory_allocated_mib")}
                          for k, r in recs.items()}}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({k: v["status"] for k, v in summary["benchmarks"].items()}))
PYEOF
echo "[gpu_check] done in $(( $(date +%s) - T0 )) s: $OUT/gpu_check.json"
case "$TEST_STATUS" in failed*) exit 1 ;; esac
exit "$BENCH_STATUS"
