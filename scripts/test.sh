#!/usr/bin/env bash
# The test command (README, .ci/run): set up .venv if needed, lint, run the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .   # package, tests, scripts and notebooks
.venv/bin/python -m pytest "$@"
