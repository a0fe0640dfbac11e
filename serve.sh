#!/usr/bin/env bash
# Set up mcp-tornado (on a fresh machine too) and run it: router + workers + the browser
# client at http://127.0.0.1:8000/.
# Usage: ./serve.sh [mcp-tornado serve options], e.g. ./serve.sh --workers 4 --port 8000
set -euo pipefail
cd "$(dirname "$0")"

python3 -c 'import sys; assert sys.version_info >= (3, 11), "mcp-tornado needs Python 3.11+"'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build)

exec .venv/bin/mcp-tornado serve "$@"
