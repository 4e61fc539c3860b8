#!/usr/bin/env bash
# What checkpointing costs the detector: the same readings consumed from the topic by a fresh
# detector with checkpoints off, then with a checkpoint every INTERVAL seconds (default 5,
# twelve times the default rate, so the cost shows), each run from the start of the topic
# under its own consumer group. Prints readings per second for each and the difference.
#
#   scripts/bench_checkpoint.sh [SITES] [DAYS] [INTERVAL]     default 10000 sites x 3 days, 5 s
#
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sites=${1:-10000}
days=${2:-3}
interval=${3:-5}
source scripts/lib/bench.sh
bench_start ckpt
use_prefix "$prefix"
metrics=127.0.0.1:19643
export GRIDWATCH__DETECTOR__METRICS_LISTEN=$metrics
export GRIDWATCH_LOG=warn

detector=
cleanup() {
  [[ -z $detector ]] || kill -KILL "$detector" 2>/dev/null || true
  bench_cleanup
}
trap cleanup EXIT

echo "simulating $sites sites x $days days" >&2
$bin simulate --out "$work/data" --sites "$sites" --days "$days" --seed 3 >/dev/null
n=$(($(wc -l <"$work/data/readings.csv") - 1))
$bin topics create >/dev/null
$bin registry load --registry "$work/data/registry.csv" >/dev/null
echo "ingesting $n readings" >&2
$bin ingest --readings "$work/data/readings.csv" >/dev/null

# Consumes the whole topic under a new group; prints readings per second.
consume() { # name, state dir ('' = checkpoints off)
  export GRIDWATCH__DETECTOR__GROUP_ID=$prefix-$1
  export GRIDWATCH__DETECTOR__TRANSACTIONAL_ID=$prefix-$1-0
  export GRIDWATCH__DETECTOR__STATE_DIR=$2
  export GRIDWATCH__DETECTOR__CHECKPOINT_INTERVAL_S=$interval
  local t0 t1
  t0=$(date +%s.%N)
  $bin detect >"$work/$1.log" 2>&1 &
  detector=$!
  until [[ $(metric gridwatch_records_consumed_total) -ge $n ]]; do
    kill -0 "$detector" 2>/dev/null || { cat "$work/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  t1=$(date +%s.%N)
  local taken
  taken=$(metric gridwatch_checkpoint_timestamp_seconds)
  kill -TERM "$detector"; wait "$detector" || true; detector=
  awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$taken" -v name="$1" \
    'BEGIN { printf "%-22s %8.0f readings/s (%.1f s)%s\n", name, n / (b - a), b - a, (c > 0 ? ", checkpoints taken" : "") }'
}
off=$(consume checkpoints-off "")
on=$(consume "checkpoint-every-${interval}s" "$work/state")
echo
echo "$n readings from the topic, one detector:"
echo "$off"
echo "$on"
awk -v a="$(echo "$off" | awk '{print $2}')" -v b="$(echo "$on" | awk '{print $2}')" \
  'BEGIN { printf "checkpointing costs %.1f %% of the detector'"'"'s throughput\n", (a - b) / a * 100 }'
