#!/bin/sh
# Runs the ClickHouse stand-in on 0.0.0.0:8123. CLICKHOUSE_USER/CLICKHOUSE_PASSWORD (the official
# image's variables) become the one account it accepts; they reach the server through its
# environment, never its command line.
set -eu
export CHSERVER_USER="${CLICKHOUSE_USER:-default}"
export CHSERVER_PASSWORD="${CLICKHOUSE_PASSWORD:-}"
unset CLICKHOUSE_PASSWORD
exec /opt/chserver/bin/python /opt/chserver/chserver.py --data /var/lib/clickhouse/data \
  --host 0.0.0.0 --port 8123 "$@"
