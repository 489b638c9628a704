#!/usr/bin/env bash
# Cairn's own services on the local stack, from the binaries that `cargo build` made.
#
#   stack/services.sh start | stop | status
#
# CAIRN_PROFILE picks the build (release by default, debug for quick iterations).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE="${CAIRN_PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$CAIRN_ROOT/target}/$PROFILE"
RUN="$CAIRN_STACK_DIR/services"
mkdir -p "$RUN"

# The local stack's development write key, for project 1 (the first project signed up). Every
# other write key is created in and resolved through the auth service.
export CAIRN_CAPTURE_API_KEYS="${CAIRN_CAPTURE_API_KEYS:-phc_local_dev=1}"
export CAIRN_POSTGRES_URL="${CAIRN_POSTGRES_URL:-postgres://postgres@127.0.0.1:$CAIRN_PG_PORT/cairn}"
export CAIRN_AUTH_ADDR="${CAIRN_AUTH_ADDR:-127.0.0.1:$CAIRN_AUTH_PORT}"
export CAIRN_QUERY_ADDR="${CAIRN_QUERY_ADDR:-127.0.0.1:$CAIRN_QUERY_PORT}"
export CAIRN_AUTH_URL="${CAIRN_AUTH_URL:-http://$CAIRN_AUTH_ADDR}"
# The dashboard, built by `make up` (stack/dashboard.sh build), served by query at /.
if [ -z "${CAIRN_DASHBOARD_DIR:-}" ] && [ -f "$CAIRN_ROOT/dashboard/dist/index.html" ]; then
  export CAIRN_DASHBOARD_DIR="$CAIRN_ROOT/dashboard/dist"
fi

# Secrets of this stack, made once and kept (mode 0600) so tokens survive restarts.
secret() {
  local file="$CAIRN_STACK_DIR/secrets/$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$(dirname "$file")"
    (umask 077; head -c 48 /dev/urandom | base64 | tr -d '/+=\n' > "$file")
  fi
  cat "$file"
}
export CAIRN_AUTH_TOKEN_SECRET="${CAIRN_AUTH_TOKEN_SECRET:-$(secret auth-token-secret)}"
export CAIRN_INTERNAL_TOKEN="${CAIRN_INTERNAL_TOKEN:-$(secret internal-token)}"
export CAIRN_KAFKA_BROKERS="${CAIRN_KAFKA_BROKERS:-127.0.0.1:$CAIRN_KAFKA_PORT}"
export CAIRN_CLICKHOUSE_URL="${CAIRN_CLICKHOUSE_URL:-http://127.0.0.1:$CAIRN_CLICKHOUSE_PORT}"
export CAIRN_CAPTURE_ADDR="${CAIRN_CAPTURE_ADDR:-127.0.0.1:$CAIRN_CAPTURE_PORT}"
export CAIRN_CONSUMER_ADDR="${CAIRN_CONSUMER_ADDR:-127.0.0.1:$CAIRN_CONSUMER_PORT}"

ready() { curl -fsS "http://$1/readyz" >/dev/null; }

start_one() {
  local name="$1" addr="$2"
  local pidfile="$RUN/$name.pid"
  if pid_alive "$pidfile"; then log "$name already running (pid $(cat "$pidfile"))"; return 0; fi
  [ -x "$BIN/cairn-$name" ] || die "$BIN/cairn-$name is missing: run 'cargo build --$PROFILE' (make up does)"
  log "starting $name on $addr"
  : > "$RUN/$name.log"
  spawn "$pidfile" "$RUN/$name.log" "$BIN/cairn-$name"
  if ! wait_for "$name" 90 ready "$addr"; then
    tail -20 "$RUN/$name.log" >&2
    die "$name did not become ready (log: $RUN/$name.log)"
  fi
}

case "${1:-}" in
  start)
    # auth applies PostgreSQL's schema and the consumer ClickHouse's (it creates the database):
    # query is ready only once both exist.
    start_one auth "$CAIRN_AUTH_ADDR"
    start_one consumer "$CAIRN_CONSUMER_ADDR"
    start_one query "$CAIRN_QUERY_ADDR"
    start_one capture "$CAIRN_CAPTURE_ADDR"
    ;;
  stop)
    stop_pid capture "$RUN/capture.pid"
    stop_pid consumer "$RUN/consumer.pid"
    stop_pid query "$RUN/query.pid"
    stop_pid auth "$RUN/auth.pid"
    ;;
  status)
    for s in auth query capture consumer; do
      if pid_alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
