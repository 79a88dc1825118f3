# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test lint format venv clean

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

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

format: venv
	$(BIN)/snakefmt Snakefile rules/

clean:
	rm -rf results logs benchmarks resources/twins .snakemake
