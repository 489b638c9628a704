# Apache Kafka in KRaft mode, for platforms whose spec asks for `kafka.managed` (development and
# trials; production points `kafka.external` at a real cluster). It follows the apache/kafka
# image's contract, so the operator configures either one the same way: every KAFKA_* variable
# becomes a server.properties entry (KAFKA_NODE_ID → node.id; `__` → `_`, `___` → `-`),
# KAFKA_HEAP_OPTS sizes the heap, CLUSTER_ID names the cluster, and the storage is formatted on
# first start.
#
# The broker's jars come from Maven Central (stack/kafka/pom.xml, `stack/kafka.sh install`), not
# from a tarball, and stack/images.sh puts them into the build context under libs/. The JRE is
# jlink'ed to the modules a broker uses, so the image carries no JDK.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS jre
# binutils: jlink --strip-debug runs objcopy.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jdk-headless binutils \
 && jlink --add-modules java.base,java.compiler,java.desktop,java.instrument,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.transaction.xa,java.xml,jdk.crypto.ec,jdk.jfr,jdk.management,jdk.management.jfr,jdk.naming.dns,jdk.net,jdk.security.auth,jdk.security.jgss,jdk.unsupported,jdk.zipfs \
      --strip-debug --no-man-pages --no-header-files --compress=2 --output /opt/java

FROM ${DEBIAN_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=""
ARG KAFKA_VERSION=4.1.1
LABEL org.opencontainers.image.title="cairn-kafka" \
      org.opencontainers.image.description="Apache Kafka ${KAFKA_VERSION} (KRaft, single node) for Cairn's managed development mode" \
      org.opencontainers.image.source="https://github.com/cairn-analytics/cairn" \
      org.opencontainers.image.vendor="Cairn" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
RUN groupadd -r -g 1000 appuser && useradd -r -g appuser -u 1000 -d /var/lib/kafka -s /usr/sbin/nologin appuser \
 && mkdir -p /var/lib/kafka/data /opt/kafka/config && chown -R 1000:1000 /var/lib/kafka
COPY --from=jre /opt/java /opt/java
COPY libs/ /opt/kafka/libs/
COPY log4j2.properties /opt/kafka/config/log4j2.properties
COPY kafka-entrypoint.sh /usr/local/bin/kafka-entrypoint.sh
ENV PATH=/opt/java/bin:$PATH \
    KAFKA_VERSION=${KAFKA_VERSION}
USER 1000:1000
EXPOSE 9092 9093
ENTRYPOINT ["/usr/local/bin/kafka-entrypoint.sh"]
