# Each target bootstraps .venv from pyproject.toml when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint mutate clean-notebooks lab clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "from opsnb.kernels import ensure_kernel; ensure_kernel()"
	touch $(STAMP)

## make run: the whole pipeline on the built-in data into runs/<run-id>/
run: $(STAMP)
	$(BIN)/opsnb run

## make test: lint, types, layer contracts, notebook hygiene, then the test suite
test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/opsnb notebooks check

## make mutate [MODULES="parity bundle"] [WORKERS=2] [SURVIVORS=1]: mutation score per
## guarantee-carrying module (slow; not part of make test). SURVIVORS=1 re-runs only the last
## run's surviving mutants. Scores go to tests/mutation/last_scores.md and the README.
WORKERS ?= 2
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutate]'
	$(BIN)/python tests/mutation/run.py --workers $(WORKERS) $(if $(SURVIVORS),--survivors) $(MODULES)

## make clean-notebooks: strip stray outputs and execution counts from notebooks/
clean-notebooks: $(STAMP)
	$(BIN)/opsnb notebooks clean

## make lab: JupyterLab at the project root (notebooks/ and runs/ both visible)
lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	$(BIN)/jupyter lab --ServerApp.root_dir=.

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
