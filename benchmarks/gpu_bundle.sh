#!/usr/bin/env bash
# Bundle for running `benchmarks/gpu_check.sh` on an offline CUDA machine that already has PyTorch
# (an HPC compute node, a borrowed accelerator): wheels of sciflow's other dependencies that such
# images often lack, the reference data the GPU benchmarks read from ../shared/reference, and a
# runner that installs the wheels into a scratch folder and packs every result into one archive.
#
#   bash benchmarks/gpu_bundle.sh [DIR]          # here, with a package index; DIR defaults to .gpu_bundle
#   bash DIR/run.sh [RESULTS] [gpu_check options]  # there, from the repository root (RESULTS: /tmp/gpu_results)
#
# The wheels are pinned to the versions of this checkout's .venv (else the newest) and fetched for
# CPython $PYVER (default 3.12) on manylinux x86-64. The runner writes RESULTS/gpu_all.tgz (the
# whole `gpu_check.sh --out` folder) and RESULTS/console.txt; with GPU_CHECK_LIMIT=S in its environment
# the check is stopped after S seconds and what it wrote is still packed. Afterwards, here:
#   tar xzf gpu_all.tgz && cp -r gpu/* benchmarks/results/gpu/ && python benchmarks/report.py
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu_bundle}
PYVER=${PYVER:-3.12}
PY=${PYTHON:-python3}; [ -x .venv/bin/python ] && PY=.venv/bin/python
# not in a typical CUDA/PyTorch image: the SDE backend, wavelets, NetCDF/GRIB readers, a test scorer
# (POT is left out, 32 MB: the tests that need it skip). eccodes 2.41.0 is the newest wheel with the
# library inside; later ones depend on eccodeslib + eckitlib (45 MB).
PKGS=(torchsde trampoline PyWavelets h5netcdf cfgrib eccodes==2.41.0 findlibs cffi pycparser properscoring)
rm -rf "$DIR"; mkdir -p "$DIR/wheels" "$DIR/reference"
for p in "${PKGS[@]}"; do
  spec=$p
  case $p in *==*) ;; *) v=$($PY -m pip show "$p" 2>/dev/null | sed -n 's/^Version: //p'); spec=$p${v:+==$v} ;; esac
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DIR/wheels" "$spec" \
    || { echo "gpu_bundle.sh: no wheel for $spec (CPython $PYVER, manylinux x86-64)" >&2; exit 1; }
done
if [ -d ../shared/reference ]; then cp -r ../shared/reference/. "$DIR/reference/"; fi

cat > "$DIR/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs benchmarks/gpu_check.sh with the bundled wheels; see benchmarks/gpu_bundle.sh.
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd)
cd "$B/.."
RES=${1:-/tmp/gpu_results}; shift || true
mkdir -p "$RES"
SITE=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$B"/wheels/*.whl \
  || { echo "run.sh: installing the bundled wheels failed" >&2; exit 1; }
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHON=python3
# the benchmarks read ../shared/reference (the repository's sibling folder)
if [ ! -d ../shared/reference ] && [ -n "$(ls -A "$B/reference" 2>/dev/null)" ]; then
  mkdir -p ../shared && cp -r "$B/reference" ../shared/reference
fi
# GPU_CHECK_LIMIT (seconds, 0: none) stops the check in time for the archive to be packed
timeout -k 10 "${GPU_CHECK_LIMIT:-0}" bash benchmarks/gpu_check.sh --out "$RES/gpu" "$@" 2>&1 | tee "$RES/console.txt"
rc=${PIPESTATUS[0]}
tar czf "$RES/gpu_all.tgz" -C "$RES" gpu console.txt
echo "run.sh: gpu_check.sh exit $rc; results in $RES/gpu_all.tgz"
exit "$rc"
EOF
chmod +x "$DIR/run.sh"
du -sh "$DIR"
