#!/usr/bin/env bash
# What the SDKs' tests need, installed where the rest of the stack's tools live:
#
#   stack/sdks.sh install [chromium|web|python]...
#                           Debian's Chromium; the web SDK's npm packages (sdks/web/node_modules,
#                           from its package-lock.json); a Python environment for the Python SDK's
#                           tests ($CAIRN_TOOLS_DIR/sdk-venv: pytest and PostHog's own Python SDK,
#                           pinned in sdks/python/requirements-test.txt)
#
# The SDKs themselves depend on nothing of this: the Python SDK uses the standard library only and
# the web SDK has no runtime dependencies.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SDK_VENV="$CAIRN_TOOLS_DIR/sdk-venv"
REQS="$CAIRN_ROOT/sdks/python/requirements-test.txt"

install_chromium() {
  apt_install chromium
}

install_web() {
  npm_ci "$CAIRN_ROOT/sdks/web"
}

install_python() {
  local want; want="$(sha256sum "$REQS" | cut -d' ' -f1)"
  if [ -x "$SDK_VENV/bin/python" ] && [ "$(cat "$SDK_VENV/.cairn-reqs-sha" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  python3 -c "import venv" 2>/dev/null || apt_install python3-venv
  log "creating the Python SDK's test environment in $SDK_VENV"
  rm -rf "$SDK_VENV"
  python3 -m venv "$SDK_VENV"
  "$SDK_VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  echo "$want" > "$SDK_VENV/.cairn-reqs-sha"
}

case "${1:-}" in
  install)
    # Parallel tests may both ask; one installs, the other waits and finds it done.
    (
      flock -w 600 9 || die "could not lock the SDK tools"
      parts=("${@:2}"); [ ${#parts[@]} -gt 0 ] || parts=(chromium web python)
      for part in "${parts[@]}"; do "install_$part"; done
    ) 9>"$CAIRN_TOOLS_DIR/sdks.lock"
    ;;
  *) echo "usage: $0 install [chromium|web|python]..." >&2; exit 2 ;;
esac
