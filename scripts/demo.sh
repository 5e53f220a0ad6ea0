#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: Lorenz-63 -> neural ODE ensemble ->
# split-conformal uncertainty -> runs/demo/{metrics.json, plots/*.png, member_*/checkpoints}.
#   bash scripts/demo.sh [--out DIR] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
sciflow demo "$@"
