#!/usr/bin/env bash
# The twin checked against the real CPU testbed (issue 6): the same workload (configs/experiment/sim_vs_real.yaml)
# on backend=sim and backend=testbed for each system, then notebooks/06_sim_vs_real.ipynb writes
# results/tables/sim_vs_real.md. Needs the testbed extra (WITH_TESTBED=1 bash scripts/setup_env.sh).
# Takes ~5-8 min per testbed system on the 2-core machine (engine starts are ~35-45 s each there).
#   [FORCE=1] [REPEAT=1] bash scripts/sim_vs_real.sh [system ...]   (default: reactive warmserve; finished runs
#   are skipped by warmserve.run unless FORCE=1; REPEAT=1 runs each testbed system a second time into
#   testbed-<system>-repeat, so the table shows the testbed's own run-to-run noise)
set -euo pipefail
cd "$(dirname "$0")/.."
systems=("$@")
force=()
[ "${FORCE:-0}" = "1" ] && force=(+force=true)
[ ${#systems[@]} -eq 0 ] && systems=(reactive warmserve)
.venv/bin/python -m warmserve.testbed.tiny_models --out .cache/models --sizes tiny-s tiny-m
for sys in "${systems[@]}"; do
  for backend in sim testbed; do
    echo "[sim_vs_real] $backend / $sys"
    .venv/bin/python -m warmserve.run +experiment=sim_vs_real backend="$backend" system="$sys" \
      out="results/sim_vs_real/$backend-$sys" progress=false "${force[@]}"
  done
  if [ "${REPEAT:-0}" = "1" ]; then
    echo "[sim_vs_real] testbed / $sys (repeat)"
    .venv/bin/python -m warmserve.run +experiment=sim_vs_real backend=testbed system="$sys" \
      out="results/sim_vs_real/testbed-$sys-repeat" progress=false "${force[@]}"
  fi
done
.venv/bin/python -m papermill notebooks/06_sim_vs_real.ipynb /tmp/06_sim_vs_real.out.ipynb -k python3 >/dev/null
echo "[sim_vs_real] wrote results/tables/sim_vs_real.md"
