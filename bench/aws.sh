#!/usr/bin/env bash
# AWS benchmark, on moto: `nbpipe deploy aws` times (first deploy with image build and push,
# redeploy with nothing changed, --plan, switch to service mode, --destroy) and the time from
# an object put to the ECS task launch request in both deploy modes.
#
#   bench/aws.sh [EVENTS]     (default 20 objects per mode)
#
# Provisions what the deploy tests use (scripts/test-env.sh: moto, boto3;
# scripts/test-containers.sh: Debian's dockerd and docker-registry standing in for ECR, the
# cached base image), then runs the ignored test `bench_aws` (crates/nbpipe/tests/bench_aws.rs),
# which prints a table and writes bench/out/aws-results.json. There is no papermill
# counterpart to compare with: papermill neither deploys nor reacts to objects.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/nbpipe-target}
export PATH="$HOME/.local/bin:$PATH"
NBPIPE_TEST_ENV=$(scripts/test-env.sh | tail -n 1)
NBPIPE_TEST_BASE_TAR=$(scripts/test-containers.sh | tail -n 1)
export NBPIPE_TEST_ENV NBPIPE_TEST_BASE_TAR NBPIPE_TEST_DOCKER=1
export NBPIPE_BENCH_EVENTS=${1:-20}
exec cargo test -q -p nbpipe --test bench_aws -- --ignored --nocapture --test-threads=1
