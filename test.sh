#!/usr/bin/env bash
# Set up everything the tests need (on a fresh machine too), then run every test and check:
# Python lint and types, the browser client's types and unit tests, and pytest (unit,
# integration, fault injection, fuzzing, and end-to-end tests in Debian's Chromium).
# Usage: ./test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"

python3 -c 'import sys; assert sys.version_info >= (3, 11), "mcp-tornado needs Python 3.11+"'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Debian's Chromium drives the browser tests (never a downloaded browser); Debian's
# coturn is the TURN server the TURN tests start (tests/coturn.py), never as a service;
# systemd's systemd-analyze verifies deploy/systemd (tests/test_deploy_systemd.py).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v turnserver >/dev/null || missing+=(coturn)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Under systemd the package starts coturn as a service, with the default config (no
  # authentication, every interface): the tests start their own, so stop and disable it.
  if [[ " ${missing[*]} " == *" coturn "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi

# The Autobahn TestSuite's wstest (Python 2) for tests/autobahn; a no-op once installed.
tests/autobahn/setup.sh

echo "== lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "== browser client: install, types, unit tests, build"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck && npm test && npm run build)

echo "== pytest"
MCP_E2E_SKIP_BUILD=1 .venv/bin/pytest "$@"
