#!/usr/bin/env bash
# An S3-compatible object store on this machine: s3proxy (Maven Central) serving the S3 API over
# a local directory, checking AWS signature V4 — what scheduled event exports are tested against.
#
#   stack/s3proxy.sh install   its jars into $CAIRN_TOOLS_DIR/s3proxy
#   stack/s3proxy.sh start     on 127.0.0.1:$S3PROXY_PORT (default 28900), objects under
#                              $S3PROXY_INSTANCE_DIR/data/<bucket>/<key>
#   stack/s3proxy.sh stop
#
# Credentials: identity S3PROXY_IDENTITY (cairn-test), secret S3PROXY_CREDENTIAL (cairn-test-secret).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIBS="$CAIRN_TOOLS_DIR/s3proxy"
PORT="${S3PROXY_PORT:-28900}"
INSTANCE="${S3PROXY_INSTANCE_DIR:-$CAIRN_STACK_DIR/s3proxy}"
PIDFILE="$INSTANCE/s3proxy.pid"

java_ok() { command -v java >/dev/null 2>&1; }

install() {
  java_ok || apt_install openjdk-17-jre-headless
  if ls "$LIBS"/s3proxy-*.jar >/dev/null 2>&1; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "resolving s3proxy's jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$CAIRN_ROOT/stack/s3proxy/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$CAIRN_TOOLS_DIR/s3proxy-mvn.log" 2>&1 \
    || { tail -30 "$CAIRN_TOOLS_DIR/s3proxy-mvn.log" >&2; die "resolving s3proxy's jars failed"; }
}

up() { curl -s -o /dev/null "http://127.0.0.1:$PORT/" ; }

start() {
  install
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && up; then
    return 0
  fi
  mkdir -p "$INSTANCE/data"
  cat > "$INSTANCE/s3proxy.conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=${S3PROXY_IDENTITY:-cairn-test}
s3proxy.credential=${S3PROXY_CREDENTIAL:-cairn-test-secret}
jclouds.provider=filesystem
jclouds.filesystem.basedir=$INSTANCE/data
CONF
  nohup java -Xmx256m -cp "$LIBS/*" org.gaul.s3proxy.Main --properties "$INSTANCE/s3proxy.conf" \
    >"$INSTANCE/s3proxy.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    up && return 0
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$INSTANCE/s3proxy.log" >&2; die "s3proxy exited"; }
    sleep 0.5
  done
  die "s3proxy did not answer on port $PORT within 60 s"
}

stop() {
  [ -f "$PIDFILE" ] && stop_pid s3proxy "$PIDFILE"
  return 0
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) up && echo "s3proxy: up on $PORT" || echo "s3proxy: down" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
