#!/usr/bin/env bash
# Python API benchmark: nbpipe.execute_notebook vs papermill.execute_notebook, in-process from
# the same Python, same kernel, same run, for 1, 200 and 1,000 cells of `x = 1`.
#
#   bench/python_api.sh [--quick] [--reps N]
#
# Provisions like bench/run.sh (bench/common.sh: uv, the bench venv with ipykernel, papermill,
# nbformat, jupyter_client and its python3 kernelspec), then builds the nbpipe wheel with
# maturin (the `dist` profile of pyproject.toml, CARGO_TARGET_DIR reused) and installs it into
# the venv, unless NBPIPE_WHEEL names a wheel to install instead. Results: a table on stdout and
# bench/out/python-api-results.json.
set -euo pipefail

BENCH_TAG=python-api
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

bench_venv maturin
if [ -z "${NBPIPE_WHEEL:-}" ]; then
  wheels="$BENCH_DIR/out/wheels"
  rm -rf "$wheels"
  say "building the wheel: maturin build (dist profile, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$REPO_DIR" && "$ENV_DIR/bin/maturin" build --quiet --out "$wheels") || die "maturin build failed"
  NBPIPE_WHEEL=$(ls "$wheels"/nbpipe-*.whl)
fi
say "installing $NBPIPE_WHEEL"
UV_PYTHON_DOWNLOADS=never "${UV[@]}" pip install --quiet --reinstall --python "$ENV_DIR/bin/python3" "$NBPIPE_WHEEL"

exec "$ENV_DIR/bin/python3" "$BENCH_DIR/python_api.py" "$@"
