#!/usr/bin/env bash
# Run every test nbpipe has, against real kernels. Provisions what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build the README's demo made (`target/`, or CARGO_TARGET_DIR when set, as CI does) is
# reused: tests and demo share the dev profile.
export PATH="$HOME/.local/bin:$PATH"
scripts/test-system-deps.sh
NBPIPE_TEST_ENV=$(scripts/test-env.sh | tail -n 1)
export NBPIPE_TEST_ENV
# PostgreSQL is installed above: its queue tests must run, not be skipped.
export NBPIPE_TEST_POSTGRES=1
# dockerd, docker-registry and the cached base image for the container tests (they must run).
NBPIPE_TEST_BASE_TAR=$(scripts/test-containers.sh | tail -n 1)
export NBPIPE_TEST_BASE_TAR NBPIPE_TEST_DOCKER=1

# Tests start many kernels; two cores are shared between the test threads and the kernels.
cargo test --workspace --no-fail-fast -- --test-threads="${NBPIPE_TEST_THREADS:-2}"

# The Python package: wheel built with maturin, installed in a fresh venv, pytest.
scripts/test-python.sh
