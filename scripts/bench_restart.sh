#!/usr/bin/env bash
# Takeover to first new alert: how long a SIGKILLed detector's partitions stay unjudged when
# another instance, with an empty state directory (another host), takes them over: from the
# state topic, and with the state topic off (every retained reading replayed).
#
#   scripts/bench_restart.sh [SITES...]      default: 8700 26000 sites x 3 days (about 2.5 M and
#                                            7.5 M readings retained on the topic)
#   DAYS=9 scripts/bench_restart.sh 26000    three times the retention
#   BURST=2000000 (default)                  readings that arrive just before the kill
#
# For each size: all but the last BURST readings are ingested and a detector consumes them;
# then the burst arrives while it runs, and once it has consumed the burst it is killed with
# SIGKILL at once — no checkpoint waited for: what the state saved by then, by time or by
# count (`detector.checkpoint_max_replay`), is what the next owner gets. A new detector starts
# on an empty state directory and a reading from a meter the register doesn't know is ingested
# at once; the time from the start to the commit of that meter's alert is the blind time.
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(8700 26000)
days=${DAYS:-3}
burst=${BURST:-2000000}
source scripts/lib/bench.sh
bench_start restart
metrics=127.0.0.1:19641
export GRIDWATCH__DETECTOR__METRICS_LISTEN=$metrics
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

# Until the detector has counted at least $1 readings and restores nothing.
consumed() {
  until [[ $(metric gridwatch_restoring) == 0 ]] 2>/dev/null &&
    [[ $(($(metric gridwatch_readings_total) + $(metric gridwatch_readings_duplicate_total) + $(metric gridwatch_readings_late_total))) -ge $1 ]] 2>/dev/null; do
    kill -0 "$detector" 2>/dev/null || { echo "the detector died" >&2; exit 1; }
    sleep 0.5
  done
}

results=()
for sites in "${sizes[@]}"; do
  data=$work/$sites
  echo "simulating $sites sites x $days days" >&2
  $bin simulate --out "$data" --sites "$sites" --days "$days" --seed 3 >/dev/null
  n=$(($(wc -l <"$data/readings.csv") - 1))
  b=$((burst < n / 2 ? burst : n / 2))
  head -n $((n + 1 - b)) "$data/readings.csv" >"$data/before.csv"
  { head -n 1 "$data/readings.csv"; tail -n "$b" "$data/readings.csv"; } >"$data/burst.csv"
  use_prefix "$prefix-$sites"
  export GRIDWATCH__DETECTOR__STATE_DIR=$work/state-$sites
  $bin topics create >/dev/null
  $bin registry load --registry "$data/registry.csv" >/dev/null
  echo "ingesting $((n - b)) readings" >&2
  $bin ingest --readings "$data/before.csv" >/dev/null
  echo "first detector: consuming them, then a burst of $b" >&2
  $bin detect >"$work/first-$sites.log" 2>&1 &
  detector=$!
  consumed $(((n - b) * 99 / 100))
  $bin ingest --readings "$data/burst.csv" >/dev/null
  consumed $((n * 99 / 100))
  kill_detector KILL
  bytes=$(cat "$root"/deploy/kafka/run/data/"$prefix-$sites".state-*/*.log 2>/dev/null | wc -c)
  echo "takeover on an empty state directory, from the state topic" >&2
  export GRIDWATCH__DETECTOR__STATE_DIR=$work/empty-$sites
  restart_to_alert "$work/with-$sites.log"
  with=$blind
  replayed=$(metric gridwatch_readings_replayed_total)
  kill_detector KILL
  echo "takeover on an empty state directory, the state topic off" >&2
  export GRIDWATCH__DETECTOR__STATE_DIR=$work/empty2-$sites GRIDWATCH__KAFKA__TOPICS__STATE=
  restart_to_alert "$work/without-$sites.log"
  without=$blind
  kill_detector KILL
  results+=("$(printf '%9d readings retained (%6d sites x %d days, the last %d a burst): state topic %5.1f MB; takeover to first new alert %5s s from it (%d readings replayed), %5s s replaying everything' \
    "$n" "$sites" "$days" "$b" "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" "$with" "$replayed" "$without")")
done
echo
printf '%s\n' "${results[@]}"
