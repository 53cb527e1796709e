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
    conda:
        "../envs/quant-eval.yaml"
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
        gpu_layers=gpu_layers("imatrix"),
    threads: all_threads()
    resources:
        mem_mb=imatrix_memory_mb,
        runtime=imatrix_runtime,
        gpu=1 if config["imatrix"]["gpu"] else 0,
    log:
        "logs/imatrix/{model}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval imatrix --model {input.model} --calibration {input.calibration}"
        " --output {output} --context {params.context} --chunks {params.chunks}"
        " --batch-size {params.batch_size} --threads {threads} --gpu-layers {params.gpu_layers}"
        " --log {log} 2>> {log}"
