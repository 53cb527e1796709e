# Configuration checks and the input functions that turn the configuration into files.

import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package is normally installed (make setup); the path also covers a plain checkout.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from quant_eval.benchmarks import BENCHMARKS, effective_runs
from quant_eval.config import (
    BASE_VARIANT,
    check_config,
    check_input_files,
    check_schema,
    list_variants,
)
from quant_eval.errors import QuantEvalError
from quant_eval.llama_tools import quantization_types

SCHEMA = Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml"

# One line naming the key and the fix; Snakemake's own validation would print the schema.
try:
    check_schema(config, SCHEMA, BENCHMARKS)
    validate(config, schema=str(SCHEMA), set_default=True)
    check_config(config, BENCHMARKS, quantization_types())
    check_input_files(config)
except QuantEvalError as error:
    raise WorkflowError(str(error)) from None


MODELS = list(config["models"])
VARIANTS = {variant.name: variant for variant in list_variants(config)}
QUANTIZED_VARIANTS = [name for name, variant in VARIANTS.items() if not variant.is_base]


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    variant="|".join(map(re.escape, VARIANTS)),
    benchmark="|".join(map(re.escape, config["benchmarks"])),
    run=r"\d+",


def model_file(wildcards):
    """The GGUF file of one variant: the base model itself or a quantization of it."""
    if wildcards.variant == BASE_VARIANT:
        return f"base_models/{wildcards.model}.gguf"
    return f"quantized_models/{wildcards.model}/{wildcards.variant}.gguf"


def imatrix_input(wildcards):
    """The imatrix file of a variant quantized with it; nothing for one quantized without."""
    if VARIANTS[wildcards.variant].imatrix:
        return f"imatrix_data/{wildcards.model}.imatrix"
    return []


def benchmark_settings(benchmark):
    return config["benchmarks"][benchmark]


def run_files(wildcards=None):
    """Every per-run result file: runs that would repeat identical scores are computed once."""
    files = []
    for model in MODELS:
        for variant in VARIANTS:
            for benchmark, settings in config["benchmarks"].items():
                for run in range(1, effective_runs(benchmark, settings, config["runs"]) + 1):
                    files.append(f"evaluation_results/runs/{model}/{variant}/{benchmark}/run{run}.json")
    return files


def audit_files(wildcards=None):
    files = {}
    for model in MODELS:
        files[f"{model}/{BASE_VARIANT}"] = f"base_models/{model}.audit.json"
        for variant in QUANTIZED_VARIANTS:
            files[f"{model}/{variant}"] = f"quantized_models/{model}/{variant}.audit.json"
    return files


def fidelity_model(wildcards):
    """The variant's GGUF file; none for the base model, whose record comes from its log-probs."""
    if wildcards.variant == BASE_VARIANT:
        return []
    return model_file(wildcards)


def fidelity_files(wildcards=None):
    """The fidelity file of every variant, the base included; none when fidelity is disabled."""
    if not config["fidelity"]["enabled"]:
        return {}
    return {
        f"{model}/{variant}": f"fidelity/{model}/{variant}.json" for model in MODELS for variant in VARIANTS
    }


def fidelity_option():
    """The `quant-eval compare` option that passes the fidelity files, or nothing."""
    files = fidelity_files()
    if not files:
        return ""
    return "--fidelity " + " ".join(f"{key}={path}" for key, path in files.items())


def model_size_mb(path):
    """File size in MB of an input, for sizing memory requests (0 before it exists)."""
    path = Path(path)
    return path.stat().st_size // 1_000_000 if path.exists() else 0


CONFIG_JSON = json.dumps(config, sort_keys=True)
