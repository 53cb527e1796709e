# Fidelity: perplexity, KL divergence and same-top rate of every variant against the base
# model on held-out text. The base log-probs file is large and only feeds the variants' jobs,
# so it is temporary: Snakemake deletes it once every variant has been compared.

FIDELITY = config["fidelity"]


rule fidelity_base:
    input:
        model="base_models/{model}.gguf",
    output:
        logprobs=temp("fidelity/{model}/base_logprobs.bin"),
        result=f"fidelity/{{model}}/{BASE_VARIANT}.json",
    params:
        text=FIDELITY["text"],
        context=FIDELITY["context"],
        chunks=FIDELITY["chunks"],
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": BASE_VARIANT}),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, input: 1500 + model_size_mb(input.model),
    log:
        "logs/fidelity/{model}/base.log",
    shell:
        "quant-eval fidelity-base --model {input.model} --text {params.text:q}"
        " --context {params.context} --chunks {params.chunks} --threads {threads}"
        " --labels {params.labels:q} --base-logprobs {output.logprobs} --output {output.result}"
        " > {log} 2>&1"


rule fidelity:
    input:
        model=model_file,
        logprobs="fidelity/{model}/base_logprobs.bin",
    output:
        "fidelity/{model}/{variant}.json",
    wildcard_constraints:
        variant="|".join(map(re.escape, QUANTIZED_VARIANTS)),
    params:
        text=FIDELITY["text"],
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": wildcards.variant}),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, input: 1500 + model_size_mb(input.model),
    log:
        "logs/fidelity/{model}/{variant}.log",
    shell:
        "quant-eval fidelity --model {input.model} --base-logprobs {input.logprobs}"
        " --text {params.text:q} --threads {threads} --labels {params.labels:q}"
        " --output {output} > {log} 2>&1"
