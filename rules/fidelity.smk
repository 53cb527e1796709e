# Fidelity: perplexity, KL divergence and same-top rate of every variant against the base
# model on held-out text. The base log-probs file is large and feeds only the fidelity jobs,
# so it is temporary: Snakemake deletes it once every variant's fidelity file is written.

FIDELITY = config["fidelity"]


rule fidelity_base:
    input:
        model="base_models/{model}.gguf",
    output:
        temp("fidelity/{model}/base_logprobs.bin"),
    params:
        text=FIDELITY["text"],
        context=FIDELITY["context"],
        chunks=FIDELITY["chunks"],
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=fidelity_memory_mb,
        runtime=fidelity_runtime,
    log:
        "logs/fidelity/{model}/base_logprobs.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval fidelity-base --model {input.model} --text {params.text:q}"
        " --context {params.context} --chunks {params.chunks} --threads {threads}"
        " --output {output} > {log} 2>&1"


rule fidelity:
    input:
        model=fidelity_model,
        logprobs="fidelity/{model}/base_logprobs.bin",
    output:
        "fidelity/{model}/{variant}.json",
    params:
        text=FIDELITY["text"],
        model=lambda wildcards, input: f"--model {input.model}" if input.model else "",
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": wildcards.variant}),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=fidelity_memory_mb,
        runtime=fidelity_runtime,
    log:
        "logs/fidelity/{model}/{variant}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval fidelity --base-logprobs {input.logprobs} {params.model}"
        " --text {params.text:q} --threads {threads} --labels {params.labels:q}"
        " --output {output} > {log} 2>&1"
