#!/usr/bin/env bash
# End-to-end throughput and latency through a real Kafka broker, against Kafka's own
# ProducerPerformance on the same machine, in the same run, with the same records (the JSON
# readings the ingester produces) and the same producer settings (acks=all, idempotent, zstd,
# linger 5 ms).
#
#   scripts/bench_kafka.sh [SITES] [DAYS]      default 10000 sites x 3 days (about 2.9 M readings)
#
# Prints:
#   - ProducerPerformance: the broker's ceiling for these records;
#   - ingest: `gridwatch ingest` of the readings CSV (parse, validate, produce, acks);
#   - end to end: from the start of the ingest until the detector has committed every reading
#     (ingest and detector running together, exactly-once transactions included);
#   - latency at half the end-to-end rate: readings paced into `gridwatch ingest` for 20 s while a
#     fresh detector runs; from each reading's produce timestamp to the commit of the transaction
#     that carries its alerts (the detector's own p50/p99, logged when it stops).
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sites=${1:-10000}
days=${2:-3}
source scripts/lib/bench.sh
bench_start bench
export GRIDWATCH_LOG=warn

detector=
stop_detector() {
  if [[ -n $detector ]]; then
    kill -TERM "$detector" 2>/dev/null || true
    wait "$detector" 2>/dev/null || true
    detector=
  fi
}
cleanup() {
  stop_detector
  bench_cleanup
}
trap cleanup EXIT

echo "simulating $sites sites x $days days" >&2
$bin simulate --out "$work" --sites "$sites" --days "$days" --seed 1 >/dev/null
n=$(($(wc -l <"$work/readings.csv") - 1))
use_prefix "$prefix"
$bin topics create >/dev/null
$bin registry load --registry "$work/registry.csv" >/dev/null

# The records the ingester produces, as ProducerPerformance's payloads.
python3 scripts/lib/bench_payloads.py "$work/readings.csv" "$work/payloads.txt"
size=$(awk '{ s += length($0) } END { printf "%.0f", s / NR }' "$work/payloads.txt")

echo "ProducerPerformance: $n records of $size B on average" >&2
pp=$(java -cp "$libs/*" org.apache.kafka.tools.ProducerPerformance --topic "$prefix.pp" \
  --num-records "$n" --payload-file "$work/payloads.txt" --throughput -1 \
  --producer-props bootstrap.servers="$bootstrap" acks=all enable.idempotence=true \
  compression.type=zstd linger.ms=5 2>/dev/null | tail -1)
pp_rate=$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<<"$pp")

# Done when the detector has counted every reading of the topic as consumed: it counts a batch
# after the transaction carrying its alerts has committed. Read from its /metrics every 0.1 s
# (a JVM ConsumerGroupCommand per look cost more CPU than the detector on two cores).
metrics=127.0.0.1:19640
export GRIDWATCH__DETECTOR__METRICS_LISTEN=$metrics
consumed() {
  curl -s "http://$metrics/metrics" |
    awk -v m="gridwatch_records_consumed_total{topic=\"$prefix.readings\"}" '$1 == m { s += $2 } END { printf "%d\n", s }'
}

echo "end to end: gridwatch detect + gridwatch ingest" >&2
$bin detect >"$work/detect.log" 2>&1 &
detector=$!
sleep 3
start=$(date +%s.%N)
ingest=$($bin ingest --readings "$work/readings.csv")
ingested=$(date +%s.%N)
until [[ $(consumed) -ge $n ]]; do
  kill -0 "$detector" 2>/dev/null || { cat "$work/detect.log" >&2; echo "the detector died" >&2; exit 1; }
  sleep 0.1
done
done_at=$(date +%s.%N)
stop_detector

ingest_rate=$(awk -v n="$n" -v a="$start" -v b="$ingested" 'BEGIN { printf "%.0f", n / (b - a) }')
e2e_rate=$(awk -v n="$n" -v a="$start" -v b="$done_at" 'BEGIN { printf "%.0f", n / (b - a) }')

half=$((e2e_rate / 2))
paced=$((half * 20 < n ? half * 20 : n))
echo "latency: $paced readings paced at $half/s into a fresh detector" >&2
use_prefix "$prefix-lat"
$bin topics create >/dev/null
$bin registry load --registry "$work/registry.csv" >/dev/null
GRIDWATCH_LOG=info $bin detect >"$work/latency.log" 2>&1 &
detector=$!
sleep 3
python3 scripts/lib/pace.py "$work/readings.csv" "$half" "$paced" | $bin ingest --readings - >/dev/null
sleep 3
stop_detector
stopped=$(grep "latency_p50_ms" "$work/latency.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
p50=$(sed -nE 's/.*latency_p50_ms[=:] ?([0-9]+).*/\1/p' <<<"$stopped")
p99=$(sed -nE 's/.*latency_p99_ms[=:] ?([0-9]+).*/\1/p' <<<"$stopped")

pct() { awk -v x="$1" -v y="$pp_rate" 'BEGIN { printf "%.0f %%", 100 * x / y }'; }
echo
echo "records:              $n JSON readings, $size B on average, zstd, acks=all, idempotent"
echo "ProducerPerformance:  $(printf '%.0f' "$pp_rate") records/s (the broker's ceiling here)"
echo "gridwatch ingest:     $ingest_rate records/s ($(pct "$ingest_rate") of the ceiling) — $ingest"
echo "end to end:           $e2e_rate records/s ($(pct "$e2e_rate") of the ceiling): ingest start to the detector's last commit"
echo "latency at $half/s:  p50 ${p50:-?} ms, p99 ${p99:-?} ms from a reading's produce time to the commit of its alerts"
