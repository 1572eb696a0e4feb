#!/usr/bin/env bash
# Runs a real, single-node Apache Kafka 4.x broker (KRaft, broker+controller) from jars
# resolved through Maven Central. No Docker needed.
#
#   deploy/kafka/kafka.sh fetch    resolve the jars into the cache folder (idempotent)
#   deploy/kafka/kafka.sh up       fetch, format storage if new, start, wait until ready
#   deploy/kafka/kafka.sh down     stop cleanly (SIGTERM, then SIGKILL after a deadline)
#   deploy/kafka/kafka.sh status   say whether it runs and answers
#   deploy/kafka/kafka.sh logs     print the broker log
#
# Settings (environment):
#   ADMUSE_KAFKA_PORT        client port                    (default 9092)
#   ADMUSE_KAFKA_CONTROLLER_PORT  controller port           (default 9093)
#   ADMUSE_KAFKA_DATA_DIR    data + pid + log folder         (default .run/kafka)
#   ADMUSE_KAFKA_CACHE_DIR   where the jars are kept         (default ~/.cache/admuse/kafka-<version>)
#   ADMUSE_KAFKA_READY_TIMEOUT  seconds to wait for readiness (default 90)
#   ADMUSE_KAFKA_HEAP        JVM heap                        (default 512m)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"

port="${ADMUSE_KAFKA_PORT:-9092}"
cport="${ADMUSE_KAFKA_CONTROLLER_PORT:-9093}"
data="${ADMUSE_KAFKA_DATA_DIR:-$repo/.run/kafka}"
cache="${ADMUSE_KAFKA_CACHE_DIR:-$HOME/.cache/admuse/kafka-$version}"
timeout="${ADMUSE_KAFKA_READY_TIMEOUT:-90}"
heap="${ADMUSE_KAFKA_HEAP:-512m}"
python="${PYTHON:-python3}"

pidfile="$data/kafka.pid"
logfile="$data/broker.log"
conf="$data/server.properties"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is not on PATH; install Maven 3 and Java 17"
  echo "kafka.sh: resolving Apache Kafka $version jars into $cache"
  rm -rf "$cache.tmp"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$cache.tmp" -DincludeScope=runtime \
    || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version"
  rm -rf "$cache" && mv "$cache.tmp" "$cache" && touch "$cache/.complete"
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka.Kafka'; then
    echo "$pid"; return 0
  fi
  return 1
}

port_busy() {
  "$python" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

write_config() {
  mkdir -p "$data/logs"
  cat >"$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
delete.topic.enable=true
EOF
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + timeout))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 60 "$logfile" >&2; die "broker exited during start-up (log above, full log: $logfile)"; }
    if "$python" "$here/ready.py" "127.0.0.1:$port" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  tail -n 60 "$logfile" >&2
  die "broker did not answer a metadata request on 127.0.0.1:$port within ${timeout}s (log above)"
}

up() {
  local t0=$SECONDS
  if pid="$(running_pid)"; then echo "kafka.sh: already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  if [ -f "$pidfile" ]; then echo "kafka.sh: removing stale pid file $pidfile (process $(cat "$pidfile") is gone)"; rm -f "$pidfile"; fi
  port_busy "$port" && die "port $port is already in use by another process; stop it or set ADMUSE_KAFKA_PORT"
  port_busy "$cport" && die "controller port $cport is already in use; stop it or set ADMUSE_KAFKA_CONTROLLER_PORT"
  command -v java >/dev/null || die "java is not on PATH; install Java 17"
  fetch
  write_config
  local cp="$cache/*"
  if [ ! -f "$data/logs/meta.properties" ]; then
    java -cp "$cp" kafka.tools.StorageTool format --standalone \
      -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" -c "$conf" >"$data/format.log" 2>&1 \
      || { cat "$data/format.log" >&2; die "formatting KRaft storage in $data/logs failed"; }
  fi
  cat >"$data/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    Console: {name: STDOUT, PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: INFO, AppenderRef: [{ref: STDOUT}]}
    Logger:
      - {name: kafka.request.logger, level: WARN}
      - {name: org.apache.kafka.controller, level: WARN}
      - {name: state.change.logger, level: WARN}
EOF
  # setsid: the broker outlives this shell and gets its own process group.
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -Xshare:auto \
    -Dlog4j2.configurationFile="$data/log4j2.yaml" -Dkafka.logs.dir="$data" \
    -cp "$cp" kafka.Kafka "$conf" >"$logfile" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid"
  echo "kafka.sh: Apache Kafka $version ready on 127.0.0.1:$port (pid $pid, data $data) in $((SECONDS - t0))s"
}

down() {
  local pid
  if ! pid="$(running_pid)"; then echo "kafka.sh: not running"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka.sh: broker ignored SIGTERM for 30s; killing"; kill -KILL "$pid"; fi
  rm -f "$pidfile"
  echo "kafka.sh: stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) if pid="$(running_pid)"; then echo "running (pid $pid) on 127.0.0.1:$port"; else echo "not running"; exit 1; fi ;;
  logs) [ -f "$logfile" ] && cat "$logfile" || die "no broker log at $logfile" ;;
  *) echo "usage: $0 {fetch|up|down|status|logs}" >&2; exit 2 ;;
esac
