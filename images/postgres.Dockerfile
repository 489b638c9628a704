# PostgreSQL for platforms whose spec asks for `postgres.managed` (development and trials). It
# follows the official postgres image's contract, so the operator configures either one the same
# way: POSTGRES_USER, POSTGRES_PASSWORD (required), POSTGRES_DB and PGDATA; the cluster is
# initialised on first start, with scram-sha-256 for every network connection. The user is 999,
# as in the official image.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=""
ARG PG_MAJOR=15
LABEL org.opencontainers.image.title="cairn-postgres" \
      org.opencontainers.image.description="PostgreSQL ${PG_MAJOR} (Debian) for Cairn's managed development mode" \
      org.opencontainers.image.source="https://github.com/cairn-analytics/cairn" \
      org.opencontainers.image.vendor="Cairn" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# The package would create a cluster of its own ("main"); the entrypoint makes the one it needs.
RUN groupadd -r -g 999 postgres && useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/sh postgres \
 && mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 2777 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER 999:999
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
