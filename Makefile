# AgentJobs — build, run and test on a fresh Debian 12 machine with Swift installed.
#   make run    install build dependencies, build, start the embedded system on http://127.0.0.1:8080
#   make test   install everything the tests use, start the services, run the whole suite, stop them
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SWIFT ?= swift
JOBS ?= 2
DATA_DIR ?= ./.agentjobs
HTTP_PORT ?= 8080
BUILD_FLAGS := -j $(JOBS)
BUILD_PACKAGES := libsqlite3-dev pkg-config
# librdkafka is built from source by deploy/testenv/librdkafka.sh (which installs its own build
# dependencies); Tansu comes from PyPI (python3-pip). docker.io and busybox-static: the private Docker
# daemon and the FROM-scratch sample agent image of the docker driver tests (deploy/testenv/docker.sh);
# debootstrap: the Debian base the image from deploy/Dockerfile is built on (container-stack.sh).
TEST_PACKAGES := $(BUILD_PACKAGES) python3 python3-pip python3-yaml unzip chromium chromium-driver fonts-liberation fonts-dejavu-core \
	docker.io busybox-static curl postgresql debootstrap
# make bench starts a throw-away Tansu (from PyPI) for its Kafka cases and a throw-away PostgreSQL
# cluster for its postgres phase (pgbench, its raw baseline, comes with Debian's postgresql).
BENCH_PACKAGES := $(BUILD_PACKAGES) python3 python3-pip postgresql

.PHONY: help deps-build deps-test deps-bench build run test soak bench fmt clean screenshots

help:
	@echo "make run    build and start the embedded system (API + UI on http://127.0.0.1:$(HTTP_PORT), data in $(DATA_DIR))"
	@echo "make test   install test dependencies, start services, run all tests, stop services"
	@echo "make soak   the long chaos soak (2,000 runs, a role stopped or killed every 10-40 s, about 40 min)"
	@echo "            and a 5-minute aggregator outage; make test runs their short tier"
	@echo "make bench  run the benchmarks (release build, throw-away Tansu broker) and print figures;"
	@echo "            one phase: make bench BENCH_ARGS='--only relay' (see docs/benchmarks.md)"
	@echo "make screenshots  regenerate docs/screenshots/ from the browser tests (headless Chromium)"
	@echo "make build  build only;  make fmt  format the sources"

# Installs Debian packages that are missing; runs apt-get update only when something is missing.
define apt_install
	missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps-build:
	@$(call apt_install,$(BUILD_PACKAGES))

# Debian's postgresql would create and start a default cluster on port 5432; the tests start their own
# (deploy/testenv/postgres.sh), so none is created.
NO_MAIN_CLUSTER = mkdir -p /etc/postgresql-common/createcluster.d && \
	echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/agentjobs-no-main-cluster.conf

deps-test:
	@$(NO_MAIN_CLUSTER)
	@$(call apt_install,$(TEST_PACKAGES))

deps-bench:
	@$(NO_MAIN_CLUSTER)
	@$(call apt_install,$(BENCH_PACKAGES))

# The one executable links librdkafka (the distributed roles use Kafka). Debian 12's 2.0.2 is too old
# (see KafkaRuntime.minimumVersion), so librdkafka.sh builds 2.14.2 once into ~/.cache/agentjobs
# (about a minute, then cached) and the binary finds it through its rpath.
RDKAFKA_ENV = eval "$$(deploy/testenv/librdkafka.sh --print-env)"
RPATH = -Xlinker -rpath -Xlinker "$$AGENTJOBS_LIBRDKAFKA_PREFIX/lib"

build: deps-build
	deploy/testenv/librdkafka.sh
	$(RDKAFKA_ENV); $(SWIFT) build $(BUILD_FLAGS) --product agentjobs $(RPATH)

run: build
	$(RDKAFKA_ENV); $(SWIFT) run --skip-build $(RPATH) agentjobs dev --data-dir $(DATA_DIR) --http-port $(HTTP_PORT)

test: deps-test
	JOBS=$(JOBS) deploy/testenv/run-tests.sh

# The long tier of the chaos soak and of the aggregator outage (docs/operations.md, "Soak").
SOAK_ENV := AGENTJOBS_SOAK_RUNS=2000 AGENTJOBS_SOAK_MAX_AGENT_SECONDS=90 AGENTJOBS_SOAK_CONCURRENCY=60 \
	AGENTJOBS_SOAK_KILL_MIN_SECONDS=10 AGENTJOBS_SOAK_KILL_MAX_SECONDS=40 AGENTJOBS_SOAK_MIN_KILLS=30 \
	AGENTJOBS_SOAK_TIME_LIMIT_MINUTES=80 AGENTJOBS_SOAK_AGGREGATOR_OUTAGE_SECONDS=300

soak: deps-test
	$(SOAK_ENV) JOBS=$(JOBS) deploy/testenv/run-tests.sh --filter OutageTests
	$(SOAK_ENV) JOBS=$(JOBS) deploy/testenv/run-tests.sh --filter ChaosSoakTests

bench: deps-bench
	deploy/testenv/librdkafka.sh
	$(RDKAFKA_ENV); $(SWIFT) build $(BUILD_FLAGS) -c release --product agentjobs $(RPATH)
	$(RDKAFKA_ENV); $(SWIFT) build $(BUILD_FLAGS) -c release --product agentjobs-bench $(RPATH)
	deploy/testenv/run-bench.sh $(BENCH_ARGS)

screenshots: deps-test
	rm -f docs/screenshots/*.png
	AGENTJOBS_UI_SCREENSHOTS=$(CURDIR)/docs/screenshots JOBS=$(JOBS) deploy/testenv/run-tests.sh --filter AgentJobsUITests

fmt:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

clean:
	rm -rf .build
