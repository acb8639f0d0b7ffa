# The two commands of the README: `make run` trains with the defaults, `make test` runs the tests.
# Both set up .venv first (scripts/setup.sh; a second run skips what is done).
#   TORCH_SPEC=...        the torch to install (default torch==2.13.0, the CPU build; e.g. a CUDA one)
#   USE_SYSTEM_TORCH=1    a venv with system site-packages, using the system's torch
#   ARGS="..."            options for `softmaxlab train` (make run); PYTEST_ARGS for make test
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
USE_SYSTEM_TORCH ?= 0
ARGS ?=
PYTEST_ARGS ?=
export PYTHON VENV TORCH_SPEC USE_SYSTEM_TORCH

.PHONY: run test setup bench bench-scale lint clean

run: setup
	$(VENV)/bin/softmaxlab train $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

setup:
	@bash scripts/setup.sh

bench: setup
	EXTRAS=test,bench bash scripts/setup.sh
	$(VENV)/bin/python benchmarks/bench.py

# generated data of EMNIST-byclass's shape (~0.9 GB, cached in ~/.cache/softmaxlab/bench_scale);
# about 15 minutes on 2 cores (a minute more the first time, to generate the data)
bench-scale: setup
	EXTRAS=test,bench bash scripts/setup.sh
	$(VENV)/bin/python benchmarks/bench_scale.py --out BENCHMARKS.md

lint: setup
	$(VENV)/bin/python -m ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
