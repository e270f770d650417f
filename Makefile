# mininova: two commands for a fresh Debian 12 / Ubuntu host (root, or sudo).
#   make run   - install and start everything, boot a first VM
#   make test  - the same set-up, then the whole test suite
SHELL := /bin/bash
VENV  ?= $(CURDIR)/.venv
STATE ?= $(CURDIR)/.state
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# The bootable test guest, built once from Debian packages.
TINY_IMAGE ?= /var/cache/mininova/tiny.qcow2
export MININOVA_TINY_IMAGE := $(TINY_IMAGE)

.PHONY: setup run test unit stop status sample-config bench

setup:
	$(SUDO) bash deploy/install-host.sh
	$(SUDO) bash deploy/start-libvirt.sh
	$(SUDO) bash deploy/setup-network.sh
	$(SUDO) bash deploy/start-controller-services.sh
	$(SUDO) bash deploy/build-tiny-image.sh $(TINY_IMAGE)
	VENV=$(VENV) bash deploy/setup-venv.sh

run: setup
	STATE=$(STATE) VENV=$(VENV) bash deploy/run-stack.sh

# Nothing skips: a missing prerequisite fails with its reason. The tests run as
# root (they read the credentials, run the role scripts, make network namespaces);
# the last lines say how many ran on the real services and how many in-process.
test: setup
	$(SUDO) bash deploy/install-test-tools.sh
	$(SUDO) env MININOVA_REQUIRE_RABBIT=1 MININOVA_REQUIRE_LIBVIRT=1 \
		$(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS) tests

# Benchmarks against the physical floor (table + bench/results/latest.json).
bench: setup
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

unit:
	$(VENV)/bin/python -m pytest -q tests/unit

stop:
	bash deploy/daemons.sh stop $(STATE) $(VENV)

status:
	bash deploy/daemons.sh status $(STATE) $(VENV)

# The sample config is generated from the code's options; a test keeps it current.
sample-config:
	$(VENV)/bin/oslo-config-generator --namespace mininova --output-file etc/mininova.conf.sample
