#!/usr/bin/env bash
# The web dashboard (dashboard/, React + Vite), which the query service serves at / from
# dashboard/dist (CAIRN_DASHBOARD_DIR).
#
#   stack/dashboard.sh install   its npm packages (dashboard/node_modules) and Debian's Chromium
#                                for its end-to-end test
#   stack/dashboard.sh build     dashboard/dist, rebuilt when a source file is newer than it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$CAIRN_ROOT/dashboard"

install() {
  apt_install chromium
  npm_ci "$DIR"
}

build() {
  npm_ci "$DIR"
  local built="$DIR/dist/index.html"
  if [ -f "$built" ] && [ -z "$(find "$DIR/src" "$DIR/public" "$DIR/index.html" "$DIR/package-lock.json" "$DIR/vite.config.ts" -newer "$built" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  log "building the dashboard (vite)"
  (cd "$DIR" && npm run build --silent >/dev/null)
}

case "${1:-}" in
  # Parallel tests may both ask; one works, the other waits and finds it done.
  install) ( flock -w 600 9 || die "could not lock the dashboard"; install ) 9>"$CAIRN_TOOLS_DIR/dashboard.lock" ;;
  build) ( flock -w 600 9 || die "could not lock the dashboard"; build ) 9>"$CAIRN_TOOLS_DIR/dashboard.lock" ;;
  *) echo "usage: $0 install|build" >&2; exit 2 ;;
esac
