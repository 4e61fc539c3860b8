#!/usr/bin/env bash
# Benchmark (not a test): what the detector's state in Kafka costs and gives. A simulated
# utility's readings go through a detector that stops cleanly (committing a last snapshot of
# every partition); then a detector on an empty state directory (another host) restores from the
# state topic, and one with the state topic off rebuilds by full replay. Prints the snapshot
# bytes per meter, the bytes written, the state topic's size on the broker's disk, the restore
# time and rate, and the time to ready of both.
#
#   scripts/bench_state.sh [SITES] [DAYS]      defaults: 5000 sites, 7 days (1.7 M readings)
#
# Starts the dev broker if none runs; its topics are named per run, so runs never mix.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sites=${1:-5000}
days=${2:-7}
deploy/kafka/kafka.sh up >&2
echo "building gridwatch (release)" >&2
cargo build --release -p gridwatch >&2
gw=$root/target/release/gridwatch
run=$(mktemp -d /tmp/gridwatch-bench-state-XXXX)
p=bench$(date +%s)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export GRIDWATCH_LOG=info
export GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092
for t in readings registry alerts dlq suspects weather holidays outcomes state; do
  export "GRIDWATCH__KAFKA__TOPICS__${t^^}=$p.$t"
done
export GRIDWATCH__DETECTOR__GROUP_ID=$p-detector GRIDWATCH__DETECTOR__INSTANCE_ID=0
export GRIDWATCH__DETECTOR__METRICS_LISTEN=127.0.0.1:$port
metric() { curl -s "127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/readyz") == 200 ]]; }

echo "simulating $sites sites x $days days" >&2
"$gw" simulate --out "$run/data" --sites "$sites" --days "$days" --seed 5 >/dev/null
readings=$(($(wc -l <"$run/data/readings.csv") - 1))
"$gw" registry load --registry "$run/data/registry.csv" >/dev/null
"$gw" ingest --readings "$run/data/readings.csv" >&2

# 1. Judge everything, stop cleanly: the last snapshots are committed.
GRIDWATCH__DETECTOR__STATE_DIR=$run/state-a "$gw" detect >"$run/a.log" 2>&1 &
pid=$!
started=$(date +%s.%N)
until [[ $(metric gridwatch_restore_remaining_records) == 0 ]] && ready &&
  "$gw" topics lag 2>/dev/null | awk '/lag=/ { split($NF, a, "="); s += a[2] } END { exit s != 0 }'; do
  sleep 1
done
judged=$(echo "$(date +%s.%N) - $started" | bc)
written=$(metric gridwatch_state_bytes_written_total)
kill -TERM $pid
wait $pid || true
"$gw" state inspect | tee "$run/inspect.txt" >&2
snap=$(awk '/bytes=/ { for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { split($i, a, "="); s += a[2] } } END { print s + 0 }' "$run/inspect.txt")
meters=$(($(wc -l <"$run/data/registry.csv") - 1))
disk=$(cat "$root"/deploy/kafka/run/data/"$p".state-*/*.log | wc -c)

# 1b. The same readings judged by another group with the state topic off: what writing the
# state costs the judging.
GRIDWATCH__KAFKA__TOPICS__STATE= GRIDWATCH__DETECTOR__GROUP_ID=$p-detector-off \
  GRIDWATCH__DETECTOR__STATE_DIR=$run/state-off "$gw" detect >"$run/off.log" 2>&1 &
pid=$!
started=$(date +%s.%N)
until [[ $(metric gridwatch_restore_remaining_records) == 0 ]] && ready &&
  GRIDWATCH__DETECTOR__GROUP_ID=$p-detector-off "$gw" topics lag 2>/dev/null |
  awk '/lag=/ { split($NF, a, "="); s += a[2] } END { exit s != 0 }'; do
  sleep 1
done
judged_off=$(echo "$(date +%s.%N) - $started" | bc)
kill -TERM $pid
wait $pid || true

# 2. Another host: an empty state directory, the state from the topic.
GRIDWATCH__DETECTOR__STATE_DIR=$run/state-b "$gw" detect >"$run/b.log" 2>&1 &
pid=$!
started=$(date +%s.%N)
until ready; do sleep 0.2; done
restored_in=$(echo "$(date +%s.%N) - $started" | bc)
kill -TERM $pid
wait $pid || true
restore=$(grep 'state restored' "$run/b.log" | grep -o 'secs=[0-9.e-]*' | cut -d= -f2 | paste -sd+ | bc -l)

# 3. The state topic off and an empty state directory: every retained reading replayed.
GRIDWATCH__KAFKA__TOPICS__STATE= GRIDWATCH__DETECTOR__GROUP_ID=$p-detector \
  GRIDWATCH__DETECTOR__STATE_DIR=$run/state-c "$gw" detect >"$run/c.log" 2>&1 &
pid=$!
started=$(date +%s.%N)
until ready; do sleep 0.2; done
replayed_in=$(echo "$(date +%s.%N) - $started" | bc)
kill -TERM $pid
wait $pid || true

printf '\n%s readings of %s meters (%s sites x %s days), judged in %.1f s with the state topic, %.1f s without (%.0f vs %.0f readings/s)\n' \
  "$readings" "$meters" "$sites" "$days" "$judged" "$judged_off" "$(echo "$readings / $judged" | bc -l)" "$(echo "$readings / $judged_off" | bc -l)"
printf 'state bytes written while judging (before the last snapshots): %s B, %.0f B per reading\n' \
  "$written" "$(echo "$written / $readings" | bc -l)"
printf 'state: %s B in the last snapshots, %.0f B per meter; state topic log segments: %s B (%.0f B per meter, compressed, before compaction)\n' \
  "$snap" "$(echo "$snap / $meters" | bc -l)" "$disk" "$(echo "$disk / $meters" | bc -l)"
printf 'restore on an empty disk: %.2f s reading and restoring (%.0f MB/s), ready %.2f s after start\n' \
  "$restore" "$(echo "$snap / $restore / 1000000" | bc -l)" "$restored_in"
printf 'state topic off, empty disk: ready %.2f s after start (a full replay)\n' "$replayed_in"
echo "logs in $run" >&2
