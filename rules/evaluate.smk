# Benchmarks: the seeded item subsets, then one result file per variant, benchmark and run.


rule benchmark_data:
    output:
        test="benchmark_data/{benchmark}.test.jsonl",
        fewshot="benchmark_data/{benchmark}.fewshot.jsonl",
    params:
        limit=lambda wildcards: (
            f"--limit {benchmark_settings(wildcards.benchmark)['limit']}"
            if benchmark_settings(wildcards.benchmark).get("limit")
            else ""
        ),
        settings=lambda wildcards: json.dumps(benchmark_settings(wildcards.benchmark), sort_keys=True),
        seed=config["seed"],
    log:
        "logs/benchmark_data/{benchmark}.log",
    shell:
        "quant-eval benchmark-data --benchmark {wildcards.benchmark} {params.limit}"
        " --settings {params.settings:q}"
        " --seed {params.seed} --test-output {output.test} --fewshot-output {output.fewshot}"
        " > {log} 2>&1"


rule evaluate:
    input:
        model=model_file,
        test="benchmark_data/{benchmark}.test.jsonl",
        fewshot="benchmark_data/{benchmark}.fewshot.jsonl",
    output:
        "evaluation_results/runs/{model}/{variant}/{benchmark}/run{run}.json",
    params:
        settings=lambda wildcards: json.dumps(benchmark_settings(wildcards.benchmark), sort_keys=True),
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": wildcards.variant}),
        seed=config["seed"],
        context=config["evaluation"]["context"],
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards, input: 1500 + model_size_mb(input.model),
    log:
        "logs/evaluate/{model}/{variant}/{benchmark}/run{run}.log",
    shell:
        "quant-eval evaluate --model-file {input.model} --benchmark {wildcards.benchmark}"
        " --settings {params.settings:q} --test-data {input.test} --fewshot-data {input.fewshot}"
        " --run {wildcards.run} --seed {params.seed} --context {params.context}"
        " --threads {threads} --labels {params.labels:q} --output {output} > {log} 2>&1"
