#!/usr/bin/env bash
# Set up everything the tests need (on a fresh machine too), then run every test and check.
# Usage: ./test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"

python3 -c 'import sys; assert sys.version_info >= (3, 11), "mcp-tornado needs Python 3.11+"'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "== pytest"
.venv/bin/pytest "$@"
