#!/usr/bin/env bash
# Image benchmark: `nbpipe image build` cold (empty image store), warm with nothing changed,
# and after a notebook-only change; then a container run's overhead over a local `nbpipe run`
# of the same one-notebook project.
#
#   bench/image.sh [--runs N]      (N container and local runs each, default 5)
#
# Provisions what the container tests use (scripts/test-containers.sh: Debian's docker.io and
# docker-registry, a cached debootstrapped bookworm base), starts a private dockerd and registry
# on 127.0.0.1 and stops them at the end. The binary is NBPIPE_BIN (default: `cargo build
# --release -p nbpipe`); the image gets a stripped copy (NBPIPE_IMAGE_BINARY). The cold build
# still uses uv's download cache: it measures resolving, installing and layering, not PyPI.
set -euo pipefail
BENCH_TAG=bench-image
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
export PATH="$HOME/.local/bin:$PATH"
BASE_TAR=$("$REPO_DIR/scripts/test-containers.sh" | tail -n 1)
bench_venv
bench_build_nbpipe || die "cargo build --release -p nbpipe failed"

W=$(mktemp -d /tmp/nbb.XXXXXX)
cleanup() {
  [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null || true
  if [ -f "$W/d.pid" ]; then
    docker -H "unix://$W/d.sock" ps -aq | xargs -r docker -H "unix://$W/d.sock" rm -f >/dev/null 2>&1 || true
    kill "$(cat "$W/d.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$W/d.pid" ] || break; sleep 0.2; done
  fi
  grep -o " $W[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: %s\n' "$W" "$REG" > "$W/registry.yml"
/usr/bin/docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 & REG_PID=$!
dockerd --iptables=false --bridge=none --data-root "$W/data" --exec-root "$W/x" \
  --pidfile "$W/d.pid" -H "unix://$W/d.sock" > "$W/dockerd.log" 2>&1 &
export DOCKER_HOST="unix://$W/d.sock" DOCKER_CONFIG="$W/docker-config"
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
say "importing the base image"
docker import "$BASE_TAR" "$REG/base:bookworm" >/dev/null
docker push "$REG/base:bookworm" >/dev/null

P="$W/project"; mkdir -p "$P"
cat > "$P/report.ipynb" <<'NB'
{"cells": [{"cell_type": "code", "execution_count": null, "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [], "source": ["n = 3"]},
 {"cell_type": "code", "execution_count": null, "id": "c", "metadata": {}, "outputs": [], "source": ["print(sum(range(n)))"]}],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
NB
echo "six==1.16.0" > "$P/requirements.txt"
printf 'name: bench\nnotebooks: [report.ipynb]\nimage:\n  name: %s/bench/report\n  base: %s/base:bookworm\n' "$REG" "$REG" > "$P/nbpipe.yaml"
(cd "$P" && git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm bench)
strip -o "$W/nbpipe-slim" "$NBPIPE_BIN" 2>/dev/null || cp "$NBPIPE_BIN" "$W/nbpipe-slim"
export NBPIPE_IMAGE_BINARY="$W/nbpipe-slim" NBPIPE_HOME="$W/home"

now() { date +%s.%N; }
timed() { local t0; t0=$(now); "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err" >&2; die "$* failed"; }; python3 -c "print(f'{$(now)-$t0:.2f}')"; }
cold=$(timed "$NBPIPE_BIN" image build --no-smoke "$P")
warm=$(timed "$NBPIPE_BIN" image build --no-smoke "$P")
sed -i 's/sum(range(n))/sum(range(n * 2))/' "$P/report.ipynb"
nbonly=$(timed "$NBPIPE_BIN" image build --push --no-smoke "$P")
DIGEST=$(python3 -c "import json;print(json.load(open('$P/.nbpipe/image.json'))['digest'])")
IMG="$REG/bench/report@$DIGEST"
docker pull -q "$IMG" >/dev/null
say "build: cold ${cold}s, warm unchanged ${warm}s, notebook-only change ${nbonly}s"

"$NBPIPE_BIN" env "$P" >/dev/null 2>&1
local_t=(); cont_t=()
for i in $(seq "$RUNS"); do
  local_t+=("$(timed "$NBPIPE_BIN" run "$P" --quiet --output "$W/out-local/$i/")")
  cont_t+=("$(timed docker run --rm --network host -v "$W:/w" -e NBPIPE_OUTPUT="/w/out-ctr/$i/" "$IMG")")
done
python3 - "$cold" "$warm" "$nbonly" "${local_t[*]}" "${cont_t[*]}" <<'PY'
import statistics, sys
cold, warm, nb, loc, ctr = sys.argv[1:]
loc = [float(x) for x in loc.split()]; ctr = [float(x) for x in ctr.split()]
ml, mc = statistics.median(loc), statistics.median(ctr)
print(f"image build  cold {cold} s · warm, nothing changed {warm} s · notebook-only change {nb} s (this one also pushes: the first push of every layer to the registry)")
print(f"run          local median {ml:.2f} s · container median {mc:.2f} s · overhead {mc-ml:+.2f} s ({mc/ml:.2f}x), n={len(loc)}")
PY
