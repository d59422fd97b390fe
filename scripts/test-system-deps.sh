#!/usr/bin/env bash
# System packages the tests need that no language registry provides: Debian's chromium, for the
# headless-browser checks of HTML reports and the web UI; Debian's postgresql (initdb/pg_ctl),
# for the queue's PostgreSQL tests. Nothing is started here: the tests start what they need.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
  echo "test-system-deps: missing ${missing[*]}; install these Debian packages" >&2
  exit 1
fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
echo "test-system-deps: installing ${missing[*]} (Debian)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
