#!/usr/bin/env bash
# Install the Autobahn TestSuite's `wstest` (Python 2 only) into .venv-autobahn/, once.
# Idempotent: with wstest already there it only says so. With no Python 2.7 on the machine it
# says so in one line and exits 0; tests/autobahn/test_autobahn.py then skips with that reason.
# Python 2.7 is looked for in $AUTOBAHN_PYTHON2, pyenv's versions, then python2.7/python2 on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venv-autobahn
VERSION=25.10.1

if "$VENV/bin/python" -c "import autobahntestsuite" 2>/dev/null && [ -x "$VENV/bin/wstest" ]; then
  echo "autobahn: wstest ready ($VENV/bin/wstest)"
  exit 0
fi

is_py27() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; }

python2=""
pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
for candidate in "${AUTOBAHN_PYTHON2:-}" "$pyenv_root"/versions/2.7*/bin/python2.7 \
  "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
  if is_py27 "$candidate"; then python2="$candidate"; break; fi
done
if [ -z "$python2" ]; then
  echo "autobahn: no Python 2.7 found (set AUTOBAHN_PYTHON2); the Autobahn tests will be skipped"
  exit 0
fi

echo "autobahn: installing autobahntestsuite==$VERSION into $VENV with $python2"
pip_quiet=(--quiet --disable-pip-version-check)
export PIP_NO_PYTHON_VERSION_WARNING=1  # pip 19 (pyenv's 2.7.18) lacks the flag; both read this
rm -rf "$VENV"
trap 'rm -rf "$VENV"' ERR  # never leave a half-made virtualenv that looks ready
# virtualenv 20.22 dropped Python 2 environments; the interpreter's own copy is reused if present.
if ! "$python2" -m virtualenv --version >/dev/null 2>&1; then
  "$python2" -m pip install "${pip_quiet[@]}" 'virtualenv<20.22'
fi
"$python2" -m virtualenv --quiet "$VENV"
"$VENV/bin/python" -m pip install "${pip_quiet[@]}" "autobahntestsuite==$VERSION"
"$VENV/bin/wstest" --help >/dev/null
echo "autobahn: wstest ready ($VENV/bin/wstest)"
