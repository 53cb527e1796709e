# Base model intake: one unquantized GGUF per configured model.


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
        mem_mb=base_model_memory_mb,
        runtime=30,
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval base-model --source {params.source:q} {params.dequantize} {params.convert_type}"
        " --output {output.model} --info {output.info} --audit {output.audit} > {log} 2>&1"
