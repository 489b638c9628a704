#!/usr/bin/env bash
# A real, local Kubernetes control plane for the operator's integration tests: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler built from Go modules, plus kwok,
# which simulates a node (sigs.k8s.io/kwok) so that the Pods the scheduler binds to it become
# Running/Ready. No kubelet, no container runtime, no Docker: images are never pulled.
#
#   stack/kube.sh install   build etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#                           kubectl, kwok and helm into $CAIRN_TOOLS_DIR/kube-<k8s version>/bin
#                           (each skipped once built at its version)
#   stack/kube.sh start     make certificates on first start, start etcd, kube-apiserver,
#                           kube-controller-manager, kube-scheduler and kwok, register the fake
#                           node, wait until /readyz is ok, the node is Ready and the default
#                           ServiceAccount exists; prints the admin kubeconfig's path
#   stack/kube.sh stop      stop what this script started, in reverse order, by pid file
#   stack/kube.sh status
#   stack/kube.sh env       print export lines for KUBECONFIG and PATH (kubectl, helm) to eval
#
# KUBE_INSTANCE_DIR (default $CAIRN_STACK_DIR/kube) holds one control plane's certificates, etcd
# data, logs, pid files and kubeconfigs, so tests can run one of their own beside the shared one
# on other ports (CAIRN_KUBE_ETCD_PORT, CAIRN_KUBE_ETCD_PEER_PORT, CAIRN_KUBE_APISERVER_PORT,
# CAIRN_KUBE_KCM_PORT, CAIRN_KUBE_SCHEDULER_PORT, CAIRN_KUBE_KWOK_PORT). The fake node is named
# CAIRN_KUBE_NODE_NAME (default kwok-node-0) and has no taint, so every Pod can land on it.
#
# Builds run at the lowest priority on every core (nice -n 19; CAIRN_GO_JOBS sets how many): a
# developer compiling at the same time goes first, and on a fresh machine `make test` waits for
# them. A first install takes a while (kube-apiserver and kube-controller-manager are large);
# later ones are instant.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_DIR="$CAIRN_ROOT/stack/kube"
# The Kubernetes version is the one that stack/kube/k8s/go.mod requires; the others are pinned here.
KUBE_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$KUBE_DIR/k8s/go.mod")"
[ -n "$KUBE_VERSION" ] || die "no k8s.io/kubernetes version in $KUBE_DIR/k8s/go.mod"
ETCD_VERSION="$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "$KUBE_DIR/etcd/go.mod")"
KWOK_VERSION="${CAIRN_KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${CAIRN_HELM_VERSION:-v3.22.0}"

BIN="$CAIRN_TOOLS_DIR/kube-$KUBE_VERSION/bin"
INSTANCE="${KUBE_INSTANCE_DIR:-$CAIRN_STACK_DIR/kube}"
PKI="$INSTANCE/pki"
KUBECONFIG_OUT="$INSTANCE/kubeconfig"

: "${CAIRN_KUBE_ETCD_PORT:=12379}"
: "${CAIRN_KUBE_ETCD_PEER_PORT:=12380}"
: "${CAIRN_KUBE_APISERVER_PORT:=16443}"
: "${CAIRN_KUBE_KCM_PORT:=16257}"
: "${CAIRN_KUBE_SCHEDULER_PORT:=16259}"
: "${CAIRN_KUBE_KWOK_PORT:=16258}"
ETCD_PORT="$CAIRN_KUBE_ETCD_PORT"
ETCD_PEER_PORT="$CAIRN_KUBE_ETCD_PEER_PORT"
API_PORT="$CAIRN_KUBE_APISERVER_PORT"
KCM_PORT="$CAIRN_KUBE_KCM_PORT"
SCHED_PORT="$CAIRN_KUBE_SCHEDULER_PORT"
KWOK_PORT="$CAIRN_KUBE_KWOK_PORT"
NODE_NAME="${CAIRN_KUBE_NODE_NAME:-kwok-node-0}"
SERVICE_CIDR="10.96.0.0/16"

# ---------------------------------------------------------------------------------------------
# install

install() {
  command -v go >/dev/null 2>&1 || die "go not found (Go 1.24+ is needed to build the control plane)"
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  command -v curl >/dev/null 2>&1 || apt_install curl
  mkdir -p "$BIN"
  local kv="${KUBE_VERSION#v}" now; now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local kx=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kx+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=${kv%%.*} -X $p.gitMinor=$(echo "$kv" | cut -d. -f2)"
    kx+=" -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  go_build etcd "$ETCD_VERSION" \
    sh -c "cd '$KUBE_DIR/etcd' && go build -ldflags='-s -w' -o '$BIN/etcd' ."
  go_build kube-apiserver "$KUBE_VERSION" \
    sh -c "cd '$KUBE_DIR/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kube-apiserver' k8s.io/kubernetes/cmd/kube-apiserver"
  go_build kube-controller-manager "$KUBE_VERSION" \
    sh -c "cd '$KUBE_DIR/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kube-controller-manager' k8s.io/kubernetes/cmd/kube-controller-manager"
  go_build kube-scheduler "$KUBE_VERSION" \
    sh -c "cd '$KUBE_DIR/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kube-scheduler' k8s.io/kubernetes/cmd/kube-scheduler"
  go_build kubectl "$KUBE_VERSION" \
    sh -c "cd '$KUBE_DIR/k8s' && go build -ldflags='-s -w $kx' -o '$BIN/kubectl' k8s.io/kubernetes/cmd/kubectl"
  go_build kwok "$KWOK_VERSION" \
    sh -c "cd / && GOBIN='$BIN' go install -ldflags='-s -w' sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  go_build helm "$HELM_VERSION" \
    sh -c "cd / && GOBIN='$BIN' go install -ldflags='-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION' helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# ---------------------------------------------------------------------------------------------
# certificates and kubeconfigs (made once per instance, kept across restarts)

# issue NAME SUBJECT [SANS]: a certificate signed by the instance's CA (or by PKI/$CA when CA is set).
issue() { issue_cert "$PKI" "$PKI/${CA:-ca}" "$@"; }

# kubeconfig FILE CERTNAME: a self-contained kubeconfig that authenticates with PKI/CERTNAME.{crt,key}.
kubeconfig() {
  (umask 077; cat > "$1.tmp") <<KC
apiVersion: v1
kind: Config
clusters:
- name: cairn
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: cairn
  context: {cluster: cairn, user: $2}
current-context: cairn
KC
  mv "$1.tmp" "$1"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    log "creating the cluster CA and certificates in $PKI"
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=cairn-local-kubernetes-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null || die "openssl could not create the CA"
  fi
  # The front proxy (request header) CA: the apiserver authenticates to aggregated API servers
  # with proxy-client; the controller manager and scheduler read this CA to delegate authentication.
  if [ ! -s "$PKI/front-proxy-ca.crt" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/front-proxy-ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=cairn-local-front-proxy-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/front-proxy-ca.crt" 2>/dev/null || die "openssl could not create the front proxy CA"
  fi
  CA=front-proxy-ca issue front-proxy-client "/CN=front-proxy-client"
  issue apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The apiserver's client certificate towards kubelets (kwok's fake kubelet endpoint).
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  issue admin "/O=system:masters/CN=cairn-admin"
  issue controller-manager "/CN=system:kube-controller-manager"
  issue scheduler "/CN=system:kube-scheduler"
  issue kwok "/O=system:masters/CN=kwok-controller"
  # kwok's fake kubelet server (logs/exec endpoints) serves with this certificate.
  issue kwok-serving "/CN=kwok-node" "IP:127.0.0.1,DNS:localhost"
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null || die "openssl could not make the SA keys"
  fi
  kubeconfig "$INSTANCE/kubeconfig" admin
  kubeconfig "$INSTANCE/controller-manager.kubeconfig" controller-manager
  kubeconfig "$INSTANCE/scheduler.kubeconfig" scheduler
  kubeconfig "$INSTANCE/kwok.kubeconfig" kwok
}

# ---------------------------------------------------------------------------------------------
# start / stop / status

KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT")


node_ready() {
  [ "$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

start() {
  local t0; t0="$(date +%s)"
  mkdir -p "$INSTANCE/etcd"
  chmod 700 "$INSTANCE/etcd"
  make_pki

  daemon_launch etcd "$BIN/etcd" --name cairn --data-dir "$INSTANCE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "cairn=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --log-level warn --quota-backend-bytes 2147483648 --auto-compaction-retention 1h \
    --unsafe-no-fsync
  daemon_ready etcd 60 healthz "http://127.0.0.1:$ETCD_PORT/health"

  daemon_launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --profiling=false --v=1
  daemon_ready kube-apiserver 180 "${KUBECTL[@]}" get --raw /readyz

  daemon_launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$INSTANCE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$INSTANCE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$INSTANCE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$INSTANCE/controller-manager-certs" \
    --controllers '*' --use-service-account-credentials=true --leader-elect=false \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
    --profiling=false --v=1
  daemon_launch kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$INSTANCE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$INSTANCE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$INSTANCE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --cert-dir "$INSTANCE/scheduler-certs" \
    --leader-elect=false --profiling=false --v=1
  daemon_launch kwok "$BIN/kwok" \
    --kubeconfig "$INSTANCE/kwok.kubeconfig" --config "$KUBE_DIR/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 --node-name localhost --node-port "$KWOK_PORT" \
    --server-address "127.0.0.1:$KWOK_PORT" \
    --tls-cert-file "$PKI/kwok-serving.crt" --tls-private-key-file "$PKI/kwok-serving.key" \
    --cidr 10.244.0.0/16 --node-lease-duration-seconds 40
  daemon_ready kube-controller-manager 120 healthz "https://127.0.0.1:$KCM_PORT/healthz"
  daemon_ready kube-scheduler 120 healthz "https://127.0.0.1:$SCHED_PORT/healthz"
  daemon_ready kwok 120 healthz "https://127.0.0.1:$KWOK_PORT/healthz"

  # The fake node: kwok manages the Nodes that carry its annotation. No taint, so that every Pod
  # (the operator's Deployments) is scheduled onto it.
  "${KUBECTL[@]}" apply -f - >/dev/null <<NODE || die "could not register the fake node"
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "256", memory: 1Ti, pods: "2000"}
  capacity: {cpu: "256", memory: 1Ti, pods: "2000"}
NODE
  # A node registered by an earlier start keeps its old status: set the capacity explicitly, so
  # that tests with many platforms (hundreds of pods) all get scheduled.
  "${KUBECTL[@]}" patch node "$NODE_NAME" --subresource=status --type=merge \
    -p '{"status":{"allocatable":{"cpu":"256","memory":"1Ti","pods":"2000"},"capacity":{"cpu":"256","memory":"1Ti","pods":"2000"}}}' >/dev/null \
    || die "could not set the fake node's capacity"
  daemon_ready kwok 120 node_ready
  # Pods need the namespace's default ServiceAccount, which the controller manager creates.
  daemon_ready kube-controller-manager 60 "${KUBECTL[@]}" -n default get serviceaccount default
  log "kubernetes $KUBE_VERSION ready in $(( $(date +%s) - t0 ))s: https://127.0.0.1:$API_PORT (node $NODE_NAME)"
  echo "$KUBECONFIG_OUT"
}

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

stop() {
  local i
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    stop_pid "${COMPONENTS[$i]}" "$INSTANCE/${COMPONENTS[$i]}.pid"
  done
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if pid_alive "$INSTANCE/$c.pid"; then echo "$c: running (pid $(cat "$INSTANCE/$c.pid"))"; else echo "$c: stopped"; fi
  done
  if pid_alive "$INSTANCE/kube-apiserver.pid"; then
    echo "apiserver: https://127.0.0.1:$API_PORT  kubeconfig: $KUBECONFIG_OUT"
  fi
}

case "${1:-}" in
  install) with_lock kube-install install ;;
  start) with_lock kube-install install; with_lock "kube-$API_PORT" start ;;
  stop) with_lock "kube-$API_PORT" stop ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_OUT"; echo "export PATH=$BIN:\$PATH" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
