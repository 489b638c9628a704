# The ClickHouse stand-in: the ClickHouse engine from PyPI's chdb-core behind ClickHouse's HTTP
# interface (stack/clickhouse/chserver.py), for platforms whose spec asks for `clickhouse.managed`
# where no registry serves the official clickhouse/clickhouse-server image (the operator's
# default). It follows that image's contract for what Cairn uses: the HTTP interface on 8123,
# CLICKHOUSE_USER and CLICKHOUSE_PASSWORD, data under /var/lib/clickhouse, user 101.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=""
ARG CHDB_VERSION=26.9.0
LABEL org.opencontainers.image.title="cairn-clickhouse-standin" \
      org.opencontainers.image.description="The ClickHouse engine (chdb-core ${CHDB_VERSION}) behind ClickHouse's HTTP interface, for Cairn's managed development mode" \
      org.opencontainers.image.source="https://github.com/cairn-analytics/cairn" \
      org.opencontainers.image.vendor="Cairn" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# chdb-core's wheel comes in the context (wheels/: stack/images.sh downloads it from PyPI), and
# is installed without its optional DataFrame dependencies (pandas, pyarrow): the server only
# moves bytes in ClickHouse's own formats.
COPY wheels/ /tmp/wheels/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
 && python3 -m venv /opt/chserver \
 && /opt/chserver/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps /tmp/wheels/chdb_core-${CHDB_VERSION}-*.whl \
 && rm -rf /tmp/wheels \
 && /opt/chserver/bin/python -c "import chdb.session" \
 && groupadd -r -g 101 clickhouse && useradd -r -g clickhouse -u 101 -d /var/lib/clickhouse -s /usr/sbin/nologin clickhouse \
 && mkdir -p /var/lib/clickhouse && chown clickhouse:clickhouse /var/lib/clickhouse
COPY chserver.py /opt/chserver/chserver.py
COPY clickhouse-entrypoint.sh /usr/local/bin/clickhouse-entrypoint.sh
USER 101:101
EXPOSE 8123
ENTRYPOINT ["/usr/local/bin/clickhouse-entrypoint.sh"]
