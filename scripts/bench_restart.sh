#!/usr/bin/env bash
# Restart to first new alert: how long a SIGKILLed detector is blind, with its checkpoint and
# without (checkpoints off: every retained reading replayed), at two retention sizes.
#
#   scripts/bench_restart.sh [SITES...]      default: 8700 26000 sites x 3 days (about 2.5 M and
#                                            7.5 M readings retained on the topic)
#
# For each size: the readings are ingested and a detector (checkpoint every 10 s) consumes them
# all; once a checkpoint covering them is written, the detector is killed with SIGKILL (steady
# state: the utility's stream is quiet between batches). A new detector starts and a reading
# from a meter the register doesn't know is ingested at once; the time from the start to the
# commit of that meter's alert is the blind time. Then the same with checkpoints off.
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(8700 26000)
days=3
source scripts/lib/bench.sh
bench_start restart
metrics=127.0.0.1:19641
export GRIDWATCH__DETECTOR__METRICS_LISTEN=$metrics
export GRIDWATCH__DETECTOR__CHECKPOINT_INTERVAL_S=10
export GRIDWATCH_LOG=info

detector=
kill_detector() {
  if [[ -n $detector ]]; then
    kill -"${1:-KILL}" "$detector" 2>/dev/null || true
    wait "$detector" 2>/dev/null || true
    detector=
  fi
}
cleanup() {
  kill_detector
  bench_cleanup
}
trap cleanup EXIT

now() { date +%s.%N; }

# Starts a detector, ingests one reading of an unknown meter, and sets `blind` to the seconds
# from the start to the commit of its alert.
restart_to_alert() {
  local log=$1 t0 t
  t0=$(now)
  $bin detect >"$log" 2>&1 &
  detector=$!
  printf 'meter_id,ts,interval_s,kwh\nNEW-%s,2026-01-08T00:15:00Z,900,0.5\n' "$(date +%s%N)" |
    $bin ingest --readings - >/dev/null
  until [[ $(metric gridwatch_alerts_total) -ge 1 ]] 2>/dev/null; do
    kill -0 "$detector" 2>/dev/null || { cat "$log" >&2; echo "the detector died" >&2; exit 1; }
    sleep 0.05
  done
  t=$(now)
  blind=$(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.1f", b - a }')
}

results=()
for sites in "${sizes[@]}"; do
  data=$work/$sites
  echo "simulating $sites sites x $days days" >&2
  $bin simulate --out "$data" --sites "$sites" --days "$days" --seed 3 >/dev/null
  n=$(($(wc -l <"$data/readings.csv") - 1))
  use_prefix "$prefix-$sites"
  export GRIDWATCH__DETECTOR__STATE_DIR=$work/state-$sites
  $bin topics create >/dev/null
  $bin registry load --registry "$data/registry.csv" >/dev/null
  echo "ingesting $n readings" >&2
  $bin ingest --readings "$data/readings.csv" >/dev/null
  echo "first detector: consuming all of them" >&2
  $bin detect >"$work/first-$sites.log" 2>&1 &
  detector=$!
  until [[ $(metric gridwatch_restoring) == 0 ]] 2>/dev/null &&
    [[ $(($(metric gridwatch_readings_total) + $(metric gridwatch_readings_duplicate_total) + $(metric gridwatch_readings_late_total))) -ge $((n * 99 / 100)) ]] 2>/dev/null; do
    sleep 1
  done
  caught_up=$(date +%s)
  until [[ $(metric gridwatch_checkpoint_timestamp_seconds) -gt $caught_up ]] 2>/dev/null; do
    sleep 1
  done
  bytes=$(metric gridwatch_checkpoint_bytes)
  sleep 2
  kill_detector KILL
  echo "restart with the checkpoint" >&2
  restart_to_alert "$work/with-$sites.log"
  with=$blind
  kill_detector KILL
  echo "restart without (checkpoints off)" >&2
  export GRIDWATCH__DETECTOR__STATE_DIR=
  restart_to_alert "$work/without-$sites.log"
  without=$blind
  kill_detector KILL
  results+=("$(printf '%9d readings retained (%6d sites x %d days): checkpoint %5.1f MB; restart to first new alert %5s s with it, %5s s replaying everything' \
    "$n" "$sites" "$days" "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" "$with" "$without")")
done
echo
printf '%s\n' "${results[@]}"
