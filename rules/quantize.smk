# Quantization: one GGUF per variant, with or without the imatrix, and its tensor audit.


rule quantize:
    input:
        model="base_models/{model}.gguf",
        imatrix=imatrix_input,
        calibration_report=calibration_report_input,
    output:
        model="quantized_models/{model}/{variant}.gguf",
        audit="quantized_models/{model}/{variant}.audit.json",
    params:
        type=lambda wildcards: VARIANTS[wildcards.variant].quantization_type,
        # The whole recipe is a parameter: editing one recipe re-runs only its jobs.
        recipe=lambda wildcards: VARIANTS[wildcards.variant].recipe_json(),
        calibration_report=lambda wildcards, input: (
            f"--calibration-report {input.calibration_report}" if input.calibration_report else ""
        ),
        imatrix=lambda wildcards, input: f"--imatrix {input.imatrix}" if input.imatrix else "",
    threads: all_threads()
    resources:
        mem_mb=lambda wildcards, input: sizing.quantize_memory_mb(sizing.file_size(input.model)),
        runtime=lambda wildcards, input: sizing.quantize_runtime_minutes(sizing.file_size(input.model)),
    log:
        "logs/quantize/{model}/{variant}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval quantize --model {input.model} --type {params.type} {params.imatrix}"
        " --recipe {params.recipe:q} {params.calibration_report}"
        " --output {output.model} --audit {output.audit} --threads {threads}"
        " --log {log} 2>> {log}"
