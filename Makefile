# meshrun — `make demo` runs a real 4-node mesh; `make test` runs every test.
# Everything needed is installed idempotently into git-ignored folders (.tools/, .venv/).
SHELL := /bin/bash
include packaging/versions.env

TOOLS    := $(CURDIR)/.tools
VENV     := $(CURDIR)/.venv
RECEPTOR := $(TOOLS)/bin/receptor
CARGO    ?= cargo

export MESHRUN_VENV := $(VENV)
export CONTAINERS_CONF := $(CURDIR)/packaging/podman/containers.conf

# Integration tests that need a real receptor (and podman with the EE image).
MESH_TESTS := --test mesh_jobs --test podman_jobs --test agent_run_supervises_receptor \
              --test leftovers_and_cleanup --test instances_api --test control_node_receptor \
              --test discovery_finds_nodes --test node_loss_and_return --test node_loss --test placement_on_a_real_mesh \
              --test inventory_updates \
              --test ad_hoc_commands \
              --test project_updates \
              --test distance_and_partitions \
              --test coordinator_restart \
              --test cancel_and_reaper \
              --test api_auth \
              --test deprovision --test hostile_api \
              --test join_and_renew --test mesh_mtls

.PHONY: fuzz soak demo test build venv receptor podman ee-image dist dist-test lint bench-agent bench-discovery bench-jobs clean-tools mesh-up mesh-down

## demo: bring up control + hop + 2 execution nodes in a temp dir and run a playbook through them
demo: build venv receptor ee-image
	MESHRUN_RECEPTOR=$(RECEPTOR) packaging/demo/demo.sh

## mesh-up: start the demo mesh in the background under .meshrun/ and write .meshrun/demo.env
mesh-up: build venv receptor ee-image
	MESHRUN_RECEPTOR=$(RECEPTOR) packaging/mesh/mesh-up.sh

## mesh-down: stop exactly what mesh-up started (files stay in .meshrun/)
mesh-down:
	packaging/mesh/mesh-down.sh

## test: unit tests, then the integration tests against real receptor and ansible-runner
test: build venv ee-image
	$(CARGO) test --workspace --exclude meshrun-tests
	$(CARGO) test -p meshrun-tests --test runner_interop --test worker_info_truthful \
	  --test hostile_input --test fuzz_targets
	@if packaging/receptor/install.sh $(RECEPTOR_VERSION) $(RECEPTOR); then \
	  MESHRUN_RECEPTOR=$(RECEPTOR) $(CARGO) test -p meshrun-shared control_socket -- --ignored && \
	  MESHRUN_RECEPTOR=$(RECEPTOR) $(CARGO) test -p meshrun-tests $(MESH_TESTS); \
	else \
	  echo "=================================================================="; \
	  echo "NOT RUN: the mesh integration tests (no receptor could be installed)"; \
	  echo "=================================================================="; \
	fi
	$(MAKE) dist-test

build:
	$(CARGO) build --workspace --all-targets

## fuzz: not part of `make test` (which runs each target for 32 cases): every fuzz target of
## tests/tests/fuzz_targets.rs for FUZZ_SECS seconds (default 30), two at a time, printing
## `FUZZ <target>: <cases> cases in <secs> s`; a failure prints the shrunk input
FUZZ_SECS ?= 30
fuzz:
	set -o pipefail; FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test -p meshrun-tests --test fuzz_targets \
	  -- --nocapture --test-threads=2 2>&1 | grep -E '^(FUZZ|test |test result)'

## dist: .deb and .rpm (x86_64) of meshrun-agent (static), meshrun-coordinator (+ meshrun CLI) and
## the pinned receptor into dist/ (release build; says whether receptor was built from source)
dist:
	packaging/dist/build.sh

## dist-test: install the packages into a Debian container and a temporary rpm root (scriptlets
## run), upgrade, remove, purge; systemd-analyze verify on the units
dist-test: dist ee-image
	packaging/dist/test.sh

# Fault tests the soak repeats (each run once per loop); other fault test files can be added.
SOAK_FAULT_TESTS ?= --test node_loss_and_return --test node_loss --test cancel_and_reaper --test distance_and_partitions
## soak: not part of `make test`: the coordinator-restart scenarios $(SOAK_RUNS) times each
## (default 20; prints events lost/duplicated, goal 0/0), then the fault tests $(SOAK_LOOPS) times
soak: build venv receptor
	@mkdir -p $(TOOLS)
	set -o pipefail; MESHRUN_RECEPTOR=$(RECEPTOR) SOAK_RUNS=$(or $(SOAK_RUNS),20) $(CARGO) test \
	  -p meshrun-tests --test coordinator_restart -- --nocapture --test-threads=2 2>&1 \
	  | tee $(TOOLS)/soak-restart.log
	@for i in $$(seq 1 $(or $(SOAK_LOOPS),5)); do \
	  echo "== soak fault loop $$i"; \
	  MESHRUN_RECEPTOR=$(RECEPTOR) $(CARGO) test -p meshrun-tests $(SOAK_FAULT_TESTS) || exit 1; \
	done
	@echo "== soak totals (goal: 0 lost, 0 duplicated)"; grep -h '^SOAK' $(TOOLS)/soak-restart.log

venv:
	packaging/python/install-venv.sh $(VENV) $(ANSIBLE_RUNNER_VERSION) $(ANSIBLE_CORE_VERSION) $(RECEPTOR_VERSION)

receptor:
	packaging/receptor/install.sh $(RECEPTOR_VERSION) $(RECEPTOR)

## podman: the Debian packages an execution node needs (podman, runc, catatonit, netavark, debootstrap)
podman:
	packaging/podman/install.sh

## ee-image: the execution-environment image localhost/meshrun-ee:latest (no registry; cache in .tools/ee)
ee-image: podman
	packaging/ee/build.sh

## bench-agent: meshrun-agent's overhead against podman + ansible-runner alone (release build)
bench-agent: venv ee-image
	$(CARGO) build --release -p meshrun-agent -p meshrun-coordinator
	$(CARGO) run --release -p meshrun-tests --bin bench-agent -- $(or $(RUNS),10)

## bench-discovery: discovery and loss latency on a real mesh, reconcile cost on 1,000 synthetic nodes
bench-discovery: venv receptor
	$(CARGO) build --release -p meshrun-agent -p meshrun-coordinator
	MESHRUN_RECEPTOR=$(RECEPTOR) $(CARGO) run --release -p meshrun-tests --bin bench-discovery

## bench-jobs: scheduler, codec vs ansible-runner, event ingestion, dispatch overhead, event lag vs receptorctl (release build)
bench-jobs: venv receptor
	$(CARGO) build --release -p meshrun-coordinator -p meshrun-agent -p meshrun-tests
	MESHRUN_RECEPTOR=$(RECEPTOR) $(CARGO) run --release -p meshrun-tests --bin bench-jobs -- $(or $(RUNS),5)

## lint: formatting and clippy, as CI runs them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-tools:
	rm -rf $(TOOLS) $(VENV)
