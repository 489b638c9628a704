# Cairn's own images, one build target each: capture, consumer, query, auth and operator.
#
#   docker build -f images/cairn.Dockerfile --target capture -t ghcr.io/cairn-analytics/cairn-capture:0.1.0 .
#
# Where the binaries come from is chosen by BINARIES:
#   source    (default) compile them in this build: the `rust-source` and `dashboard-source` stages
#             build the workspace and the dashboard from the repository root as the context.
#   prebuilt  take them from a context that stack/images.sh prepares (bin/: release binaries that
#             cargo built on the host; dashboard/: the dashboard that Vite built). `make images` uses
#             this with buildah on machines that have no Docker engine and reach no image registry.
# Stages a target does not need are skipped (BuildKit and buildah alike), so the prebuilt path
# never pulls the Rust or Node images.
#
# The runtime is distroless/cc-debian12:nonroot: glibc, libgcc, libssl3, CA certificates and the
# nonroot user (65532), nothing else — no shell, no package manager. Where no registry is reachable,
# stack/images.sh assembles the same file set from Debian's packages and passes it as RUNTIME_IMAGE.
# The binaries link zlib and librdkafka statically; `ldd` shows libc, libm, libgcc_s, libssl and
# libcrypto only.
ARG BINARIES=source
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- binaries from source --------------------------------------------------------------------
FROM ${RUST_IMAGE} AS rust-source
# librdkafka is built from its bundled source with CMake (rdkafka's cmake-build feature).
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
      -p cairn-capture -p cairn-consumer -p cairn-query -p cairn-auth -p cairn-operator \
 && mkdir -p /out/bin \
 && cp target/release/cairn-capture target/release/cairn-consumer target/release/cairn-query \
       target/release/cairn-auth target/release/cairn-operator /out/bin/

FROM ${NODE_IMAGE} AS dashboard-source
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
RUN npm run build && mkdir -p /out && cp -r dist /out/dashboard

FROM scratch AS source
COPY --from=rust-source /out/bin/ /out/bin/
COPY --from=dashboard-source /out/dashboard/ /out/dashboard/

# ---- binaries built beforehand (stack/images.sh) ---------------------------------------------
FROM scratch AS prebuilt
COPY bin/ /out/bin/
COPY dashboard/ /out/dashboard/

FROM ${BINARIES} AS binaries

# ---- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=""
LABEL org.opencontainers.image.source="https://github.com/cairn-analytics/cairn" \
      org.opencontainers.image.url="https://github.com/cairn-analytics/cairn" \
      org.opencontainers.image.vendor="Cairn" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV CAIRN_LOG_FORMAT=json
USER 65532:65532

FROM runtime AS capture
LABEL org.opencontainers.image.title="cairn-capture" \
      org.opencontainers.image.description="Cairn capture: validates events and writes them to Kafka"
COPY --from=binaries /out/bin/cairn-capture /usr/local/bin/cairn-capture
ENV CAIRN_CAPTURE_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/cairn-capture"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="cairn-consumer" \
      org.opencontainers.image.description="Cairn consumer: Kafka to ClickHouse in batches, offsets committed after the insert"
COPY --from=binaries /out/bin/cairn-consumer /usr/local/bin/cairn-consumer
ENV CAIRN_CONSUMER_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/cairn-consumer"]

FROM runtime AS query
LABEL org.opencontainers.image.title="cairn-query" \
      org.opencontainers.image.description="Cairn query: trends, funnels, retention, dashboards, and the web dashboard"
COPY --from=binaries /out/bin/cairn-query /usr/local/bin/cairn-query
COPY --from=binaries /out/dashboard/ /usr/share/cairn/dashboard/
ENV CAIRN_QUERY_ADDR=0.0.0.0:8000 \
    CAIRN_DASHBOARD_DIR=/usr/share/cairn/dashboard
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/cairn-query"]

FROM runtime AS auth
LABEL org.opencontainers.image.title="cairn-auth" \
      org.opencontainers.image.description="Cairn auth: users, projects, API keys and tokens"
COPY --from=binaries /out/bin/cairn-auth /usr/local/bin/cairn-auth
ENV CAIRN_AUTH_ADDR=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/cairn-auth"]

FROM runtime AS operator
LABEL org.opencontainers.image.title="cairn-operator" \
      org.opencontainers.image.description="Cairn operator: runs AnalyticsPlatform resources"
COPY --from=binaries /out/bin/cairn-operator /usr/local/bin/cairn-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cairn-operator"]
