# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Project-local, quiet Prefect and DVC (flows and tasks set the same defaults themselves)
export PATH := $(abspath $(BIN)):$(PATH)
export PREFECT_HOME ?= $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 60
export DVC_NO_ANALYTICS ?= 1
PREFECT_PORT ?= 4200

.PHONY: install demo demo-detection dashboard pipeline repro serve service test test-fast lint dvc-yaml bench bench-quick clean

# pyproject.toml declares what the package needs (with extras); requirements.txt is the exact
# lock, used as constraints, so a missing declaration fails here instead of working by accident.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.txt -e ".[all]"
	$(BIN)/python -m pip check
	# `import torchvision` in any script of this venv (CPU torch + CUDA-built torchvision: pixelscope/embed/torchcompat.py)
	$(BIN)/python -c "from pixelscope.embed.torchcompat import write_pth; write_pth()"
	touch $(STAMP)

install: $(STAMP)

## demo: the demo project demo/ (git + DVC): v1 through the whole pipeline (Prefect, no server needed),
## v1 as the drift reference, a shifted batch as v2, both versions in the history; then its profile
DEMO ?= demo
demo: $(STAMP)
	$(BIN)/python -m flows.demo --project $(DEMO)
	$(BIN)/pixelscope show $(DEMO)/data/processed/profile.json
	@echo
	@echo "the demo project: $(DEMO)/ (its own git + DVC repo: git log, git tag, dvc status, dvc repro work there)"
	@echo "manifest: $(DEMO)/data/interim/manifest.parquet   profile: $(DEMO)/data/processed/profile.json   bundle: $(DEMO)/reports/publish/"
	@echo "issues: $(DEMO)/data/processed/issues.parquet (cd $(DEMO) && pixelscope issues --show duplicates | label | blurry ...)"
	@echo "curated: $(DEMO)/data/curated/ (ledger curation.parquet, README.md card, torchvision / imagefolder / webdataset / parquet)"
	@echo "next: 'make dashboard' (http://127.0.0.1:8501: review, decide, Apply), or 'make serve' for the Prefect UI"

## demo-detection: composed scenes with known boxes, planted annotation faults and a simulated model's
## boxes, through the whole pipeline into demo-detection/; prints what the finders caught
demo-detection: $(STAMP)
	$(BIN)/python -m flows.demo_detection --project demo-detection
	@echo "the project: demo-detection/ (reports/demo_detection.json; 'make dashboard DEMO=demo-detection' shows its boxes and Patches)"

## dashboard: review the demo project in the browser (Streamlit, http://127.0.0.1:$(DASHBOARD_PORT)); decisions
## go to $(DEMO)/curation/decisions.jsonl and Apply re-curates $(DEMO)/. Your own project: pixelscope dashboard
DASHBOARD_PORT ?= 8501
dashboard: $(STAMP)
	$(BIN)/pixelscope dashboard --project $(DEMO) --port $(DASHBOARD_PORT)

## pipeline: the Prefect pipeline on data/raw (skips stages DVC reports up to date)
pipeline: $(STAMP)
	$(BIN)/python -m flows.pipeline

## repro: the same stages through DVC
repro: $(STAMP)
	$(BIN)/dvc repro

## serve: a local Prefect server (SQLite, 127.0.0.1:$(PREFECT_PORT)) + deployments for the UI
serve: $(STAMP)
	$(BIN)/python -m flows.serve --port $(PREFECT_PORT)

## service: the example model service that logs every image it is sent (examples/service), on 127.0.0.1:8008
service: $(STAMP)
	$(BIN)/python -m uvicorn examples.service.app:app --host 127.0.0.1 --port 8008

## test: the whole suite (slow real-component tests included)

test: $(STAMP)
	$(BIN)/python -m pytest

## test-fast: everything but the real-component tests marked slow (under a minute)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## lint: ruff (pyflakes, pycodestyle, import order), mypy (types; [tool.mypy] in pyproject.toml) and the generated dvc.yaml being current
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pixelscope.pipeline.stages --check

## dvc-yaml: regenerate dvc.yaml from the stage table (pixelscope/pipeline/stages.py)
dvc-yaml: $(STAMP)
	$(BIN)/python -m pixelscope.pipeline.stages --write

## bench: pixelscope vs whylogs vs cleanvision vs fastdup stats-only (peers in their own venvs), N=5,000 and 50,000, 3 interleaved rounds
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py --sizes 5000 50000 --rounds 3

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py --sizes 1000 --peer-sizes 1000

clean:
	rm -rf data/interim data/processed reports .pytest_cache .hypothesis
	if [ -f $(DEMO)/.pixelscope-demo ]; then rm -rf $(DEMO); fi
