#!/usr/bin/env bash
# Installs what building Cairn needs and a fresh Debian machine may lack: the C toolchain and
# headers that librdkafka (built from source by rdkafka-sys) needs, and Rust itself.
#
# librdkafka 2.12's CMake build includes <curl/curl.h> whenever TLS is on, even without OIDC,
# so the curl headers are needed though libcurl is never linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install build-essential cmake pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev python3-venv
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || die "cargo not found: install Rust (rustup) first"
fi
