#!/usr/bin/env bash
# End-to-end throughput through a real Kafka broker, against Kafka's own ProducerPerformance on
# the same machine, in the same run, with the same records (the JSON readings the ingester
# produces) and the same producer settings (acks=all, idempotent, zstd, linger 5 ms).
#
#   scripts/bench_kafka.sh [SITES] [DAYS]      default 10000 sites x 3 days (about 2.9 M readings)
#
# Prints three rates and their ratio to the broker's ceiling:
#   - ProducerPerformance: the broker's ceiling for these records;
#   - ingest: `gridwatch ingest` of the readings CSV (parse, validate, produce, acks);
#   - end to end: from the start of the ingest until the detector has committed every reading
#     (ingest and detector running together, exactly-once transactions included).
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
sites=${1:-10000}
days=${2:-3}
bin=target/release/gridwatch
libs=deploy/kafka/libs
bootstrap=127.0.0.1:${KAFKA_PORT:-9092}

[[ -x $bin ]] || cargo build --release -p gridwatch
deploy/kafka/kafka.sh up >&2

work=$(mktemp -d)
prefix=bench-$(date +%s)
export GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS=$bootstrap
export GRIDWATCH__KAFKA__TOPICS__READINGS=$prefix.readings
export GRIDWATCH__KAFKA__TOPICS__REGISTRY=$prefix.registry
export GRIDWATCH__KAFKA__TOPICS__ALERTS=$prefix.alerts
export GRIDWATCH__KAFKA__TOPICS__DLQ=$prefix.dlq
export GRIDWATCH__KAFKA__TOPICS__SUSPECTS=$prefix.suspects
export GRIDWATCH__DETECTOR__GROUP_ID=$prefix-detector
export GRIDWATCH__DETECTOR__TRANSACTIONAL_ID=$prefix-detector-0
export GRIDWATCH_LOG=warn

detector=
cleanup() {
  [[ -n $detector ]] && kill "$detector" 2>/dev/null && wait "$detector" 2>/dev/null
  java -cp "$libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --delete --topic "$prefix\..*" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "simulating $sites sites x $days days" >&2
$bin simulate --out "$work" --sites "$sites" --days "$days" --seed 1 >/dev/null
n=$(($(wc -l <"$work/readings.csv") - 1))
$bin topics create >/dev/null
$bin registry load --registry "$work/registry.csv" >/dev/null

# The records the ingester produces, as ProducerPerformance's payloads.
python3 - "$work/readings.csv" "$work/payloads.txt" <<'EOF'
import csv, json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as w:
    for i, r in enumerate(csv.DictReader(f)):
        if i == 200_000:
            break
        o = {"meter_id": r["meter_id"], "ts": r["ts"], "interval_s": int(r["interval_s"]), "kwh": float(r["kwh"])}
        for k in ("kwh_export", "voltage_v", "current_a"):
            if r.get(k):
                o[k] = float(r[k])
        o["feeder_id"] = r["feeder_id"]
        w.write(json.dumps(o, separators=(",", ":")) + "\n")
EOF
size=$(awk '{ s += length($0) } END { printf "%.0f", s / NR }' "$work/payloads.txt")

echo "ProducerPerformance: $n records of $size B on average" >&2
pp=$(java -cp "$libs/*" org.apache.kafka.tools.ProducerPerformance --topic "$prefix.pp" \
  --num-records "$n" --payload-file "$work/payloads.txt" --throughput -1 \
  --producer-props bootstrap.servers="$bootstrap" acks=all enable.idempotence=true \
  compression.type=zstd linger.ms=5 2>/dev/null | tail -1)
pp_rate=$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<<"$pp")

lag() {
  java -cp "$libs/*" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$bootstrap" --describe --group "$prefix-detector" 2>/dev/null |
    awk -v t="$prefix.readings" '$2 == t { if ($6 == "-") missing = 1; else s += $6 } END { if (missing || NR == 0) print -1; else print s + 0 }'
}

echo "end to end: gridwatch detect + gridwatch ingest" >&2
$bin detect >"$work/detect.log" 2>&1 &
detector=$!
sleep 3
start=$(date +%s.%N)
ingest=$($bin ingest --readings "$work/readings.csv")
ingested=$(date +%s.%N)
while :; do
  l=$(lag)
  [[ $l == 0 ]] && break
  kill -0 "$detector" 2>/dev/null || { cat "$work/detect.log" >&2; echo "the detector died" >&2; exit 1; }
  sleep 1
done
done_at=$(date +%s.%N)

ingest_rate=$(awk -v n="$n" -v a="$start" -v b="$ingested" 'BEGIN { printf "%.0f", n / (b - a) }')
e2e_rate=$(awk -v n="$n" -v a="$start" -v b="$done_at" 'BEGIN { printf "%.0f", n / (b - a) }')
pct() { awk -v x="$1" -v y="$pp_rate" 'BEGIN { printf "%.0f %%", 100 * x / y }'; }
echo
echo "records:              $n JSON readings, $size B on average, zstd, acks=all, idempotent"
echo "ProducerPerformance:  $(printf '%.0f' "$pp_rate") records/s (the broker's ceiling here)"
echo "gridwatch ingest:     $ingest_rate records/s ($(pct "$ingest_rate") of the ceiling) — $ingest"
echo "end to end:           $e2e_rate records/s ($(pct "$e2e_rate") of the ceiling): ingest start to the detector's last commit"
