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

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
ENV_DIR="${NBPIPE_BENCH_ENV:-$HOME/.cache/nbpipe/bench-env}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nbpipe-target}"

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

papermill_only=0
for arg in "$@"; do
  case "$arg" in
    --papermill-only) papermill_only=1 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

# --- 1. uv ------------------------------------------------------------------------------------
# Prefer a uv on PATH; else pip-install it (plain, then --user for PEP 668 "externally managed"
# system pythons) and run it as `python3 -m uv`, which works wherever pip put it.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  say "uv not found: installing it with pip"
  python3 -m pip install --quiet uv \
    || python3 -m pip install --quiet --user uv \
    || python3 -m pip install --quiet --user --break-system-packages uv \
    || die "could not pip-install uv"
  UV=(python3 -m uv)
fi
say "uv: $("${UV[@]}" --version)"

# --- 2. venv with the kernel and papermill ------------------------------------------------------
# The venv is built from the machine's own python3 (no interpreter downloads). Packages:
# the PNG images of the image case are made with the standard library (zlib), so neither
# matplotlib nor numpy/pillow is needed.
PY_BASE="$(python3 -c 'import sys; print(sys.executable)')"
if [ ! -x "$ENV_DIR/bin/python3" ]; then
  say "creating venv $ENV_DIR (python: $PY_BASE)"
  mkdir -p "$(dirname "$ENV_DIR")"
  UV_PYTHON_DOWNLOADS=never "${UV[@]}" venv --quiet --python "$PY_BASE" "$ENV_DIR"
fi
say "installing ipykernel papermill nbformat jupyter_client into $ENV_DIR"
UV_PYTHON_DOWNLOADS=never "${UV[@]}" pip install --quiet --compile-bytecode \
  --python "$ENV_DIR/bin/python3" ipykernel papermill nbformat jupyter_client
# Write the python3 kernelspec with the venv interpreter's absolute path into
# <venv>/share/jupyter/kernels/python3, which JUPYTER_PATH below puts first for both tools.
"$ENV_DIR/bin/python3" -m ipykernel install --prefix "$ENV_DIR" --name python3 >/dev/null

export JUPYTER_PATH="$ENV_DIR/share/jupyter"
export PATH="$ENV_DIR/bin:$PATH"

# --- 3. nbpipe binary ---------------------------------------------------------------------------
if [ "$papermill_only" = 1 ]; then
  NBPIPE_BIN="${NBPIPE_BIN:-}"
elif [ -n "${NBPIPE_BIN:-}" ]; then
  say "using NBPIPE_BIN=$NBPIPE_BIN (no cargo build)"
else
  say "building nbpipe: cargo build --release -p nbpipe (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  if ! (cd "$REPO_DIR" && cargo build --release -p nbpipe); then
    die "cargo build --release -p nbpipe failed; to run the papermill half alone use: bench/run.sh --papermill-only"
  fi
  NBPIPE_BIN="$CARGO_TARGET_DIR/release/nbpipe"
fi
export NBPIPE_BIN

# --- 4. measure ----------------------------------------------------------------------------------
exec "$ENV_DIR/bin/python3" "$BENCH_DIR/bench.py" "$@"
