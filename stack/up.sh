#!/usr/bin/env bash
# `make up`: installs what is missing, builds Cairn, starts the local stack and prints the URLs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$CAIRN_ROOT/stack/toolchain.sh"
PROFILE="${CAIRN_PROFILE:-release}"
log "building Cairn ($PROFILE)"
if [ "$PROFILE" = release ]; then
  (cd "$CAIRN_ROOT" && cargo build --release --workspace --bins)
else
  (cd "$CAIRN_ROOT" && cargo build --workspace --bins)
fi
"$CAIRN_ROOT/stack/dashboard.sh" build
"$CAIRN_ROOT/stack/postgres.sh" start
"$CAIRN_ROOT/stack/kafka.sh" start
"$CAIRN_ROOT/stack/clickhouse.sh" start
"$CAIRN_ROOT/stack/services.sh" start

cat <<MSG

Cairn is up. State and logs live in $CAIRN_STACK_DIR.

  dashboard    http://127.0.0.1:$CAIRN_QUERY_PORT/   (sign up there; the first project is project 1)
  auth         http://127.0.0.1:$CAIRN_AUTH_PORT   (POST /api/v1/signup, /api/v1/login; users, projects, keys)
  query        http://127.0.0.1:$CAIRN_QUERY_PORT   (/api/v1/projects/{id}/query/trends|funnels|retention, /events)
  API docs     http://127.0.0.1:$CAIRN_QUERY_PORT/api/docs
  capture      http://127.0.0.1:$CAIRN_CAPTURE_PORT   (POST /capture, /batch, /e, /i/v0/e; write key: ${CAIRN_CAPTURE_API_KEYS:-phc_local_dev})
  consumer     http://127.0.0.1:$CAIRN_CONSUMER_PORT/metrics
  kafka        127.0.0.1:$CAIRN_KAFKA_PORT
  clickhouse   http://127.0.0.1:$CAIRN_CLICKHOUSE_PORT   (database cairn)
  postgres     postgres://postgres@127.0.0.1:$CAIRN_PG_PORT/cairn

Try it:
  curl -X POST http://127.0.0.1:$CAIRN_CAPTURE_PORT/capture -H 'Content-Type: application/json' \\
    -d '{"api_key":"phc_local_dev","event":"hello","distinct_id":"me","properties":{"plan":"free"}}'
  # sign up (the first project is project 1, which phc_local_dev writes to), then ask for a trend:
  TOKEN=\$(curl -s http://127.0.0.1:$CAIRN_QUERY_PORT/api/v1/signup -H 'Content-Type: application/json' \\
    -d '{"email":"me@example.com","password":"a long local password 1"}' | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
  curl -s http://127.0.0.1:$CAIRN_QUERY_PORT/api/v1/projects/1/query/trends -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' -d '{"series":[{"event":"hello"}],"date_from":"-7d"}'

Load a month of sample data (and insights, a dashboard, cohorts) to look at: make demo
Stop everything with: make down
MSG
