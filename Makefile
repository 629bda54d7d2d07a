# corral.nspawn developer workflow. Run as root on a Debian machine.
#   make demo  - boot a sandbox host and deploy playbooks/site.yml into it
#   make test  - units, sanity, lint and the real end-to-end suite
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
APT_PACKAGES := systemd-container debootstrap nftables openssh-client iproute2 rsync git python3-venv ca-certificates btrfs-progs dpkg-dev
SANITY_BUILD ?= $(ROOT)/.build
SANITY_DIR := $(SANITY_BUILD)/ansible_collections/corral/nspawn
GET_PIP_STANDIN := $(HOME)/.ansible/test/cache
PYTEST_ARGS ?=
# The last pytest run (units + e2e) spreads test FILES over this many processes: a file's test hosts
# live in one process (module fixtures), host names are unique per file and addresses are allocated
# under a lock (tests/e2e/harness.py), so files run side by side safely. 1 = one process.
PYTEST_WORKERS ?= 2

.PHONY: all deps venv collection units sanity lint e2e test demo demo-clean clean build bench bad-input-table \
	docs docs-rst docs-lint matrix pyfloor

all: test

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# requirements-dev.txt: every development and test tool (it includes requirements.txt, the
# collection's own controller needs, and tests/requirements-units.txt).
$(VENV)/.stamp: requirements.txt requirements-dev.txt tests/requirements-units.txt
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: deps $(VENV)/.stamp

# Ansible finds the collection through a symlink to this checkout: edits are live.
collection:
	@mkdir -p .collections/ansible_collections/corral
	@ln -sfn $(ROOT) .collections/ansible_collections/corral/nspawn

# The ansible-core matrix: meta/runtime.yml claims 2.17+. The newest (.venv, requirements-dev.txt)
# runs everything; each older one gets a cached venv under .venv-matrix/ and runs the unit tests
# and a sanity subset (see docs/testing.md, "Versions, and what users install").
MATRIX := 2.17.14 2.18.19
MATRIX_DIR := $(ROOT)/.venv-matrix
MATRIX_SANITY := --test validate-modules --test ansible-doc --test import
MATRIX_STAMPS := $(foreach v,$(MATRIX),$(MATRIX_DIR)/$(basename $(v))/.stamp)

$(MATRIX_DIR)/%/.stamp: tests/requirements-units.txt
	python3 -m venv $(MATRIX_DIR)/$*
	$(MATRIX_DIR)/$*/bin/pip install -q --upgrade pip
	$(MATRIX_DIR)/$*/bin/pip install -q ansible-core==$(filter $*.%,$(MATRIX)) -r tests/requirements-units.txt
	touch $@

matrix: venv collection $(MATRIX_STAMPS)
	@mkdir -p $(GET_PIP_STANDIN)
	@set -e; for v in $(basename $(MATRIX)); do \
	  bin=$(MATRIX_DIR)/$$v/bin; echo "== ansible-core $$($$bin/python -c 'import ansible.release as r; print(r.__version__)')"; \
	  PATH=$$bin:$$PATH $$bin/pytest -q -p no:cacheprovider tests/unit \
	    --ignore tests/unit/meta/test_execution_environment.py; \
	  $$bin/python tests/sanity/prepare.py "$(SANITY_BUILD)/matrix-$$v/ansible_collections/corral/nspawn" "$(GET_PIP_STANDIN)"; \
	  (cd "$(SANITY_BUILD)/matrix-$$v/ansible_collections/corral/nspawn" && PATH=$$bin:$$PATH $$bin/ansible-test sanity \
	    --python 3.11 --requirements --color no $(MATRIX_SANITY)); \
	done

# Managed-host Python range (tests/config.yml): Debian 11's 3.9 and Debian 13's 3.13 in cached roots.
pyfloor: venv collection
	$(PY) tests/pyfloor/run.py bullseye trixie

units: venv collection
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# docs/reliability.md's table of refused values, generated from the bad-input unit tests.
bad-input-table: venv collection
	$(PY) tests/unit/gen_bad_input_table.py --write

# ansible-test needs the collection under ansible_collections/NS/NAME inside a git tree,
# and a local stand-in for the get-pip bootstrap it would otherwise download.
sanity: venv
	@mkdir -p $(GET_PIP_STANDIN)
	@$(PY) tests/sanity/prepare.py "$(SANITY_DIR)" "$(GET_PIP_STANDIN)"
	$(BIN)/antsibull-changelog lint
	cd $(SANITY_DIR) && PATH=$(BIN):$$PATH $(BIN)/ansible-test sanity --python 3.11 --requirements --color no

lint: venv collection
	PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(ROOT)/.collections $(BIN)/ansible-lint --offline --profile production roles playbooks examples

e2e: venv collection
	PATH=$(BIN):$$PATH $(BIN)/pytest -q tests/e2e $(PYTEST_ARGS)

# One pytest run for units + e2e so the last line is the whole suite's summary.
test: venv collection sanity lint docs-lint matrix pyfloor
	PATH=$(BIN):$$PATH $(BIN)/pytest -q -p no:cacheprovider $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile,) \
	  tests/unit tests/e2e $(PYTEST_ARGS)

demo: venv collection
	PATH=$(BIN):$$PATH $(PY) tests/e2e/harness.py demo $(if $(KEEP),--keep,)

demo-clean: venv
	$(PY) tests/e2e/harness.py clean --all

build: venv docs-rst
	$(BIN)/ansible-galaxy collection build --force --output-path .build

# The docsite (antsibull-docs): modules and roles from their docs, docs/*.md as extra docs
# (rendered to docs/docsite/rst/, build output). `make docs` writes docs/build/html.
DOCS_ENV := PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(ROOT)/.collections
docs-rst: venv
	@$(PY) docs/gen_docsite.py

docs-lint: docs-rst collection
	$(DOCS_ENV) $(BIN)/antsibull-docs lint-collection-docs --plugin-docs .

# Offline, Sphinx cannot fetch the inventories of Ansible's own docs (intersphinx): the links
# into them (core pages, ansible.builtin plugins, core configuration variables) stay unresolved.
# Every other warning fails the build.
DOCS_OFFLINE := failed to reach any of the inventories|undefined label: '(common_return_values|ansible_configuration_settings|ansible_collections\.ansible\.builtin\.)|'envvar' reference target not found: ANSIBLE_
docs: docs-lint
	rm -rf docs/build && mkdir -p docs/build/rst && chmod og-w docs/build/rst
	$(DOCS_ENV) $(BIN)/antsibull-docs sphinx-init --use-current --squash-hierarchy --dest-dir docs/build \
	  --fail-on-error --project corral.nspawn --title corral.nspawn corral.nspawn >/dev/null
	cd docs/build && $(DOCS_ENV) $(BIN)/antsibull-docs --config-file antsibull-docs.cfg collection \
	  --cleanup everything --fail-on-error --use-current --squash-hierarchy --dest-dir rst corral.nspawn
	cd docs/build && { $(DOCS_ENV) $(BIN)/sphinx-build -M html rst build -c . -q 2>warnings.log || \
	  { cat warnings.log; exit 1; }; }; if grep WARNING warnings.log | grep -v -E "$(DOCS_OFFLINE)"; then \
	  echo "docsite warnings above"; exit 1; fi
	@echo "docsite: $(ROOT)/docs/build/build/html/index.html"

bench: venv collection
	PATH=$(BIN):$$PATH $(PY) tests/bench/run.py

clean:
	rm -rf .build .collections .pytest_cache docs/build docs/docsite/rst
