#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the default test suite on 2 workers (slow and GPU tests
# are excluded by default — the GPU tests run on the CPU through tests/test_cuda_on_cpu.py; add
# `-m slow` to run the long numerical checks).
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest -n 2 "$@"
