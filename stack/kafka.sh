#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft mode (combined broker and controller), from Maven Central jars: one
# node by default, or one node of a quorum (below).
#
#   stack/kafka.sh install   resolve the broker's classpath into $CAIRN_TOOLS_DIR/kafka-libs
#   stack/kafka.sh start     format the storage on first start, start the broker, wait for it
#   stack/kafka.sh stop      stop the broker this script started (KAFKA_STOP_SIGNAL=KILL for kill -9)
#   stack/kafka.sh status
#
# KAFKA_INSTANCE_DIR (default $CAIRN_STACK_DIR/kafka) holds one broker's config, data, log and pid,
# so tests can run a broker of their own beside the shared one on other ports.
#
# A quorum of several combined nodes (each started by its own call, with its own instance dir and
# ports): KAFKA_QUORUM_VOTERS=1@127.0.0.1:C1,2@127.0.0.1:C2,3@127.0.0.1:C3 (a static voter set),
# KAFKA_NODE_ID=this node's id, KAFKA_CLUSTER_ID=the same id for every node (22 characters, as
# `StorageTool random-uuid` prints), KAFKA_REPLICATION=the replication factor of Kafka's own topics
# and of new topics (their min.insync.replicas is one less), KAFKA_RACK=this broker's rack.
# KAFKA_SESSION_TIMEOUT_MS: how soon the controller fences a broker that stopped heartbeating
# (Kafka's default, 9 s, unless set).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIBS="$CAIRN_TOOLS_DIR/kafka-libs"
INSTANCE="${KAFKA_INSTANCE_DIR:-$CAIRN_STACK_DIR/kafka}"
PIDFILE="$INSTANCE/kafka.pid"
PORT="$CAIRN_KAFKA_PORT"
CPORT="$CAIRN_KAFKA_CONTROLLER_PORT"

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v; v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [ -n "$v" ] && [ "$v" -ge 17 ]
}

install() {
  java_ok || apt_install openjdk-17-jre-headless
  if ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 && ls "$LIBS"/kafka-tools-*.jar >/dev/null 2>&1; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "resolving Apache Kafka jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$CAIRN_ROOT/stack/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$CAIRN_TOOLS_DIR/kafka-mvn.log" 2>&1 \
    || { tail -30 "$CAIRN_TOOLS_DIR/kafka-mvn.log" >&2; die "resolving Kafka's jars failed"; }
}

# The broker's JVM command line, as an array.
# 2 GB: ZGC (below) collects early and with more threads the fuller the heap is; in 512 MB a cycle
# came every ~20 s at 25,000 events/s, at 90 % full, and the 5 s around it held capture's whole
# p99 tail (22-61 ms); in 2 GB the cycles are rare and calm (p99 13.9 and 18.3 ms,
# docs/BENCHMARKS.md). KAFKA_HEAP sets another size.
read -r -a HEAP <<< "${KAFKA_HEAP:--Xmx2g -Xms2g}"
# ZGC: its pauses stay under a millisecond, where G1's young collections stopped the broker for
# 6-63 ms and showed in capture's p99 (docs/BENCHMARKS.md). KAFKA_GC_OPTS chooses another.
read -r -a GC <<< "${KAFKA_GC_OPTS:--XX:+UseZGC}"
JAVA=(java "${HEAP[@]}" "${GC[@]}" -Djava.awt.headless=true
  "-Xlog:gc:file=$INSTANCE/gc.log:uptime:filecount=2,filesize=10m"
  "-Dlog4j2.configurationFile=$CAIRN_ROOT/stack/kafka/log4j2.properties"
  "-Dkafka.logs.dir=$INSTANCE" -cp "$LIBS/*")

NODE_ID="${KAFKA_NODE_ID:-1}"
RF="${KAFKA_REPLICATION:-1}"
MIN_ISR=$(( RF > 1 ? RF - 1 : 1 ))

write_config() {
  mkdir -p "$INSTANCE/data"
  local quorum="controller.quorum.bootstrap.servers=127.0.0.1:$CPORT"
  [ -z "${KAFKA_QUORUM_VOTERS:-}" ] || quorum="controller.quorum.voters=$KAFKA_QUORUM_VOTERS"
  cat > "$INSTANCE/server.properties" <<PROPS
process.roles=broker,controller
node.id=$NODE_ID
$quorum
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$INSTANCE/data
num.partitions=4
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=268435456
num.network.threads=2
num.io.threads=4
# The log cleaner (compaction of __consumer_offsets) needs little memory here: its default
# 128 MB dedupe buffer would sit in the heap and make every young GC scan a fuller heap.
log.cleaner.dedupe.buffer.size=16777216
PROPS
  if [ -n "${KAFKA_RACK:-}" ]; then echo "broker.rack=$KAFKA_RACK" >> "$INSTANCE/server.properties"; fi
  if [ -n "${KAFKA_SESSION_TIMEOUT_MS:-}" ]; then
    {
      echo "broker.session.timeout.ms=$KAFKA_SESSION_TIMEOUT_MS"
      echo "broker.heartbeat.interval.ms=$(( KAFKA_SESSION_TIMEOUT_MS / 4 ))"
    } >> "$INSTANCE/server.properties"
  fi
}

start() {
  if pid_alive "$PIDFILE"; then
    log "kafka already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return 0
  fi
  write_config
  if [ ! -f "$INSTANCE/data/meta.properties" ]; then
    local id="${KAFKA_CLUSTER_ID:-}" mode=(--standalone)
    # A static voter set is formatted as it is; a single node bootstraps itself as the quorum.
    [ -z "${KAFKA_QUORUM_VOTERS:-}" ] || mode=()
    [ -n "$id" ] || id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    [ -n "$id" ] || die "kafka StorageTool random-uuid failed"
    log "formatting KRaft storage (cluster $id, node $NODE_ID)"
    "${JAVA[@]}" kafka.tools.StorageTool format "${mode[@]}" -t "$id" -c "$INSTANCE/server.properties" \
      >"$INSTANCE/format.log" 2>&1 || { cat "$INSTANCE/format.log" >&2; die "kafka storage format failed"; }
  fi
  log "starting kafka on 127.0.0.1:$PORT"
  : > "$INSTANCE/kafka.out"
  spawn "$PIDFILE" "$INSTANCE/kafka.out" "${JAVA[@]}" kafka.Kafka "$INSTANCE/server.properties"
  if ! wait_for kafka 90 port_open "$PORT"; then
    tail -30 "$INSTANCE/kafka.out" >&2
    die "kafka did not start"
  fi
  log "kafka ready: 127.0.0.1:$PORT"
}

stop() { stop_pid kafka "$PIDFILE" "${KAFKA_STOP_SIGNAL:-TERM}"; }

status() {
  if pid_alive "$PIDFILE"; then echo "kafka: running (pid $(cat "$PIDFILE")) 127.0.0.1:$PORT"; else echo "kafka: stopped"; fi
}

case "${1:-}" in
  install) with_lock kafka-install install ;;
  start) with_lock kafka-install install; with_lock "kafka-$PORT" start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
