# Casewire developer commands. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint migrate format bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(VENV)/bin/casewire migrate

run: install
	$(VENV)/bin/casewire run

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff check --fix .

# Limits and Casewire's figures on this machine, against the real Postgres and RabbitMQ:
# one table on stdout, and bench/results/latest.{txt,json,png}. Non-zero exit if anything was lost.
bench: install
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: install
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
