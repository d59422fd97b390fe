#!/usr/bin/env bash
# System packages the tests need that no language registry provides:
# Debian's chromium, for the headless-browser checks of HTML reports.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
  echo "test-system-deps: chromium is missing; install Debian's 'chromium' package" >&2
  exit 1
fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
echo "test-system-deps: installing chromium (Debian)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium >&2
