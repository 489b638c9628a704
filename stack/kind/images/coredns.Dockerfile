# CoreDNS (stack/node/coredns) as kubeadm deploys it in the kind cluster: its Deployment passes
# only `-conf /etc/coredns/Corefile` and listens on :53 with NET_BIND_SERVICE added, every other
# capability dropped. A non-root user only gets that capability from a file capability, which
# this build cannot set, so the image runs as root (stack/node.sh's runs as 65532 on :1053).
FROM scratch
ARG VERSION=dev
ARG NAME=coredns
LABEL org.opencontainers.image.title="coredns" \
      org.opencontainers.image.description="CoreDNS with the cluster DNS plugins, for Cairn's kind node image" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/coredns/coredns" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY root/ /
EXPOSE 53/udp 53/tcp 9153/tcp
ENTRYPOINT ["/coredns"]
