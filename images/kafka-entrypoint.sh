#!/bin/sh
# Starts a single Kafka node from KAFKA_* environment variables (the apache/kafka image's
# contract): writes server.properties, formats the log directory on first start, runs the broker
# in the foreground with its logs on stdout.
set -eu

props="${KAFKA_CONFIG_FILE:-/tmp/server.properties}"
# Defaults for a standalone broker+controller; any KAFKA_* variable overrides them (a key's last
# line wins in a properties file).
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.quorum.voters=1@localhost:9093
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS

# KAFKA_FOO_BAR=x → foo.bar=x; `___` stands for `-` and `__` for `_`. Variables that configure
# the JVM or this script are not broker settings.
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_CONFIG_FILE|KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')"
  printf '%s=%s\n' "$key" "$value" >> "$props"
done

# ZGC by default: pauses under a millisecond (G1's young pauses showed in capture's p99; see
# docs/BENCHMARKS.md). KAFKA_JVM_PERFORMANCE_OPTS chooses another collector.
# shellcheck disable=SC2086
set -- java ${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseZGC -XX:+ExitOnOutOfMemoryError} \
  -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties ${KAFKA_OPTS:-} \
  -cp '/opt/kafka/libs/*'

log_dir="$(sed -n 's/^log\.dirs=//p' "$props" | tail -1)"
if [ ! -f "${log_dir%%,*}/meta.properties" ]; then
  # The apache/kafka image's default cluster id, so a volume formatted by either image works.
  "$@" kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" \
    --config "$props" --ignore-formatted
fi
exec "$@" kafka.Kafka "$props"
