#!/usr/bin/env bash
# Cairn's container images, built without a Docker engine and without an image registry.
#
#   stack/images.sh build [NAME...]   build images (default: all) and write each as an OCI archive
#                                     to $CAIRN_IMAGES_DIR/<name>.oci.tar; prints a size table
#   stack/images.sh ref NAME          the image reference of NAME (e.g. ghcr.io/cairn-analytics/cairn-capture:0.1.0)
#   stack/images.sh archive NAME      the path of NAME's OCI archive
#   stack/images.sh sizes             the size table of the images built so far
#   stack/images.sh tag NAME NEWTAG   a copy of NAME's image under another tag, also as an archive
#                                     (the e2e uses it to roll a workload to a "new" image)
#
# NAME is one of: capture consumer query auth operator (Cairn's own, images/cairn.Dockerfile)
# and kafka postgres clickhouse (what the operator runs for `managed` dependencies).
#
# The engine is Docker where a Docker engine answers (`docker build`, then `docker save`), and
# buildah otherwise (CAIRN_IMAGE_ENGINE=docker|buildah overrides). With buildah nothing is pulled:
#   - Cairn's binaries are built on the host (cargo build --release, the dashboard with Vite) and
#     the Dockerfile's `prebuilt` stage takes them from the context this script prepares;
#   - the distroless runtime (glibc, libgcc, libssl3, CA certificates, user nonroot 65532) is
#     assembled from Debian's packages, the same file set as gcr.io/distroless/cc-debian12;
#   - debian:bookworm-slim is made by debootstrap (minbase), for the dependency images.
# buildah keeps its storage (and so its layer cache) in $CAIRN_TOOLS_DIR/buildah, outside the
# clone; RUN steps use chroot isolation (runc's would need a network namespace per step).
#
# CAIRN_IMAGES_PROFILE=dev puts the debug build's binaries (what `make test` has already built) in
# Cairn's images instead of a release build: the Kubernetes e2e does, to test the same code
# without a second, optimised build of it (minutes on two cores); `make images` builds release.
#
# Image references are $CAIRN_IMAGE_REGISTRY/cairn-<name>:$CAIRN_IMAGE_TAG (default
# ghcr.io/cairn-analytics and the workspace version), the names the operator and the Helm chart
# use by default, so a node that has the images imported needs no registry.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKSPACE_VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$CAIRN_ROOT/Cargo.toml")"
REGISTRY="${CAIRN_IMAGE_REGISTRY:-ghcr.io/cairn-analytics}"
TAG="${CAIRN_IMAGE_TAG:-$WORKSPACE_VERSION}"
OUT="${CAIRN_IMAGES_DIR:-$CAIRN_STACK_DIR/images}"
ALL=(capture consumer query auth operator kafka postgres clickhouse)
RUST=(capture consumer query auth operator)
CARGO_TARGET="${CARGO_TARGET_DIR:-$CAIRN_ROOT/target}"
case "${CAIRN_IMAGES_PROFILE:-release}" in
  release) PROFILE_ARGS=(--release); PROFILE_DIR=release ;;
  dev) PROFILE_ARGS=(); PROFILE_DIR=debug ;;
  *) die "CAIRN_IMAGES_PROFILE must be release or dev, not ${CAIRN_IMAGES_PROFILE}" ;;
esac

RUNTIME_BASE="localhost/cairn/distroless-cc:bookworm"
DEBIAN_BASE="localhost/cairn/debian:bookworm-slim"
DEBIAN_MIRROR="${CAIRN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The ClickHouse stand-in's engine: the version the local stack runs.
CHDB_VERSION="$(sed -n 's/^CHDB_VERSION="${CHDB_VERSION:-\(.*\)}"$/\1/p' "$CAIRN_ROOT/stack/clickhouse.sh")"

engine() {
  if [ -n "${CAIRN_IMAGE_ENGINE:-}" ]; then echo "$CAIRN_IMAGE_ENGINE"
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker
  else echo buildah; fi
}
ENGINE="$(engine)"
BUILDAH=(buildah --root "$CAIRN_TOOLS_DIR/buildah/storage" --runroot "/run/cairn-buildah-$(id -u)")

ref() { echo "$REGISTRY/cairn-$1:$TAG"; }
archive() { echo "$OUT/cairn-$1.oci.tar"; }

is_known() { local n; for n in "${ALL[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }
is_rust() { local n; for n in "${RUST[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# ---------------------------------------------------------------------------------------------
# bases (buildah only: Docker pulls the upstream images)

# The distroless/cc file set from Debian's packages: extracted, not installed (no dpkg database,
# no maintainer scripts), with docs, man pages and locales dropped; the CA bundle is concatenated
# the way update-ca-certificates does; /etc/passwd names root and nonroot (65532) as distroless does.
build_runtime_base() {
  local pkgs=(libc6 libgcc-s1 libssl3 ca-certificates netbase)
  local debs="$CAIRN_TOOLS_DIR/images/debs" stamp="$CAIRN_TOOLS_DIR/images/runtime-base.stamp" want
  want="$(apt-cache policy "${pkgs[@]}" 2>/dev/null | awk '/^[a-z]/{p=$1} /Candidate:/{print p $2}' | tr '\n' ' ')"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "${BUILDAH[@]}" inspect --type image "$RUNTIME_BASE" >/dev/null 2>&1; then
    return 0
  fi
  log "assembling the distroless runtime base from Debian packages: ${pkgs[*]}"
  rm -rf "$debs"; mkdir -p "$debs"
  (cd "$debs" && apt-get download -q "${pkgs[@]}" >/dev/null) || die "apt-get download ${pkgs[*]} failed"
  local root; root="$(mktemp -d)"
  local d; for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/lintian" \
         "$root/usr/share/locale" "$root/usr/lib/x86_64-linux-gnu/gconv"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/root"
  cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$root/tmp"; chmod 700 "$root/root"; chown 65532:65532 "$root/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  local c; c="$("${BUILDAH[@]}" from scratch)"
  "${BUILDAH[@]}" copy "$c" "$root" / >/dev/null
  "${BUILDAH[@]}" config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label org.opencontainers.image.description="glibc, libgcc, libssl3, CA certificates (Debian bookworm), as distroless/cc-debian12:nonroot" \
    "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$RUNTIME_BASE" >/dev/null
  rm -rf "$root"
  echo "$want" > "$stamp"
}

# debian:bookworm-slim's equivalent: debootstrap's minbase with apt's lists and docs dropped.
build_debian_base() {
  if "${BUILDAH[@]}" inspect --type image "$DEBIAN_BASE" >/dev/null 2>&1; then return 0; fi
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local root t0; root="$(mktemp -d)"; t0="$(date +%s)"
  log "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$CAIRN_TOOLS_DIR/images/debootstrap.log" 2>&1 \
    || { tail -20 "$CAIRN_TOOLS_DIR/images/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  # No daemons start during package installs in a build.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$root/etc/apt/apt.conf.d/90cairn"
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" > "$root/etc/apt/sources.list"
  local c; c="$("${BUILDAH[@]}" from scratch)"
  "${BUILDAH[@]}" copy "$c" "$root" / >/dev/null
  "${BUILDAH[@]}" config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$DEBIAN_BASE" >/dev/null
  rm -rf "$root"
  log "debian base ready in $(( $(date +%s) - t0 ))s"
}

# ---------------------------------------------------------------------------------------------
# build contexts

# link_or_copy SRC DST: a hard link where the file system allows, a copy otherwise.
link_or_copy() { ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }

# Cairn's binaries (release, or the debug build with CAIRN_IMAGES_PROFILE=dev; debug info
# stripped: the host's copies keep their line tables for profiling) and the dashboard's build.
prepare_rust_context() {
  local ctx="$OUT/context/cairn" pkgs=() n
  for n in "${RUST[@]}"; do pkgs+=(-p "cairn-$n"); done
  log "cargo build ${PROFILE_ARGS[*]} (${RUST[*]})"
  (
    # As if run from a shell, also when a test that cargo started runs this script: the variables
    # cargo sets for a test process (CARGO_PKG_*, LD_LIBRARY_PATH, RUSTUP_TOOLCHAIN, …) would
    # otherwise count as a changed environment, and everything would be built again.
    for v in $(compgen -e); do
      case "$v" in
        CARGO_HOME|CARGO_TARGET_DIR) ;;
        CARGO|CARGO_*|RUSTUP_TOOLCHAIN|RUSTUP_TOOLCHAIN_SOURCE|RUST_RECURSION_COUNT|LD_LIBRARY_PATH) unset "$v" ;;
      esac
    done
    cd "$CAIRN_ROOT" && cargo build "${PROFILE_ARGS[@]}" --locked --bins "${pkgs[@]}"
  ) || die "cargo build ${PROFILE_ARGS[*]} failed"
  "$CAIRN_ROOT/stack/dashboard.sh" build >/dev/null || die "building the dashboard failed"
  rm -rf "$ctx"; mkdir -p "$ctx/bin"
  for n in "${RUST[@]}"; do
    objcopy --strip-debug "$CARGO_TARGET/$PROFILE_DIR/cairn-$n" "$ctx/bin/cairn-$n" || die "no $PROFILE_DIR binary cairn-$n"
  done
  cp -r "$CAIRN_ROOT/dashboard/dist" "$ctx/dashboard"
}

prepare_context() {
  local name="$1" ctx="$OUT/context/$1"
  rm -rf "$ctx"; mkdir -p "$ctx"
  case "$name" in
    kafka)
      "$CAIRN_ROOT/stack/kafka.sh" install >/dev/null || die "resolving Kafka's jars failed"
      mkdir -p "$ctx/libs"
      local j; for j in "$CAIRN_TOOLS_DIR"/kafka-libs/*.jar; do link_or_copy "$j" "$ctx/libs/"; done
      cp "$CAIRN_ROOT/stack/kafka/log4j2.properties" "$CAIRN_ROOT/images/kafka-entrypoint.sh" "$ctx/" ;;
    postgres) cp "$CAIRN_ROOT/images/postgres-entrypoint.sh" "$ctx/" ;;
    clickhouse)
      # The engine's wheel comes from PyPI through the host's pip (and its configuration), so the
      # build itself reaches no package index.
      local wheels="$CAIRN_TOOLS_DIR/images/wheels" version="$CHDB_VERSION"
      if ! ls "$wheels"/chdb_core-"$version"-*.whl >/dev/null 2>&1; then
        mkdir -p "$wheels"
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_17_x86_64 \
          "chdb-core==$version" -d "$wheels" || die "downloading the chdb-core $version wheel failed"
      fi
      mkdir -p "$ctx/wheels"
      link_or_copy "$(ls "$wheels"/chdb_core-"$version"-*.whl | sed -n 1p)" "$ctx/wheels/"
      cp "$CAIRN_ROOT/stack/clickhouse/chserver.py" "$CAIRN_ROOT/images/clickhouse-entrypoint.sh" "$ctx/" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# build

# build_one NAME: builds NAME's image and writes its archive (unless the image is unchanged since
# the archive was written).
build_one() {
  local name="$1" image; image="$(ref "$name")"
  local dockerfile ctx target=() args=(
    --build-arg "VERSION=$TAG"
    --build-arg "REVISION=$(git -C "$CAIRN_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    # The commit's time, not the build's: an unchanged build gives the same image (and archive).
    --build-arg "CREATED=$(git -C "$CAIRN_ROOT" log -1 --format=%cI 2>/dev/null || echo unknown)"
  )
  if is_rust "$name"; then
    dockerfile="$CAIRN_ROOT/images/cairn.Dockerfile"; ctx="$OUT/context/cairn"; target=(--target "$name")
    args+=(--build-arg BINARIES=prebuilt)
    [ "$ENGINE" = buildah ] && args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_BASE")
  else
    dockerfile="$CAIRN_ROOT/images/$name.Dockerfile"; ctx="$OUT/context/$name"
    [ "$ENGINE" = buildah ] && args+=(--build-arg "DEBIAN_IMAGE=$DEBIAN_BASE")
    [ "$name" = clickhouse ] && args+=(--build-arg "CHDB_VERSION=$CHDB_VERSION")
  fi
  local t0 file id stamp; t0="$(date +%s)"; file="$(archive "$name")"; stamp="$file.id"
  log "building $image ($ENGINE)"
  if [ "$ENGINE" = docker ]; then
    docker build -q "${args[@]}" "${target[@]}" -f "$dockerfile" -t "$image" "$ctx" >/dev/null || die "docker build $name failed"
    id="$(docker image inspect -f '{{.Id}}' "$image")"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$id" ] || [ ! -s "$file" ]; then
      docker save -o "$file" "$image" || die "docker save $name failed"
    fi
  else
    "${BUILDAH[@]}" bud --layers --isolation chroot --quiet "${args[@]}" "${target[@]}" \
      -f "$dockerfile" -t "$image" "$ctx" >"$OUT/$name.build.log" 2>&1 \
      || { tail -30 "$OUT/$name.build.log" >&2; die "buildah bud $name failed (log: $OUT/$name.build.log)"; }
    id="$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$image")"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$id" ] || [ ! -s "$file" ]; then
      rm -f "$file"
      "${BUILDAH[@]}" push --quiet "$image" "oci-archive:$file:$image" || die "writing $file failed"
    fi
  fi
  echo "$id" > "$stamp"
  log "built $image in $(( $(date +%s) - t0 ))s"
}

# The unpacked size (what a node stores) and the archive's size (what is shipped, compressed).
sizes() {
  printf '%-11s %-55s %10s %10s\n' IMAGE REFERENCE UNPACKED ARCHIVE
  local n file unpacked
  for n in "${ALL[@]}"; do
    file="$(archive "$n")"; [ -s "$file" ] || continue
    if [ "$ENGINE" = docker ]; then unpacked="$(docker image inspect -f '{{.Size}}' "$(ref "$n")")"
    else unpacked="$("${BUILDAH[@]}" images --format '{{.Size}}' "$(ref "$n")" 2>/dev/null | sed -n 1p)"; fi
    printf '%-11s %-55s %10s %9sM\n' "$n" "$(ref "$n")" "$unpacked" "$(( $(stat -c %s "$file") / 1048576 ))"
  done
}

build() {
  local names=("$@") n need_rust=0 need_debian=0
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  for n in "${names[@]}"; do
    is_known "$n" || die "unknown image '$n' (one of: ${ALL[*]})"
    if is_rust "$n"; then need_rust=1; else need_debian=1; fi
  done
  mkdir -p "$OUT" "$CAIRN_TOOLS_DIR/images"
  if [ "$ENGINE" = buildah ]; then
    command -v buildah >/dev/null 2>&1 || apt_install buildah
    command -v skopeo >/dev/null 2>&1 || apt_install skopeo
    command -v runc >/dev/null 2>&1 || apt_install runc
    [ "$need_rust" = 1 ] && build_runtime_base
    [ "$need_debian" = 1 ] && build_debian_base
  fi
  command -v objcopy >/dev/null 2>&1 || apt_install binutils
  [ "$need_rust" = 1 ] && prepare_rust_context
  for n in "${names[@]}"; do
    is_rust "$n" || prepare_context "$n"
    build_one "$n"
  done
  sizes
}

# tag NAME NEWTAG: NAME's image under NEWTAG, with its archive next to the others.
retag() {
  local name="$1" newtag="$2" image new file
  image="$(ref "$name")"; new="${image%:*}:$newtag"; file="$OUT/cairn-$name-$newtag.oci.tar"
  if [ "$ENGINE" = docker ]; then
    docker tag "$image" "$new" && docker save -o "$file" "$new"
  else
    "${BUILDAH[@]}" tag "$image" "$new" && rm -f "$file" && "${BUILDAH[@]}" push --quiet "$new" "oci-archive:$file:$new"
  fi || die "tagging $image as $new failed"
  echo "$file"
}

case "${1:-}" in
  build) shift; with_lock images build "$@" ;;
  ref) ref "${2:?NAME}" ;;
  archive) archive "${2:?NAME}" ;;
  sizes) sizes ;;
  tag) with_lock images retag "${2:?NAME}" "${3:?NEWTAG}" ;;
  *) echo "usage: $0 build [NAME...]|ref NAME|archive NAME|sizes|tag NAME NEWTAG" >&2; exit 2 ;;
esac
