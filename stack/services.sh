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

# The local stack's development write key, for project 1. Production keys come from the auth service.
export CAIRN_CAPTURE_API_KEYS="${CAIRN_CAPTURE_API_KEYS:-phc_local_dev=1}"
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
  nohup setsid "$BIN/cairn-$name" >"$RUN/$name.log" 2>&1 &
  echo $! > "$pidfile"
  if ! wait_for "$name" 90 ready "$addr"; then
    tail -20 "$RUN/$name.log" >&2
    die "$name did not become ready (log: $RUN/$name.log)"
  fi
}

case "${1:-}" in
  start)
    start_one consumer "$CAIRN_CONSUMER_ADDR"
    start_one capture "$CAIRN_CAPTURE_ADDR"
    ;;
  stop)
    stop_pid capture "$RUN/capture.pid"
    stop_pid consumer "$RUN/consumer.pid"
    ;;
  status)
    for s in capture consumer; do
      if pid_alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
