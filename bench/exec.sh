#!/usr/bin/env bash
# `nbpipe exec` beside a running zygote: one single-cell notebook in a project folder, run by
# papermill, by `nbpipe exec --no-fork-server` (cold kernel) and by `nbpipe exec` while
# `nbpipe run` of the same project holds that environment's zygote (the kernel is forked from
# it), alternating, in the same run.
#
#   bench/exec.sh [--reps N]
#
# Provisions like bench/run.sh (bench/common.sh: uv, the venv $NBPIPE_BENCH_ENV with ipykernel
# and papermill and its python3 kernelspec, `cargo build --release -p nbpipe` unless NBPIPE_BIN
# is set), then runs bench/exec.py with the venv's python: it builds the project's managed
# environment under bench/out/nbpipe-home, measures, prints a table and writes
# bench/out/exec-results.json. Every forked run must really be forked from the held zygote
# (the notebook prints its parent pid), or the bench fails.
#
# Environment: NBPIPE_BENCH_ENV, NBPIPE_BIN, CARGO_TARGET_DIR as for bench/run.sh.
set -euo pipefail

BENCH_TAG=bench-exec
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

bench_venv
bench_build_nbpipe || die "cargo build --release -p nbpipe failed"

exec "$ENV_DIR/bin/python3" "$BENCH_DIR/exec.py" "$@"
