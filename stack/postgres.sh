#!/usr/bin/env bash
# A private PostgreSQL cluster (Debian's server binaries) for auth, dashboards and metadata.
#
#   stack/postgres.sh start | stop | status
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGDATA="${POSTGRES_INSTANCE_DIR:-$CAIRN_STACK_DIR/postgres}"
PORT="$CAIRN_PG_PORT"
SOCKDIR="/tmp"

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  apt_install postgresql
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  die "no PostgreSQL server binaries found"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

start() {
  BIN="$(pg_bin)"
  if ready; then log "postgres already running on 127.0.0.1:$PORT"; return 0; fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" -eq 0 ] && { id postgres >/dev/null 2>&1 || as_pg true; chown postgres "$PGDATA"; }
    chmod 700 "$PGDATA"
    log "initialising a PostgreSQL cluster in $PGDATA"
    as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  log "starting postgres on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/postgres.log" -w -t 60 \
    -o "-p $PORT -k $SOCKDIR -c listen_addresses=127.0.0.1" start >/dev/null 9>&-
  wait_for postgres 60 ready || die "postgres did not start"
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='cairn'" | grep -q 1 \
    || "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE cairn" >/dev/null
  log "postgres ready: postgres://postgres@127.0.0.1:$PORT/cairn"
}

stop() {
  BIN="$(pg_bin)"
  if [ -f "$PGDATA/postmaster.pid" ]; then
    log "stopping postgres"
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
  fi
}

status() {
  BIN="$(pg_bin)"
  if ready; then echo "postgres: running postgres://postgres@127.0.0.1:$PORT/cairn"; else echo "postgres: stopped"; fi
}

case "${1:-}" in
  start) with_lock "postgres-$PORT" start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
