#!/usr/bin/env bash
# `make down`: stops what `make up` started (by pid file), leaving the data in place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$CAIRN_ROOT/stack/services.sh" stop
"$CAIRN_ROOT/stack/clickhouse.sh" stop
"$CAIRN_ROOT/stack/kafka.sh" stop
"$CAIRN_ROOT/stack/postgres.sh" stop
log "stopped"
