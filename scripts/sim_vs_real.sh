#!/usr/bin/env bash
# The twin checked against the real CPU testbed (issue 6), calibrated on the machine that compares, in one command:
#   1. a short calibration of THIS machine (python -m warmserve.calibrate --quick, ~4-5 min on 2 cores) into
#      <root>/calibration/{raw.json,hardware/cpu-testbed-local.yaml}; configs/hardware/cpu-testbed.yaml is untouched
#   2. per system: the twin (backend=sim) with that profile, then REPEAT real runs (backend=testbed, same profile
#      for the policy) into testbed-<system>, testbed-<system>-repeat, testbed-<system>-repeat2, ...; each real
#      run gets host.json (machine without hostname, revision, load average during it)
#   3. the table: notebooks/06_sim_vs_real.ipynb -> results/tables/sim_vs_real.md (full form), or
#      <root>/sim_vs_real.md (reduced form); refused if runs and calibration mix revisions or machines.
# Needs the testbed extra (WITH_TESTBED=1 bash scripts/setup_env.sh). Run it on a quiet machine.
#   [FORCE=1] [REPEAT=3] bash scripts/sim_vs_real.sh [system ...]     full: reactive warmserve, 3 real runs each,
#                                                                     150 s replays -> results/sim_vs_real (22 min on 2 cores)
#   REDUCED=1 bash scripts/sim_vs_real.sh [system ...]                reduced: warmserve, 2 real runs, 60 s replays,
#                                                                     no loaded-start calibration
#                                                                     -> results/sim_vs_real-reduced (7 min 25 s on 2 cores)
# PORT_FIRST=<port> moves the engines' loopback ports (testbed: 400 from it, calibration: 100 after those) away from
# another testbed on the same machine. Finished runs (and an existing calibration) are kept unless FORCE=1; ALLOW_MIXED=1 builds the table anyway
# from runs of mixed revisions/machines (and says so in its header).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
systems=("$@")
if [ "${REDUCED:-0}" = "1" ]; then
  root=${ROOT:-results/sim_vs_real-reduced}
  repeat=${REPEAT:-2}
  [ ${#systems[@]} -eq 0 ] && systems=(warmserve)
  shorter=(replay_s=60 workload.replay_s=60)     # a short replay: proves the path end to end, not the numbers
  loaded=()                                      # no start-next-to-a-busy-engine measurement (saves ~1 min)
  table=$root/sim_vs_real.md
else
  root=${ROOT:-results/sim_vs_real}
  repeat=${REPEAT:-3}
  [ ${#systems[@]} -eq 0 ] && systems=(reactive warmserve)
  shorter=()
  loaded=(--load-cores 1)
  table=results/tables/sim_vs_real.md
fi
force=0; [ "${FORCE:-0}" = "1" ] && force=1
name=cpu-testbed-local
cal="$root/calibration"
hw=(hydra.searchpath="[file://$PWD/$cal]" hardware="$name")   # the machine-local profile, for twin and testbed
ports=(); cal_ports=()
if [ -n "${PORT_FIRST:-}" ]; then                # another testbed on this loopback: keep clear of its ports
  ports=(backend.ports.first="$PORT_FIRST"); cal_ports=(--port-first "$((PORT_FIRST + 400))")
fi
pin=()
ncpu=$(nproc)
# controller + front door + client (one process) and pre-spawned imports off the slots' cores 0 and 1, if any spare
[ "$ncpu" -ge 3 ] && pin=(backend.host_cores="2-$((ncpu - 1))")
t_start=$(date +%s)
$py -m warmserve.testbed.tiny_models --out .cache/models --sizes tiny-s tiny-m

if [ "$force" = "1" ] || [ ! -f "$cal/raw.json" ]; then
  echo "[sim_vs_real] calibrating this machine (quick mode) -> $cal"
  rm -rf "$cal"
  $py -m warmserve.calibrate --quick --models tiny-s tiny-m "${loaded[@]}" --name "$name" "${cal_ports[@]}" \
    --out "$cal/hardware/$name.yaml" --raw "$cal/raw.json"
fi

done_run() { [ "$force" = "0" ] && [ -f "$1/summary.json" ]; }
for sys in "${systems[@]}"; do
  out="$root/sim-$sys"
  if done_run "$out"; then echo "skip $out"; else
    echo "[sim_vs_real] twin / $sys"
    $py -m warmserve.run +experiment=sim_vs_real backend=sim system="$sys" "${hw[@]}" "${shorter[@]}" \
      out="$out" progress=false +force=true
  fi
  for i in $(seq 1 "$repeat"); do
    suffix=""; [ "$i" -ge 2 ] && suffix="-repeat"; [ "$i" -ge 3 ] && suffix="-repeat$((i - 1))"
    out="$root/testbed-$sys$suffix"
    if done_run "$out"; then echo "skip $out"; continue; fi
    echo "[sim_vs_real] testbed / $sys ($i of $repeat)"
    $py -m warmserve.calibrate.machine --out "$out.host.json" -- \
      $py -m warmserve.run +experiment=sim_vs_real backend=testbed system="$sys" "${hw[@]}" "${pin[@]}" "${ports[@]}" \
      "${shorter[@]}" out="$out" progress=false +force=true
    mv "$out.host.json" "$out/host.json"          # after the run: warmserve.run replaces its folder atomically
  done
done

mixed=(); [ "${ALLOW_MIXED:-0}" = "1" ] && mixed=(--allow-mixed)
if [ "${REDUCED:-0}" = "1" ]; then
  $py -m warmserve.analysis.sim_vs_real --root "$root" --out "$table" "${mixed[@]}"
else
  $py -m papermill notebooks/06_sim_vs_real.ipynb /tmp/06_sim_vs_real.out.ipynb -k python3 \
    -p results_dir "$root" -p allow_mixed "$([ ${#mixed[@]} -gt 0 ] && echo True || echo False)" >/dev/null
fi
echo "[sim_vs_real] wrote $table in $(( ($(date +%s) - t_start) / 60 )) min"
