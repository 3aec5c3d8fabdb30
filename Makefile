# Two commands for a fresh machine: `make run` and `make test`. Each creates .venv and
# installs what it needs; re-running them reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench faults lint clean system-packages config-reference

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages: what the worker runs with, and what only the tests need.
system-packages:
	bash deploy/install-system-packages.sh deploy/system-packages.txt deploy/test-packages.txt

run: $(STAMP)
	$(BIN)/frictionwatch run

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

# One table on the same records (benchmarks/README.md); e.g. make bench BENCH_ARGS="--events 20000"
bench: $(STAMP)
	$(BIN)/python -m benchmarks.pipeline_throughput $(BENCH_ARGS)

# Faults on the embedded broker (SIGKILLs, a takeover, a broker pause) against replay; ~12 min.
faults: $(STAMP)
	$(BIN)/python -m benchmarks.faults

lint: $(STAMP)
	$(BIN)/ruff check streamer detectors tests benchmarks
	$(BIN)/mypy

# deploy/frictionwatch.toml from the settings declared in detectors/ (never edit it by hand).
config-reference: $(STAMP)
	$(BIN)/python -m detectors.reference

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
