#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment: Python 3.10, pip inside it (TFX runs
# `pip install --target` at run time), the pinned lock (exactly as locked: --no-deps, see
# requirements.in for the one override), and this project as an editable package.
# Idempotent: a stamp holding the hash of the lock, pyproject.toml and this script skips the
# install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

find_python310() {
  # PATH first (a pyenv shim that does not select 3.10 fails the version check), then pyenv's versions.
  # A python3.10 inside another virtual environment (an activated venv) stands for its base
  # interpreter, so the new venv never depends on another one.
  local exe base pyenv_root
  pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for exe in "$(command -v python3.10 || true)" "$pyenv_root"/versions/3.10*/bin/python3.10; do
    if [ -x "$exe" ] && base=$("$exe" -c 'import sys; assert sys.version_info[:2] == (3, 10); import os; print(sys.executable if sys.prefix == sys.base_prefix else os.path.join(sys.base_prefix, "bin", "python3.10"))' 2>/dev/null); then
      echo "$base"; return 0
    fi
  done
  return 1
}

stamp_value() { cat requirements.txt overrides.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$(stamp_value)" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python310); then
    echo "setup: no Python 3.10 found; TFX 1.16 needs it: install one (e.g. 'pyenv install 3.10', or your distribution's python3.10 with its venv module) and re-run" >&2
    exit 1
  fi
  echo "setup: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.9
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set
# (containers, CI) Python never writes them either, so every process compiled TensorFlow, TFX
# and TFMA from source on import: 30 s against 11 s with bytecode, measured here, paid again by
# each Beam worker, Airflow task, server worker and `cartola` command.
"$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" --quiet --no-deps --compile-bytecode -r requirements.txt
"$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" --quiet --no-deps -e .
stamp_value > "$VENV/.setup-stamp"
echo "setup: $VENV ready ($("$VENV/bin/python" --version))"
