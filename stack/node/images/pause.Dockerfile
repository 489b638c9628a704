# The pod sandbox ("infra") image: stack/node/pause/main.go, a static binary that sleeps and reaps.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="cairn-node-pause" \
      org.opencontainers.image.description="Pod sandbox image for Cairn's local Kubernetes node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="stack/node/pause" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
