# What the Kafka benchmarks share. Sourced by scripts/bench_*.sh from the repository root.
#
#   bench_start NAME   builds the release binary if missing, starts the dev broker if none is
#                      running, makes a work folder ($work) and a topic prefix ($prefix,
#                      NAME-<epoch>), and points the services at the broker ($bootstrap)
#   use_prefix P       every topic under P (P.readings, P.registry, …) and the detector's
#                      group and transactional id
#   bench_cleanup      deletes the topics under $prefix and the work folder
#   metric NAME        a metric's value at http://$metrics/metrics, its labelled series summed

bin=target/release/gridwatch
libs=deploy/kafka/libs
bootstrap=127.0.0.1:${KAFKA_PORT:-9092}

bench_start() {
  [[ -x $bin ]] || cargo build --release -p gridwatch
  deploy/kafka/kafka.sh up >&2
  work=$(mktemp -d)
  prefix=$1-$(date +%s)
  export GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS=$bootstrap
}

use_prefix() {
  local t
  for t in readings registry alerts dlq suspects weather holidays outcomes state; do
    export "GRIDWATCH__KAFKA__TOPICS__${t^^}=$1.$t"
  done
  export GRIDWATCH__DETECTOR__GROUP_ID=$1-detector
  export GRIDWATCH__DETECTOR__TRANSACTIONAL_ID=$1-detector-0
}

bench_cleanup() {
  java -cp "$libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --delete --topic "$prefix.*" >/dev/null 2>&1 || true
  rm -rf "$work"
}

metric() {
  curl -s "http://$metrics/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
