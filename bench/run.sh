#!/usr/bin/env bash
# nbpipe vs papermill benchmark: one command, provisions everything itself.
#
#   bench/run.sh [--quick] [--papermill-only] [--reps N] [--only CASE,...]
#
# Needs only cargo and python3 + pip on the machine. Steps (see bench/README.md for options):
#   1. find or install `uv` (pip install uv);
#   2. create/update the Python venv $NBPIPE_BENCH_ENV (default ~/.cache/nbpipe/bench-env)
#      with ipykernel, papermill, nbformat, jupyter_client, and install its python3 kernelspec
#      into <venv>/share/jupyter so that both tools start the very same kernel;
#   3. build nbpipe (`cargo build --release -p nbpipe`, CARGO_TARGET_DIR defaults to
#      ~/.cache/nbpipe-target) unless NBPIPE_BIN names a binary to use instead;
#   4. run bench/bench.py with the venv's python (it measures, prints, writes bench/out/results.json).
#
# Environment:
#   NBPIPE_BENCH_ENV  venv location (default $HOME/.cache/nbpipe/bench-env)
#   NBPIPE_BIN        nbpipe binary to benchmark; skips the cargo build. If it does not exist,
#                     the nbpipe half is skipped with a message (papermill half still runs).
#   CARGO_TARGET_DIR  cargo target dir (default $HOME/.cache/nbpipe-target)
set -euo pipefail

BENCH_TAG=bench
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

papermill_only=0
for arg in "$@"; do
  case "$arg" in
    --papermill-only) papermill_only=1 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

# --- 1.-2. uv, and the venv with the kernel and papermill (bench/common.sh) ------------------
bench_venv

# --- 3. nbpipe binary ---------------------------------------------------------------------------
if [ "$papermill_only" = 1 ]; then
  NBPIPE_BIN="${NBPIPE_BIN:-}"
elif ! bench_build_nbpipe; then
  die "cargo build --release -p nbpipe failed; to run the papermill half alone use: bench/run.sh --papermill-only"
fi
export NBPIPE_BIN

# --- 4. measure ----------------------------------------------------------------------------------
exec "$ENV_DIR/bin/python3" "$BENCH_DIR/bench.py" "$@"
