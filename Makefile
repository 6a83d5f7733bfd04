# Two commands matter: `make run` (local, no AWS, no Docker) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AS     ?= consumer
KIND   ?= access

.PHONY: run test test-fast provision lint token bench bench-realtime audit soak sdk clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Trellis needs Python 3.11 or newer (found $$($(PYTHON) --version))."; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'."; exit 1; }
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(STAMP)
	$(PY) -m devstack.run

# Provisioning first: a missing tool stops `make test` in seconds, with the command to run.
test: provision $(STAMP) lint
	$(PY) -m pytest

# Everything but the tests that start real processes (e2e, soak, bench, bundle: marked e2e).
test-fast: provision $(STAMP) lint
	$(PY) -m pytest -m "not e2e" --durations=20

provision:
	@devstack/provision.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

audit: $(STAMP)
	$(PY) -m deploy.audit

token: $(STAMP)
	@$(PY) -m devstack.token $(AS) --kind $(KIND)

bench: $(STAMP)
	$(PY) -m bench.run

# 5,000 sockets on one realtime process, 100 changes/s (issue 16); writes its BENCHMARKS.md section.
bench-realtime: $(STAMP)
	$(PY) -m bench.realtime

soak: $(STAMP)
	$(PY) -m tests.soak.run

# The apps' clients from the OpenAPI document: sdk/typescript, sdk/kotlin, sdk/swift (git-ignored).
sdk: $(STAMP)
	$(PY) -m devstack.sdk

clean:
	rm -rf $(VENV) .local instance .pytest_cache .ruff_cache
