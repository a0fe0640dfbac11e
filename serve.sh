#!/usr/bin/env bash
# Set up mcp-tornado (on a fresh machine too) and run it: router + workers + the browser
# client at http://127.0.0.1:8000/.
# Usage: ./serve.sh [mcp-tornado serve options], e.g. ./serve.sh --workers 4 --port 8000
#
# pip, `npm ci` and the client build run only when what they depend on changed: each
# leaves a stamp (the hash of its inputs) where its output lives, so deleting the output
# (.venv/, frontend/node_modules/, frontend/dist/) or changing an input redoes that step.
set -euo pipefail
cd "$(dirname "$0")"

python3 -c 'import sys; assert sys.version_info >= (3, 11), "mcp-tornado needs Python 3.11+"'

# sha256 of the named files' contents (and names), in a stable order
hash_files() { sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1; }
# run "$@" unless STAMP holds KEY; write KEY to STAMP once "$@" succeeded
step() {
  local stamp=$1 key=$2; shift 2
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then return 0; fi
  "$@"
  mkdir -p "$(dirname "$stamp")"
  echo "$key" > "$stamp"
}

[ -x .venv/bin/python ] || python3 -m venv .venv
pip_key=$({ .venv/bin/python -VV; printf '%s\0' setup.cfg pyproject.toml | hash_files; } | sha256sum | cut -d' ' -f1)
step .venv/.serve-pip.stamp "$pip_key" \
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

npm_key=$({ node --version; printf '%s\0' frontend/package.json frontend/package-lock.json | hash_files; } | sha256sum | cut -d' ' -f1)
step frontend/node_modules/.serve-npm.stamp "$npm_key" \
  bash -c 'cd frontend && npm ci --no-audit --no-fund --loglevel=error'

# the client's sources: everything in frontend/ but node_modules/ and dist/ (plus the
# installed packages' key, so a new `npm ci` rebuilds)
build_key=$({ echo "$npm_key"; find frontend -path frontend/node_modules -prune -o -path frontend/dist -prune -o -type f -print0 | hash_files; } | sha256sum | cut -d' ' -f1)
# (the stamp is not in dist/, which the workers serve; a missing dist/ rebuilds)
[ -f frontend/dist/index.html ] || rm -f frontend/node_modules/.serve-build.stamp
step frontend/node_modules/.serve-build.stamp "$build_key" bash -c 'cd frontend && npm run build'

exec .venv/bin/mcp-tornado serve "$@"
