#!/usr/bin/env bash
# The test run's shared Kafka, ClickHouse, PostgreSQL, s3proxy and Kubernetes control plane (ports
# 29092, 28123, 25432, 28900 and 26443, state in .stack/test), which
# the tests start on first use (see e2e/src/lib.rs). `make test` stops them at the end.
#
#   stack/test-stack.sh stop
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CAIRN_STACK_DIR="${CAIRN_TEST_STACK_DIR:-$CAIRN_ROOT/.stack/test}"
case "${1:-}" in
  stop)
    CAIRN_KAFKA_PORT=29092 CAIRN_KAFKA_CONTROLLER_PORT=29093 KAFKA_INSTANCE_DIR="$CAIRN_STACK_DIR/kafka" \
      "$CAIRN_ROOT/stack/kafka.sh" stop
    CAIRN_CLICKHOUSE_PORT=28123 CLICKHOUSE_INSTANCE_DIR="$CAIRN_STACK_DIR/clickhouse" \
      "$CAIRN_ROOT/stack/clickhouse.sh" stop
    POSTGRES_INSTANCE_DIR="$CAIRN_STACK_DIR/postgres" CAIRN_PG_PORT=25432 "$CAIRN_ROOT/stack/postgres.sh" stop
    S3PROXY_INSTANCE_DIR="$CAIRN_STACK_DIR/s3proxy" S3PROXY_PORT=28900 "$CAIRN_ROOT/stack/s3proxy.sh" stop
    KUBE_INSTANCE_DIR="$CAIRN_STACK_DIR/kube" CAIRN_KUBE_ETCD_PORT=22379 CAIRN_KUBE_ETCD_PEER_PORT=22380 \
      CAIRN_KUBE_APISERVER_PORT=26443 CAIRN_KUBE_KCM_PORT=26257 CAIRN_KUBE_SCHEDULER_PORT=26259 CAIRN_KUBE_KWOK_PORT=26258 \
      "$CAIRN_ROOT/stack/kube.sh" stop
    # Dedicated instances of tests that were interrupted before they could clean up.
    for pidfile in "$CAIRN_STACK_DIR"/kafka_*/kafka.pid "$CAIRN_STACK_DIR"/kafka_*/node*/kafka.pid \
                   "$CAIRN_STACK_DIR"/clickhouse_*/chserver.pid; do
      [ -f "$pidfile" ] && stop_pid "$(basename "$(dirname "$pidfile")")" "$pidfile" KILL
    done
    rm -rf "$CAIRN_STACK_DIR"/kafka_* "$CAIRN_STACK_DIR"/clickhouse_* "$CAIRN_STACK_DIR"/logs
    ;;
  *) echo "usage: $0 stop" >&2; exit 2 ;;
esac
