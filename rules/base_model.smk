# Base model intake: one unquantized GGUF per configured model.

from quant_eval.base_model import resolve_source
from quant_eval.hf_conversion import model_files


def base_model_input(wildcards):
    """The files of a Hugging Face model directory, so that a change to any of them converts again."""
    path = resolve_source(config["models"][wildcards.model]["source"])
    return [str(file) for file in model_files(path)] if path.is_dir() else []


rule base_model:
    input:
        base_model_input,
    output:
        model="base_models/{model}.gguf",
        info="base_models/{model}.json",
        audit="base_models/{model}.audit.json",
    params:
        source=lambda wildcards: config["models"][wildcards.model]["source"],
        dequantize=lambda wildcards: (
            "--dequantize" if config["models"][wildcards.model].get("dequantize") else ""
        ),
        convert_type=lambda wildcards: (
            f"--convert-type {config['models'][wildcards.model]['convert_type']}"
            if "convert_type" in config["models"][wildcards.model]
            else ""
        ),
    log:
        "logs/base_model/{model}.log",
    resources:
        mem_mb=4000,
    shell:
        "quant-eval base-model --source {params.source:q} {params.dequantize} {params.convert_type}"
        " --output {output.model} --info {output.info} --audit {output.audit} > {log} 2>&1"
