#!/usr/bin/env bash
# Create ./.venv (once) and install sciflow with its dev extras (once, and again when
# pyproject.toml changes). Fast and idempotent when everything is in place.
#   PYTHON=python3.11 bash scripts/setup.sh     # choose the interpreter (>= 3.10)
#   TORCH_SPEC="torch==2.13.0" bash scripts/setup.sh
# On a CUDA machine install the CUDA build of torch into .venv first (see README); this script
# keeps an already installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.sciflow-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && python -c "import sciflow, torch" 2>/dev/null; then
  exit 0
fi
if ! python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC (CPU)"
  # the pinned wheel first; where it is not available, the CPU wheel index, then any torch
  pip install "$TORCH_SPEC" \
    || pip install "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu \
    || pip install torch
fi
echo "[setup] installing sciflow (editable) with dev extras"
pip install -e '.[dev]'
touch "$stamp"
