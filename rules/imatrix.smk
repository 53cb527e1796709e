# Importance matrix: calibration text, then llama-imatrix on each base model.


rule calibration_text:
    input:
        # The files themselves, so that editing one re-runs the imatrix and what follows.
        calibration_files,
    output:
        "calibration/calibration.txt",
    params:
        sources=config["imatrix"]["calibration"],
    log:
        "logs/calibration_text.log",
    shell:
        "quant-eval calibration --sources {params.sources:q} --output {output} > {log} 2>&1"


rule imatrix:
    input:
        model="base_models/{model}.gguf",
        calibration="calibration/calibration.txt",
    output:
        "imatrix_data/{model}.imatrix",
    params:
        context=config["imatrix"]["context"],
        chunks=config["imatrix"]["chunks"],
        batch_size=config["imatrix"]["batch_size"],
    threads: workflow.cores
    resources:
        mem_mb=lambda wildcards, input: 2000 + 2 * model_size_mb(input.model),
    log:
        "logs/imatrix/{model}.log",
    shell:
        "quant-eval imatrix --model {input.model} --calibration {input.calibration}"
        " --output {output} --context {params.context} --chunks {params.chunks}"
        " --batch-size {params.batch_size} --threads {threads} --log {log} 2>> {log}"
