#!/usr/bin/env bash
# The ClickHouse engine (PyPI's chdb-core) behind ClickHouse's HTTP interface (chserver.py).
# Cairn's services use it exactly as they use a real ClickHouse server; point
# CAIRN_CLICKHOUSE_URL at a real server to use one instead.
#
#   stack/clickhouse.sh install   a Python environment with chdb-core in $CAIRN_TOOLS_DIR/venv
#   stack/clickhouse.sh start     start the server on 127.0.0.1:$CAIRN_CLICKHOUSE_PORT and wait for /ping
#   stack/clickhouse.sh stop      (CLICKHOUSE_STOP_SIGNAL=KILL for kill -9)
#   stack/clickhouse.sh status
#
# CLICKHOUSE_INSTANCE_DIR (default $CAIRN_STACK_DIR/clickhouse) holds one server's data, log and pid.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$CAIRN_TOOLS_DIR/venv"
CHDB_VERSION="${CHDB_VERSION:-26.9.0}"
INSTANCE="${CLICKHOUSE_INSTANCE_DIR:-$CAIRN_STACK_DIR/clickhouse}"
PIDFILE="$INSTANCE/chserver.pid"
PORT="$CAIRN_CLICKHOUSE_PORT"

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import chdb" 2>/dev/null; then
    return 0
  fi
  python3 -c "import venv" 2>/dev/null || apt_install python3-venv
  log "installing chdb-core $CHDB_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "chdb-core==$CHDB_VERSION"
}

ping() { curl -fsS "http://127.0.0.1:$PORT/ping" >/dev/null; }

start() {
  if pid_alive "$PIDFILE"; then
    log "clickhouse already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return 0
  fi
  mkdir -p "$INSTANCE/data"
  log "starting the ClickHouse HTTP interface on 127.0.0.1:$PORT"
  : > "$INSTANCE/chserver.log"
  spawn "$PIDFILE" "$INSTANCE/chserver.log" \
    "$VENV/bin/python" "$CAIRN_ROOT/stack/clickhouse/chserver.py" --data "$INSTANCE/data" --port "$PORT"
  if ! wait_for clickhouse 60 ping; then
    tail -30 "$INSTANCE/chserver.log" >&2
    die "clickhouse did not start"
  fi
  log "clickhouse ready: http://127.0.0.1:$PORT"
}

stop() { stop_pid clickhouse "$PIDFILE" "${CLICKHOUSE_STOP_SIGNAL:-TERM}"; }

status() {
  if pid_alive "$PIDFILE"; then echo "clickhouse: running (pid $(cat "$PIDFILE")) http://127.0.0.1:$PORT"; else echo "clickhouse: stopped"; fi
}

case "${1:-}" in
  install) with_lock chdb-install install ;;
  start) with_lock chdb-install install; with_lock "clickhouse-$PORT" start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
