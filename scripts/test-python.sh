#!/usr/bin/env bash
# The Python API tests: build the wheel with maturin (the `dist` profile of pyproject.toml, in
# the same target dir as the other tests — `target/`, or CARGO_TARGET_DIR — so it is incremental), install it into a fresh venv with ipykernel,
# papermill (for comparisons) and pytest, and run python/tests against real kernels and S3.
# Needs NBPIPE_TEST_ENV (scripts/test-env.sh: maturin, weed). Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${NBPIPE_TEST_ENV:?run scripts/test.sh (it provisions NBPIPE_TEST_ENV)}"
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
PY_ENV=${NBPIPE_PY_API_ENV:-$HOME/.cache/nbpipe/py-api-env}
WHEELS=$(mktemp -d "${TMPDIR:-/tmp}/nbpipe-wheels.XXXXXX")
trap 'rm -rf "$WHEELS"' EXIT

start=$(date +%s)
echo "test-python: building the wheel (maturin, dist profile)" >&2
"$NBPIPE_TEST_ENV/bin/maturin" build --quiet --out "$WHEELS" >&2
wheel=$(ls "$WHEELS"/nbpipe-*.whl)
echo "test-python: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $(( $(date +%s) - start ))s" >&2

rm -rf "$PY_ENV"
uv venv --quiet --python "$(command -v python3)" "$PY_ENV" >&2
VIRTUAL_ENV="$PY_ENV" uv pip install --quiet "$wheel" "ipykernel==7.*" "papermill==2.7.*" pytest >&2

# pytest exits 5 when it collects nothing: that must fail as loudly as a failing test.
set +e
"$PY_ENV/bin/python" -m pytest python/tests -p no:cacheprovider -q "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "test-python: ERROR: pytest collected no tests (exit 5)" >&2
fi
exit $status
