#!/usr/bin/env bash
# Fork-server benchmark: kernel ready (launch -> first execute_reply) from nbpipe's zygote vs
# nbpipe's cold start vs jupyter_client's (papermill's) cold start, in the same run, plus the
# zygote's memory and a forked kernel's private (copy-on-write) memory vs a cold kernel's.
#
#   bench/fork.sh [--n N] [--preload MODULE ...]
#
# Provisions like bench/run.sh (bench/common.sh: uv, the venv $NBPIPE_BENCH_ENV with ipykernel
# and papermill and its python3 kernelspec), builds the `kernel_ready` example of nbpipe-kernel
# (release), runs bench/fork.py with the venv's python; results in bench/out/fork-results.json.
#
# Environment: NBPIPE_BENCH_ENV, CARGO_TARGET_DIR as for bench/run.sh.
set -euo pipefail

BENCH_TAG=bench-fork
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

bench_venv
say "building the kernel_ready example (release)"
(cd "$REPO_DIR" && cargo build --release -p nbpipe-kernel --example kernel_ready) \
  || die "cargo build --release -p nbpipe-kernel --example kernel_ready failed"
export KERNEL_READY_BIN="$CARGO_TARGET_DIR/release/examples/kernel_ready"

exec "$ENV_DIR/bin/python3" "$BENCH_DIR/fork.py" "$@"
