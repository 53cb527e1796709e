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


# Named calibration sets (imatrix.calibration_sets): a weighted mix each, and one imatrix
# per set and model, used only by the recipes that name the set.


rule calibration_set:
    input:
        calibration_set_files,
    output:
        text="calibration/sets/{calibration_set}.txt",
        manifest="calibration/sets/{calibration_set}.json",
    params:
        sources=lambda wildcards: json.dumps(CALIBRATION_SETS[wildcards.calibration_set], sort_keys=True),
    log:
        "logs/calibration_set/{calibration_set}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval calibration-mix --name {wildcards.calibration_set} --sources {params.sources:q}"
        " --output {output.text} --manifest {output.manifest} > {log} 2>&1"


rule imatrix_calibration_set:
    input:
        model="base_models/{model}.gguf",
        calibration="calibration/sets/{calibration_set}.txt",
        manifest="calibration/sets/{calibration_set}.json",
    output:
        imatrix="imatrix_data/{model}/{calibration_set}.imatrix",
        tokens="imatrix_data/{model}/{calibration_set}.tokens.json",
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
        "logs/imatrix/{model}/{calibration_set}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval imatrix --model {input.model} --calibration {input.calibration}"
        " --manifest {input.manifest} --token-report {output.tokens}"
        " --output {output.imatrix} --context {params.context} --chunks {params.chunks}"
        " --batch-size {params.batch_size} --threads {threads} --gpu-layers {params.gpu_layers}"
        " --log {log} 2>> {log}"
