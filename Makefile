# Casewire developer commands. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# `make run` needs the runtime dependencies only; tests and linters come with the dev extras.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
LOCK := --quiet --generate-hashes --no-emit-index-url --no-emit-find-links

.PHONY: install run test test-tools lint migrate format lock image topology bench bench-quick bench-side \
	bench-floor clean

$(RUNTIME): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV)

install: $(DEV)

migrate: $(RUNTIME)
	$(VENV)/bin/casewire migrate

run: $(RUNTIME)
	$(VENV)/bin/casewire run

# Chromium, promtool and curl come from Debian's packages: installed here when root with apt,
# otherwise one sentence names the command and nothing runs.
test-tools:
	@tests/system-tools.sh

test: $(DEV) test-tools
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

format: $(DEV)
	$(VENV)/bin/ruff check --fix .

# The Docker image installs exactly these versions, checked against these hashes.
lock: $(DEV)
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK) --strip-extras --output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK) --allow-unsafe --output-file requirements-build.lock \
		requirements-build.in

# The image, built by buildah (no daemon) from deploy/Dockerfile with the lock files' hashes, on
# python:3.11-slim-bookworm or, when no registry serves it, a Debian base made by mmdebstrap
# (docs/deployment.md). IMAGE_ARGS='--tag registry.example.com/casewire:0.1.0' names it.
image: test-tools
	python3 -m bench.topology.image $(IMAGE_ARGS)

# Casewire in its production topology on this machine, from the image: three RabbitMQ nodes, a
# Postgres primary with a synchronous standby, two replicas of each service, and a fault per
# scenario under bounded load; writes bench/results/topology.json (docs/scale.md). About 5 minutes.
topology: $(DEV) test-tools
	$(PY) -m bench.topology $(TOPOLOGY_ARGS)

# Limits and Casewire's figures on this machine, against the real Postgres and RabbitMQ:
# one table on stdout, bench/results/latest.{txt,json,png} and the charts docs/performance.md
# shows (bench/results/*.svg). Non-zero exit if anything was lost.
bench: $(DEV)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(DEV)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --quick $(BENCH_ARGS)

# Two versions side by side: make bench-side BASE=<revision> [OTHER=<revision>]
bench-side: $(DEV)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.side_by_side $(BASE) $(OTHER) $(BENCH_ARGS)

# What a delivered case costs with nothing but its hops, beside Casewire at the same rate.
bench-floor: $(DEV)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.floor $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
