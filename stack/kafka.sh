#!/usr/bin/env bash
# Apache Kafka 4.x, single-node KRaft (combined broker and controller), from Maven Central jars.
#
#   stack/kafka.sh install   resolve the broker's classpath into $CAIRN_TOOLS_DIR/kafka-libs
#   stack/kafka.sh start     format the storage on first start, start the broker, wait for it
#   stack/kafka.sh stop      stop the broker this script started (KAFKA_STOP_SIGNAL=KILL for kill -9)
#   stack/kafka.sh status
#
# KAFKA_INSTANCE_DIR (default $CAIRN_STACK_DIR/kafka) holds one broker's config, data, log and pid,
# so tests can run a broker of their own beside the shared one on other ports.
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

write_config() {
  mkdir -p "$INSTANCE/data"
  cat > "$INSTANCE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$INSTANCE/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
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
}

start() {
  if pid_alive "$PIDFILE"; then
    log "kafka already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return 0
  fi
  write_config
  if [ ! -f "$INSTANCE/data/meta.properties" ]; then
    local id
    id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    [ -n "$id" ] || die "kafka StorageTool random-uuid failed"
    log "formatting KRaft storage (cluster $id)"
    "${JAVA[@]}" kafka.tools.StorageTool format --standalone -t "$id" -c "$INSTANCE/server.properties" \
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
