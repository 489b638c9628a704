# Debian's busybox-static: the e2e's NetworkPolicy probe (nc) and the local-path provisioner's
# helper (sh, mkdir, rm); /www/index.html for a smoke test's httpd.
FROM scratch
ARG VERSION=dev
ARG NAME=busybox
LABEL org.opencontainers.image.title="cairn-busybox" \
      org.opencontainers.image.description="busybox-static for Cairn's kind cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://packages.debian.org/bookworm/busybox-static" \
      org.opencontainers.image.licenses="GPL-2.0-only"
COPY root/ /
USER 65534:65534
ENTRYPOINT ["/bin/busybox"]
