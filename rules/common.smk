# Configuration checks and the input functions that turn the configuration into files.

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# The package is normally installed (make setup); the path also covers a plain checkout.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from quant_eval import resources as sizing
from quant_eval.base_model import resolve_source
from quant_eval.benchmarks import (
    BENCHMARKS,
    benchmark_source_files,
    data_settings,
    effective_runs,
    unavailable_benchmarks,
)
from quant_eval.calibration import normalize_mix, resolve_calibration_source
from quant_eval.config import (
    BASE_VARIANT,
    check_config,
    check_input_files,
    check_schema,
    imatrix_pairs,
    list_variants,
)
from quant_eval.errors import QuantEvalError
from quant_eval.llama_tools import quantization_types
from quant_eval.progress import pipeline_banner

SCHEMA = Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml"

# One line naming the key and the fix; Snakemake's own validation would print the schema.
try:
    check_schema(config, SCHEMA, BENCHMARKS)
    validate(config, schema=str(SCHEMA), set_default=True)
    check_config(config, BENCHMARKS, quantization_types())
    check_input_files(config)
    # Optional benchmarks whose data is missing are dropped here; compare records why.
    NOT_RUN = unavailable_benchmarks(config)
except QuantEvalError as error:
    raise WorkflowError(str(error)) from None


MODELS = list(config["models"])
VARIANTS = {variant.name: variant for variant in list_variants(config)}
QUANTIZED_VARIANTS = [name for name, variant in VARIANTS.items() if not variant.is_base]
BENCHMARKS_RUN = [name for name in config["benchmarks"] if name not in NOT_RUN]
# Benchmarks scored by lm-evaluation-harness (rule evaluate); judged ones have their own rules.
HARNESS_BENCHMARKS = [name for name in BENCHMARKS_RUN if not BENCHMARKS.get(name) or not BENCHMARKS[name].judged]
CALIBRATION_SETS = config["imatrix"].get("calibration_sets", {})


def one_of(names):
    """A wildcard pattern matching exactly these names; `(?!)` matches nothing."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    model=one_of(MODELS),
    variant=one_of(VARIANTS),
    benchmark=one_of(config["benchmarks"]),
    calibration_set=one_of(CALIBRATION_SETS),
    run=r"\d+",


def model_file(wildcards):
    """The GGUF file of one variant: the base model itself or a quantization of it."""
    if wildcards.variant == BASE_VARIANT:
        return f"base_models/{wildcards.model}.gguf"
    return f"quantized_models/{wildcards.model}/{wildcards.variant}.gguf"


def base_model_input(wildcards):
    """The files of a Hugging Face model directory source, so that a change to any of them converts again."""
    from quant_eval.base_model import resolve_source
    from quant_eval.hf_conversion import model_files

    path = resolve_source(config["models"][wildcards.model]["source"])
    return [str(file) for file in model_files(path)] if path.is_dir() else []


def imatrix_input(wildcards):
    """The imatrix file of a variant quantized with it; nothing for one quantized without.

    A recipe with its own calibration set uses that set's imatrix.
    """
    variant = VARIANTS[wildcards.variant]
    if not variant.imatrix:
        return []
    if variant.calibration:
        return f"imatrix_data/{wildcards.model}/{variant.calibration}.imatrix"
    return f"imatrix_data/{wildcards.model}.imatrix"


def calibration_report_input(wildcards):
    """The tokens-per-source record of a recipe's calibration set; nothing for the default text."""
    variant = VARIANTS[wildcards.variant]
    if variant.imatrix and variant.calibration:
        return f"imatrix_data/{wildcards.model}/{variant.calibration}.tokens.json"
    return []


def calibration_files(wildcards):
    """The files of the `imatrix.calibration` entries, dataset-build ones included."""
    return [str(resolve_calibration_source(entry)) for entry in config["imatrix"]["calibration"]]


def benchmark_settings(benchmark):
    return config["benchmarks"][benchmark]


def benchmark_data_file(benchmark):
    """The local data file of a built-in benchmark (ELYZA-tasks-100), as a list; empty otherwise.

    A user benchmark's data file comes through user_benchmark_files instead.
    """
    settings = benchmark_settings(benchmark)
    data = settings.get("data")
    return [str(data)] if data and "kind" not in settings else []


def user_benchmark_files(wildcards):
    """The files a user benchmark is defined by, so that editing one re-runs its jobs."""
    return benchmark_source_files(wildcards.benchmark, benchmark_settings(wildcards.benchmark))


def calibration_set_files(wildcards):
    """The source files of one named calibration set, so that editing one re-runs its imatrix."""
    key = f"imatrix.calibration_sets.{wildcards.calibration_set}"
    return [
        str(resolve_calibration_source(item["source"], key))
        for item in normalize_mix(CALIBRATION_SETS[wildcards.calibration_set])
    ]


def run_files(wildcards=None):
    """Every per-run result file: runs that would repeat identical scores are computed once."""
    files = []
    for model in MODELS:
        for variant in VARIANTS:
            for benchmark in BENCHMARKS_RUN:
                settings = config["benchmarks"][benchmark]
                for run in range(1, effective_runs(benchmark, settings, config["runs"]) + 1):
                    files.append(f"evaluation_results/runs/{model}/{variant}/{benchmark}/run{run}.json")
    return files


# The judged benchmark (rules/judge.smk): generation and judge settings kept apart, so
# a judge change re-runs only the judging.
JUDGED = "elyza_tasks_100"
GENERATION_KEYS = ("temperature", "max_tokens")


def generation_settings(wildcards=None):
    settings = benchmark_settings(JUDGED)
    return {key: settings[key] for key in GENERATION_KEYS if key in settings}


def judge_settings(wildcards=None):
    return benchmark_settings(JUDGED)["judge"]


def judge_model_input(wildcards):
    """The GGUF file of a local judge, so that replacing it re-runs the judging."""
    if judge_settings()["backend"] == "llama_cpp":
        from quant_eval.elyza.judge import judge_model_path

        return [str(judge_model_path(judge_settings()))]
    return []


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
    return sizing.file_size(path) // 1_000_000


# Threads of imatrix and quantization jobs when Snakemake has no core count, as on a
# cluster (--executor slurm): profiles/slurm sets them per rule with set-threads.
CLUSTER_THREADS = 8


def all_threads():
    """--cores for local runs; CLUSTER_THREADS where Snakemake runs without a core count."""
    try:
        return workflow.cores
    except WorkflowError:
        return CLUSTER_THREADS


def gpu_layers(section):
    """llama.cpp's layers on the GPU: all (-1) when the config section asks for a GPU, else none."""
    return -1 if config[section]["gpu"] else 0


# Resource requests sized from the model file (quant_eval.resources). Snakemake
# evaluates them again when a job is scheduled, so files made upstream are measured.


def evaluation_memory_mb(wildcards, input):
    shape = sizing.read_model_shape(input.model)
    return sizing.evaluation_memory_mb(sizing.file_size(input.model), config["evaluation"]["context"], shape)


def evaluation_runtime(wildcards, input):
    settings = benchmark_settings(wildcards.benchmark)
    return sizing.evaluation_runtime_minutes(
        sizing.file_size(input.model),
        items=sizing.count_lines(input.test),
        prompt_tokens=config["evaluation"]["context"],
        generated_tokens=settings.get("max_tokens", 0),
        gpu=config["evaluation"]["gpu"],
    )


def fidelity_memory_mb(wildcards, input):
    """Memory of one fidelity job: the model at the fidelity context, like an evaluation; little for the base."""
    if not input.model:
        return 1500
    shape = sizing.read_model_shape(input.model)
    return sizing.evaluation_memory_mb(sizing.file_size(input.model), config["fidelity"]["context"], shape)


def fidelity_runtime(wildcards, input):
    """Runtime of one fidelity job: one forward pass over every chunk, as llama-imatrix makes."""
    if not input.model:
        # The base model's record is read from its log-probs file: no model runs.
        return sizing.RUNTIME_OVERHEAD_MINUTES
    fidelity = config["fidelity"]
    return sizing.imatrix_runtime_minutes(sizing.file_size(input.model), fidelity["context"], fidelity["chunks"])


def imatrix_memory_mb(wildcards, input):
    shape = sizing.read_model_shape(input.model)
    return sizing.imatrix_memory_mb(sizing.file_size(input.model), config["imatrix"]["context"], shape)


def imatrix_runtime(wildcards, input):
    return sizing.imatrix_runtime_minutes(
        sizing.file_size(input.model), config["imatrix"]["context"], config["imatrix"]["chunks"],
        gpu=config["imatrix"]["gpu"],
    )


def base_model_memory_mb(wildcards):
    source = config["models"][wildcards.model]["source"]
    # Embedded models are always dequantized (quant_eval.base_model.prepare_base_model).
    dequantize = config["models"][wildcards.model]["dequantize"] or source.startswith("embedded:")
    return sizing.base_model_memory_mb(sizing.file_size(resolve_source(source)), dequantize)


CONFIG_JSON = json.dumps(config, sort_keys=True)


onstart:
    # The pipeline id names this run's log, which `quant-eval progress` and
    # scripts/monitor_quantization_progress.ps1 read.
    for line in pipeline_banner(log, MODELS):
        logger.info(line)
