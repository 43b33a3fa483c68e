# Two commands: `make run` (demo DAG end to end) and `make test` (the test suite).
# Both bootstrap .venv, install the pinned dependencies and pull the DVC-versioned data.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CORES ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: setup data run science test bench gpu-check demo-data clean-results

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[test]"
	touch $(TEST_STAMP)

setup: $(STAMP)

data: setup
	dvc pull -q

run: data
	snakemake --configfile config/demo.yaml --cores $(CORES)
	@echo "Outputs: results/demo/  Runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"

# The science grid, methods x seeds (97 min from a fresh clone on 2 cores from random weights; docs/results.md):
# report in results/science/report/. Restartable: a stopped run resumes without redoing finished jobs.
science: data
	snakemake --configfile config/science.yaml --cores $(CORES)
	@echo "Report: results/science/report/summary.md  Compare: tvts compare 'tvts-s*' 'videomae-s*' --by-method"

test: data $(TEST_STAMP)
	pytest -q -ra

bench: data
	python bench/align_asr.py
	python bench/shard_clips.py
	python bench/train_step.py

# The first GPU's check, <= 8 min on one H100 (bench/gpu_check.py, docs/benchmarks.md): one JSON in
# results/gpu_check/ and one MLflow run. Without a GPU it says so and exits 0; ARGS=--cpu runs the CPU sections.
gpu-check: setup
	python bench/gpu_check.py $(ARGS)

# Regenerate the demo corpus from code and version it (docs/stages.md, "Versioning data (DVC)").
demo-data: setup
	tvts make-demo --config config/demo.yaml --out data/demo --workers $(CORES)
	dvc add -q data
	dvc push -q
	dvc gc -q --workspace --cloud --force

clean-results:
	rm -rf results logs mlflow.db mlartifacts .snakemake
