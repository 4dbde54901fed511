#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
echo "nothing to run yet"
