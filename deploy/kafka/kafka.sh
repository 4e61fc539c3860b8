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
#   deploy/kafka/kafka.sh secure up  a single broker whose client listener is SASL_SSL with
#                                  SCRAM-SHA-512: makes a CA and the broker's certificate (openssl)
#                                  in RUN/tls, and a SCRAM user `gridwatch` whose password is
#                                  KAFKA_SCRAM_PASSWORD or, unset, a random one written to
#                                  RUN/tls/gridwatch.password (mode 600). Clients trust RUN/tls/ca.pem.
#                                  (`secure down|reset|status` as without `secure`.)
#
# Environment: KAFKA_PORT (9092; a cluster's first port, 9192), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_INTERNAL_PORT (secure mode's plaintext inter-broker listener on loopback, 9094),
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
secure=${KAFKA_SASL_SSL:-}
iport=${KAFKA_INTERNAL_PORT:-9094}
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

# A CA, the broker's key and certificate (for 127.0.0.1 and localhost) in a PKCS#12 store, and
# the SCRAM user's password: made once per run folder.
make_tls() {
  local tls=$run/tls
  [[ -f $tls/broker.p12 ]] && return 0
  command -v openssl >/dev/null || die "openssl not found: install it (apt-get install openssl)"
  mkdir -p "$tls" && chmod 700 "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=gridwatch dev CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > san.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile san.ext -out broker.pem
    openssl rand -hex 16 > store.password
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
      -passout "file:store.password" -out broker.p12
    if [[ -n ${KAFKA_SCRAM_PASSWORD:-} ]]; then
      printf '%s\n' "$KAFKA_SCRAM_PASSWORD" > gridwatch.password
    else
      openssl rand -hex 24 > gridwatch.password
    fi
    chmod 600 ca.key broker.key store.password gridwatch.password
  ) >"$run/logs/tls.out" 2>&1 || { cat "$run/logs/tls.out" >&2; die "making the certificates failed"; }
}

listener_settings() {
  if [[ -z $secure ]]; then
    cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
PROPS
    return
  fi
  cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$run/tls/broker.p12
ssl.keystore.password=$(cat "$run/tls/store.password")
ssl.key.password=$(cat "$run/tls/store.password")
PROPS
}

configure() {
  mkdir -p "$run/data" "$run/logs"
  [[ -z $secure ]] || make_tls
  cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node_id
$(if [[ -n $voters ]]; then echo "controller.quorum.voters=$voters"; else echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"; fi)
$(listener_settings)
controller.listener.names=CONTROLLER
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
    local cid=$cluster_id standalone=(--standalone) scram=()
    [[ -n $cid ]] || cid=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)
    [[ -z $voters ]] || standalone=()
    [[ -z $secure ]] || scram=(--add-scram "SCRAM-SHA-512=[name=gridwatch,password=$(cat "$run/tls/gridwatch.password")]")
    java -cp "$libs/*" kafka.tools.StorageTool format "${standalone[@]}" "${scram[@]}" -t "$cid" -c "$run/server.properties" -g >"$run/logs/format.out" 2>&1 \
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
      [[ -z $secure ]] || echo "kafka.sh: SASL_SSL, SCRAM-SHA-512 user gridwatch (password in $run/tls/gridwatch.password), CA $run/tls/ca.pem"
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
  secure) shift; KAFKA_SASL_SSL=1 exec "${BASH_SOURCE[0]}" "$@" ;;
  cluster) shift; cluster "$@" ;;
  up) up ;;
  down) down ;;
  status) status ;;
  reset) down; rm -rf "$run" ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
