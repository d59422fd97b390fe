#!/usr/bin/env bash
# What the container tests need, installed once and cached: Debian's docker.io (dockerd, runc),
# docker-registry and debootstrap, and a Debian bookworm root filesystem with python3 (the base
# image of the tests; no public registry is reachable) kept as a tarball under
# ~/.cache/nbpipe/images/. Nothing is started here: the tests start their own dockerd and
# registry on private sockets/ports and stop them. Prints the base tarball's path last.
set -euo pipefail
CACHE=${NBPIPE_TEST_IMAGE_CACHE:-$HOME/.cache/nbpipe/images}
BASE="$CACHE/bookworm-python3.tar"
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  echo "test-containers: installing ${missing[*]} (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  # The registry package's own service is never started (no systemd here); we run it ourselves.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [[ ! -s "$BASE" ]]; then
  mkdir -p "$CACHE"
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "test-containers: making the base image root filesystem (debootstrap, ~2 min)" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO /usr/sbin/debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >&2
  $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  $SUDO tar --numeric-owner -C "$root" -cf "$BASE.tmp" .
  mv "$BASE.tmp" "$BASE"
fi
echo "$BASE"
