# Shared provisioning for bench/run.sh and bench/project.sh. Source it, then call:
#
#   bench_venv [EXTRA_PACKAGE...]  uv (from PATH, else pip-installed), the venv $ENV_DIR with
#                                  ipykernel papermill nbformat jupyter_client (+ extras) and its
#                                  python3 kernelspec; exports JUPYTER_PATH and PATH for both tools
#   bench_build_nbpipe             cargo build --release -p nbpipe unless NBPIPE_BIN is set;
#                                  exports NBPIPE_BIN; returns non-zero if the build fails
#
# Sets BENCH_DIR, REPO_DIR, ENV_DIR (${NBPIPE_BENCH_ENV:-~/.cache/nbpipe/bench-env}) and exports
# CARGO_TARGET_DIR (default ~/.cache/nbpipe-target). Messages are prefixed with [$BENCH_TAG].

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
ENV_DIR="${NBPIPE_BENCH_ENV:-$HOME/.cache/nbpipe/bench-env}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nbpipe-target}"

say() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; exit 1; }

bench_venv() {
  # --- uv: prefer one on PATH; else pip-install it (plain, then --user for PEP 668 "externally
  # managed" system pythons) and run it as `python3 -m uv`, which works wherever pip put it.
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

  # --- the venv, built from the machine's own python3 (no interpreter downloads).
  local py_base
  py_base="$(python3 -c 'import sys; print(sys.executable)')"
  if [ ! -x "$ENV_DIR/bin/python3" ]; then
    say "creating venv $ENV_DIR (python: $py_base)"
    mkdir -p "$(dirname "$ENV_DIR")"
    UV_PYTHON_DOWNLOADS=never "${UV[@]}" venv --quiet --python "$py_base" "$ENV_DIR"
  fi
  say "installing ipykernel papermill nbformat jupyter_client $* into $ENV_DIR"
  UV_PYTHON_DOWNLOADS=never "${UV[@]}" pip install --quiet --compile-bytecode \
    --python "$ENV_DIR/bin/python3" ipykernel papermill nbformat jupyter_client "$@"
  # The python3 kernelspec with the venv interpreter's absolute path, in
  # <venv>/share/jupyter/kernels/python3, which JUPYTER_PATH puts first for both tools.
  "$ENV_DIR/bin/python3" -m ipykernel install --prefix "$ENV_DIR" --name python3 >/dev/null

  export JUPYTER_PATH="$ENV_DIR/share/jupyter"
  export PATH="$ENV_DIR/bin:$PATH"
}

bench_build_nbpipe() {
  if [ -n "${NBPIPE_BIN:-}" ]; then
    say "using NBPIPE_BIN=$NBPIPE_BIN (no cargo build)"
  else
    say "building nbpipe: cargo build --release -p nbpipe (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --release -p nbpipe) || return 1
    NBPIPE_BIN="$CARGO_TARGET_DIR/release/nbpipe"
  fi
  export NBPIPE_BIN
}
