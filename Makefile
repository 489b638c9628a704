# Cairn — the two commands that matter:
#   make up     bring Cairn up on this machine (installs what is missing, builds, starts the stack)
#   make test   run every test: unit, integration and end-to-end, against real services
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help docs up down status toolchain test build-tests test-unit test-dataplane test-api test-operator test-kubernetes deps deps-data lint fmt fuzz bench-capture bench-operator bench-query bench-changes bench-scale capacity capacity-doc demo crds images e2e e2e-kind

help: ## this list
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: ## install, build (release) and start PostgreSQL, Kafka, ClickHouse, capture and consumer
	@stack/up.sh

down: ## stop what `make up` started (data is kept in .stack/)
	@stack/down.sh

status: ## what the local stack is running
	@stack/postgres.sh status; stack/kafka.sh status; stack/clickhouse.sh status; stack/services.sh status

toolchain: ## the C toolchain and headers the Rust build needs (Debian packages)
	@stack/toolchain.sh

deps: toolchain ## install build prerequisites, Kafka's jars, the ClickHouse engine, s3proxy's jars, the Kubernetes control plane, kind and its node image, and the SDKs' test tools
	@stack/kafka.sh install
	@stack/clickhouse.sh install
	@stack/s3proxy.sh install
	@stack/kube.sh install
	@stack/kind.sh install
	@stack/sdks.sh install
	@stack/dashboard.sh install

deps-data: ## only what the data plane's benchmarks need: build prerequisites, Kafka's jars, the ClickHouse engine
	@stack/toolchain.sh
	@stack/kafka.sh install
	@stack/clickhouse.sh install

# The tools (mostly Go builds, at the lowest priority) and the Rust build run side by side: on a
# fresh machine each leaves idle time (downloads, links, one-crate tails) that the other fills.
# -j3: cargo takes make's free job slots (jobserver), so it keeps two jobs while deps runs.
test: ## every test; starts (and afterwards stops) the Kafka and ClickHouse it needs
	@$(MAKE) --no-print-directory -j3 deps build-tests
	@set -o pipefail; status=0; \
	  $(CARGO) test --workspace --no-fail-fast || status=$$?; \
	  stack/test-stack.sh stop >/dev/null 2>&1 || true; \
	  exit $$status

build-tests: toolchain ## build every binary and test (what `make test` runs them from)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast --no-run

test-unit: ## unit tests only (no services)
	$(CARGO) test --workspace --lib --bins

# One area at a time (each starts the services it needs, like `make test`; none of them needs the
# tools of the others' areas to be installed beyond what `make deps` provides).
test-dataplane: ## capture, consumer and ClickHouse: ingest, failures, hostile clients, schema, fuzz
	$(CARGO) build -p cairn-capture -p cairn-consumer --bins
	$(CARGO) test -p cairn-common -p cairn-capture -p cairn-consumer
	$(CARGO) test -p cairn-e2e --test ingest --test failures --test scale_out --test hostile --test clickhouse_schema

test-api: ## auth, query, the dashboard and the SDKs against the real services
	$(CARGO) build --workspace --bins
	$(CARGO) test -p cairn-auth -p cairn-query
	$(CARGO) test -p cairn-e2e --test auth --test auth_capture --test query --test dashboard --test sdks

test-operator: ## the operator on the local control plane (real kube-apiserver, kwok) and its Helm chart
	$(CARGO) build --workspace --bins
	$(CARGO) test -p cairn-operator

test-kubernetes: ## the whole platform on a kind cluster (same as `make e2e`)
	$(CARGO) build --workspace --bins
	$(CARGO) test -p cairn-e2e --test kubernetes -- --nocapture

FUZZ_CASES ?= 200000
fuzz: ## the property-based fuzz tests (capture's decoding, query's parsing, auth's tokens) for longer: FUZZ_CASES per property
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p cairn-capture -p cairn-query -p cairn-auth --test fuzz -- --nocapture

lint: ## formatting, clippy and ShellCheck
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@stack/lint.sh

fmt: ## format the code
	$(CARGO) fmt --all

bench-capture: deps-data ## capture throughput, latency and freshness on the local machine (prints figures)
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p cairn-bench --bin bench-capture

demo: ## load a month of sample data into the running stack (`make up` first): events through capture, then insights, a dashboard and cohorts
	$(CARGO) run --release -q -p cairn-demo

bench-scale: deps-data ## one to three captures and consumers on one topic, and the per-event costs of the capacity model (prints figures, writes .stack/bench/scale.json)
	$(CARGO) build --release -p cairn-capture -p cairn-consumer --bins
	$(CARGO) run --release -p cairn-bench --bin bench-scale

capacity: ## the capacity model (docs/CAPACITY.md) from the benchmarks' results in bench/results/
	$(CARGO) run -q -p cairn-bench --bin capacity

capacity-doc: ## rewrite docs/CAPACITY.md's tables from bench/results/ (after copying new bench results there)
	CAIRN_WRITE_DOCS=1 $(CARGO) test -p cairn-bench --lib capacity_doc_tables_are_current

bench-query: deps-data ## query latency over 10 million events: trend, breakdown, funnel, retention (prints figures)
	$(CARGO) build --release -p cairn-auth -p cairn-query --bins
	$(CARGO) run --release -p cairn-bench --bin bench-query

bench-changes: deps-data ## the earlier Go pipeline's benchmark, exact: 500k inserts, 200k updates, 200k deletes through the APIs, Kafka and the consumer (prints figures)
	$(CARGO) build --release -p cairn-auth -p cairn-capture -p cairn-consumer -p cairn-query --bins
	$(CARGO) run --release -p cairn-bench --bin bench-changes

bench-operator: deps ## operator figures on the local control plane: apply→Ready, idle reconciles, memory, 50 platforms
	$(CARGO) build --release -p cairn-operator --bin cairn-operator
	$(CARGO) run --release -p cairn-bench --bin bench-operator

docs: ## regenerate what is generated from the code: docs/OPERATIONS.md's settings tables, schemas/kafka-event.schema.json, schemas/event.schema.json and schemas/clickhouse/cluster/cairn.sql
	CAIRN_WRITE_DOCS=1 $(CARGO) test -p cairn-common --lib -- operations_doc_tables_are_current checked_in_kafka_record_schema_is_current checked_in_client_event_schema_is_current checked_in_cluster_schema_is_current

crds: ## regenerate crds/analyticsplatform.yaml from operator/src/crd.rs
	$(CARGO) run -q -p cairn-operator --bin crdgen > crds/analyticsplatform.yaml

images: ## build Cairn's images (workloads, operator, managed Kafka/PostgreSQL/ClickHouse) as OCI archives in .stack/images
	@stack/images.sh build

e2e: deps ## the whole platform on a kind cluster: images, helm install, apply, SDKs through the Ingress, NetworkPolicies, day 2
	$(CARGO) build --workspace --bins
	$(CARGO) test -p cairn-e2e --test kubernetes -- --nocapture

e2e-kind: ## the same, installing only kind's part: with Docker (kind's node image) or podman (a node image assembled here)
	@stack/kind.sh install
	$(CARGO) build --workspace --bins
	$(CARGO) test -p cairn-e2e --test kubernetes -- --nocapture
