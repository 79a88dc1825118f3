# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test test-stacks lint format venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## Run the workflow on the embedded default: the synthetic twins of COCO, Cityscapes and BDD100K,
## then write the browsable Snakemake report (tables, figures, audits, provenance).
demo: venv
	$(BIN)/snakemake --cores $(CORES) all
	$(BIN)/snakemake --report results/report/snakemake-report.html

## Run the test suite (unit tests, lint, format check, a real run of the data stage).
test: venv
	$(BIN)/python -m pytest -q tests

## Build (or reuse) the runnable twin virtualenv of every envs/*.yaml (tools/env_twins.py; cached
## outside the clone, keyed by the env file) and test them: pinned versions, framework and package
## imports, and every test marked `stacks` (e.g. MMDetection 2.x / 3.x training on the BDD100K twin).
## Skips, saying what is missing, without a pyenv Python or the wheelhouse.
test-stacks: venv
	$(BIN)/python tools/env_twins.py check
	$(BIN)/python -m pytest -q -m stacks tests/

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

format: venv
	$(BIN)/snakefmt Snakefile rules/

clean:
	rm -rf results logs benchmarks resources/twins .snakemake
