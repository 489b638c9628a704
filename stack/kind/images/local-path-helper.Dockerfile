# The local-path provisioner's helper: Debian's busybox-static as root (it makes and removes
# the volumes' directories on the node), like kind's own helper image.
FROM scratch
ARG VERSION=dev
ARG NAME=local-path-helper
LABEL org.opencontainers.image.title="cairn-local-path-helper" \
      org.opencontainers.image.description="busybox-static for Cairn's kind cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://packages.debian.org/bookworm/busybox-static" \
      org.opencontainers.image.licenses="GPL-2.0-only"
COPY root/ /

ENTRYPOINT ["/bin/busybox"]
