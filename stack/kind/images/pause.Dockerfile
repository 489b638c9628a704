# The pod sandbox ("infra") image: stack/kind/pause/main.go, a static binary that sleeps and reaps.
FROM scratch
ARG VERSION=dev
ARG NAME=pause
LABEL org.opencontainers.image.title="cairn-pause" \
      org.opencontainers.image.description="Pod sandbox image for Cairn's kind node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="stack/kind/pause" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY root/ /
USER 65535:65535
ENTRYPOINT ["/pause"]
