# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-quick clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## demo: build the demo dataset, ingest and profile it, print where results are
demo: $(STAMP)
	$(BIN)/pixelscope demo

## test: the whole suite (slow real-component tests included)
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## bench: pixelscope vs whylogs vs cleanvision (peers in their own venvs), N=5,000 and 50,000
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py --sizes 5000 50000

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py --sizes 1000

clean:
	rm -rf data reports .pytest_cache .hypothesis
