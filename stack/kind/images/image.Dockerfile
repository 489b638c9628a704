# Every image of Cairn's kind node (stack/kind.sh): a Kubernetes component built here from Go
# modules, with what it runs besides itself (kube-proxy: iptables and conntrack, with their
# libraries; etcd, the apiserver, …: nothing), staged into root/ by stack/kind.sh. No base image:
# nothing is pulled. kubeadm's static pods run the binaries by name, so they are on PATH.
FROM scratch
ARG VERSION=dev
ARG NAME=component
LABEL org.opencontainers.image.title="${NAME}" \
      org.opencontainers.image.description="${NAME} for Cairn's locally assembled kind node image" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY root/ /
