#!/usr/bin/env bash
# Dev Apache Kafka broker from Maven Central jars: single node, KRaft, loopback only.
#
#   deploy/kafka/kafka.sh up       fetch jars (cached), format storage once, start, wait until ready
#   deploy/kafka/kafka.sh down     stop cleanly (SIGTERM, then SIGKILL after a timeout)
#   deploy/kafka/kafka.sh status   say whether it runs and where
#   deploy/kafka/kafka.sh reset    stop and delete the broker's data
#
#   deploy/kafka/kafka.sh cluster up|down|reset     three brokers (KRaft, each also a controller)
#                                  on 127.0.0.1:9192,9194,9196: replication factor 3 and
#                                  min.insync.replicas 2 by default, for the internal topics too
#   deploy/kafka/kafka.sh cluster kill N            SIGKILL broker N (1-3): a broker lost
#   deploy/kafka/kafka.sh cluster start N           start broker N again
#
# Environment: KAFKA_PORT (9092; a cluster's first port, 9192), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_RUN_DIR (deploy/kafka/run), KAFKA_READY_TIMEOUT seconds (90), KAFKA_HEAP (512m; 384m
# per cluster broker).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-9093}
run=${KAFKA_RUN_DIR:-$here/run}
timeout=${KAFKA_READY_TIMEOUT:-90}
heap=${KAFKA_HEAP:-512m}
# Set by `cluster` for each of its brokers.
node_id=${KAFKA_NODE_ID:-1}
voters=${KAFKA_VOTERS:-}
rf=${KAFKA_RF:-1}
cluster_id=${KAFKA_CLUSTER_ID:-}
libs=$here/libs
pidfile=$run/kafka.pid
log=$run/logs/server.out

die() { echo "kafka.sh: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
  [[ -f $pidfile ]] || return 1
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  return 1
}

fetch() {
  if [[ -f $libs/.complete ]] && [[ $libs/.complete -nt $here/pom.xml ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  echo "kafka.sh: fetching Kafka jars from Maven Central into $libs" >&2
  rm -rf "$libs"
  (cd "$here" && mvn -B -q dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime) \
    || die "mvn could not fetch the Kafka jars (see output above)"
  touch "$libs/.complete"
}

configure() {
  mkdir -p "$run/data" "$run/logs"
  cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node_id
$(if [[ -n $voters ]]; then echo "controller.quorum.voters=$voters"; else echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"; fi)
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$run/data
num.partitions=3
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$(( rf > 1 ? 2 : 1 ))
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$(( rf > 1 ? 2 : 1 ))
default.replication.factor=$rf
min.insync.replicas=$(( rf > 1 ? 2 : 1 ))
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
  cat > "$run/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
PROPS
  if [[ ! -f $run/data/meta.properties ]]; then
    local cid=$cluster_id standalone=(--standalone)
    [[ -n $cid ]] || cid=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
    [[ -z $voters ]] || standalone=()
    java -cp "$libs/*" kafka.tools.StorageTool format "${standalone[@]}" -t "$cid" -c "$run/server.properties" -g >"$run/logs/format.out" 2>&1 \
      || { cat "$run/logs/format.out" >&2; die "formatting KRaft storage failed"; }
  fi
}

up() {
  if pid=$(running_pid); then echo "kafka.sh: already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then die "port $port is taken by another process; stop it or set KAFKA_PORT"; fi
  command -v java >/dev/null || die "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
  fetch
  configure
  : > "$run/logs/broker.log"
  nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$run/log4j2.properties" -Dkafka.logs.dir="$run/logs" \
    -cp "$libs/*" kafka.Kafka "$run/server.properties" >"$log" 2>&1 &
  echo $! > "$pidfile"
  local deadline=$((SECONDS + timeout))
  while (( SECONDS < deadline )); do
    if ! running_pid >/dev/null; then
      tail -n 30 "$log" "$run/logs/broker.log" >&2 || true
      die "the broker exited during start-up (logs: $run/logs)"
    fi
    if grep -q "Kafka Server started" "$run/logs/broker.log" 2>/dev/null && port_open "$port"; then
      echo "kafka.sh: broker ready on 127.0.0.1:$port (pid $(cat "$pidfile"), logs in $run/logs)"
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$run/logs/broker.log" >&2 || true
  down
  die "the broker was not ready within ${timeout}s (logs: $run/logs)"
}

down() {
  local pid
  if ! pid=$(running_pid); then echo "kafka.sh: not running"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "kafka.sh: stopped"; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka.sh: killed after 30s without a clean stop"
}

status() {
  if pid=$(running_pid); then
    echo "kafka.sh: running (pid $pid) on 127.0.0.1:$port"
  else
    echo "kafka.sh: not running"; return 3
  fi
}

# `cluster up|down|reset|kill N|start N`: three brokers, each in its own run folder, started by
# this script with per-node settings.
cluster() {
  local base=${KAFKA_PORT:-9192} crun=$run/cluster ids=() voters="" cid
  for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:$((base + 2 * i - 1))"; done
  node() { # node N COMMAND
    KAFKA_PORT=$((base + 2 * $1 - 2)) KAFKA_CONTROLLER_PORT=$((base + 2 * $1 - 1)) \
      KAFKA_RUN_DIR=$crun/node-$1 KAFKA_NODE_ID=$1 KAFKA_VOTERS=$voters KAFKA_RF=3 \
      KAFKA_CLUSTER_ID=$cid KAFKA_HEAP=${KAFKA_HEAP:-384m} "${BASH_SOURCE[0]}" "$2"
  }
  case "${1:-}" in
    up|start)
      fetch
      mkdir -p "$crun"
      [[ -f $crun/cluster.id ]] || java -cp "$libs/*" kafka.tools.StorageTool random-uuid >"$crun/cluster.id"
      cid=$(cat "$crun/cluster.id")
      if [[ $1 == start ]]; then
        [[ ${2:-} =~ ^[123]$ ]] || die "cluster start N: N is 1, 2 or 3"
        node "$2" up
        return
      fi
      # The three start together: a controller waits for its quorum before it is ready.
      for i in 1 2 3; do node "$i" up & ids+=($!); done
      local failed=0
      for p in "${ids[@]}"; do wait "$p" || failed=1; done
      (( failed == 0 )) || die "the cluster did not start (logs: $crun/node-*/logs)"
      echo "kafka.sh: cluster ready on 127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
      ;;
    kill)
      [[ ${2:-} =~ ^[123]$ ]] || die "cluster kill N: N is 1, 2 or 3"
      local pid
      pid=$(cat "$crun/node-$2/kafka.pid" 2>/dev/null) || die "broker $2 is not running"
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$crun/node-$2/kafka.pid"
      echo "kafka.sh: broker $2 killed"
      ;;
    down) cid=""; for i in 1 2 3; do node "$i" down; done ;;
    reset) cid=""; for i in 1 2 3; do node "$i" down; done; rm -rf "$crun" ;;
    *) die "usage: $0 cluster up|down|reset|kill N|start N" ;;
  esac
}

case "${1:-}" in
  cluster) shift; cluster "$@" ;;
  up) up ;;
  down) down ;;
  status) status ;;
  reset) down; rm -rf "$run" ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
