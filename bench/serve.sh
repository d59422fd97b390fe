#!/usr/bin/env bash
# Service benchmark: `nbpipe serve` event -> first cell latency (with and without the warm kernel
# pool) and runs completed per minute for a stream of small events, on this machine.
#
#   bench/serve.sh [--quick] [--latency-events N] [--throughput-events N] [--burst N]
#                  [--no-cold-throughput] [--inbox-events N] [--timeout SECONDS]
#
# Provisions like bench/run.sh (bench/common.sh: uv, the venv $NBPIPE_BENCH_ENV with ipykernel
# and papermill and its python3 kernelspec, `cargo build --release -p nbpipe` unless NBPIPE_BIN
# is set), then runs bench/serve.py with the venv's python: it generates a one-notebook project
# under bench/out/serve-project/, starts `nbpipe serve` on 127.0.0.1 (random port, random token,
# NBPIPE_HOME=bench/out/serve-home), measures, prints tables and writes
# bench/out/serve-results.json.
#
#   --quick   10 latency events per mode, 200 throughput events, warm-pool throughput only
#             (full: 30 latency events, 1,000 throughput events, with and without the pool)
#
# Environment: NBPIPE_BENCH_ENV, NBPIPE_BIN, CARGO_TARGET_DIR as for bench/run.sh.
set -euo pipefail

BENCH_TAG=bench-serve
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

bench_venv
bench_build_nbpipe || die "cargo build --release -p nbpipe failed"

exec "$ENV_DIR/bin/python3" "$BENCH_DIR/serve.py" "$@"
