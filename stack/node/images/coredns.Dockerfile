# CoreDNS (stack/node/coredns, built from github.com/coredns/coredns). Non-root: the Corefile
# listens on :1053 and the kube-dns Service maps port 53 to it, so no capability is needed.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="coredns" \
      org.opencontainers.image.description="CoreDNS with the cluster DNS plugins, for Cairn's local Kubernetes node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/coredns/coredns" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY coredns /coredns
USER 65532:65532
EXPOSE 1053/udp 1053/tcp 9153/tcp
ENTRYPOINT ["/coredns"]
