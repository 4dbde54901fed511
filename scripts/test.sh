#!/usr/bin/env bash
# The test command (README, .ci/run): set up .venv if needed, lint, type-check, run the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .   # package, tests, scripts and notebooks
.venv/bin/mypy           # the package's annotations ([tool.mypy] in pyproject.toml); non-zero on any error
.venv/bin/python -m pytest "$@"
