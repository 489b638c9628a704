# The smoke test's image (stack/node.sh smoke): Debian's static busybox with applet links, and a
# page for `httpd -h /www`, and apicheck (stack/node/apicheck). No RUN step: the links are made
# in the build context.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="cairn-node-busybox" \
      org.opencontainers.image.description="busybox-static for Cairn's local Kubernetes node smoke test" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://packages.debian.org/bookworm/busybox-static" \
      org.opencontainers.image.licenses="GPL-2.0-only"
COPY bin/ /bin/
COPY www/ /www/
USER 65534:65534
ENTRYPOINT ["/bin/busybox"]
