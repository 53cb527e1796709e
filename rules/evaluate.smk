# Benchmarks: the seeded item subsets, then one result file per variant, benchmark and run.


rule benchmark_data:
    input:
        # A local data file (ELYZA-tasks-100), so that a changed file re-writes the subset.
        data=lambda wildcards: benchmark_data_file(wildcards.benchmark),
        user_files=user_benchmark_files,
    output:
        test="benchmark_data/{benchmark}.test.jsonl",
        fewshot="benchmark_data/{benchmark}.fewshot.jsonl",
    params:
        limit=lambda wildcards: (
            f"--limit {benchmark_settings(wildcards.benchmark)['limit']}"
            if benchmark_settings(wildcards.benchmark).get("limit")
            else ""
        ),
        settings=lambda wildcards: json.dumps(
            data_settings(wildcards.benchmark, benchmark_settings(wildcards.benchmark)), sort_keys=True
        ),
        seed=config["seed"],
        data=lambda wildcards: " ".join(
            f"--data {shlex.quote(path)}" for path in benchmark_data_file(wildcards.benchmark)
        ),
    log:
        "logs/benchmark_data/{benchmark}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval benchmark-data --benchmark {wildcards.benchmark} {params.limit}"
        " --settings {params.settings:q}"
        " --seed {params.seed} --test-output {output.test} --fewshot-output {output.fewshot}"
        " {params.data} > {log} 2>&1"


rule evaluate:
    wildcard_constraints:
        benchmark=one_of(HARNESS_BENCHMARKS),
    input:
        model=model_file,
        test="benchmark_data/{benchmark}.test.jsonl",
        fewshot="benchmark_data/{benchmark}.fewshot.jsonl",
        definition=user_benchmark_files,
    output:
        "evaluation_results/runs/{model}/{variant}/{benchmark}/run{run}.json",
    params:
        settings=lambda wildcards: json.dumps(benchmark_settings(wildcards.benchmark), sort_keys=True),
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": wildcards.variant}),
        seed=config["seed"],
        context=config["evaluation"]["context"],
        gpu_layers=gpu_layers("evaluation"),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=evaluation_memory_mb,
        runtime=evaluation_runtime,
        gpu=1 if config["evaluation"]["gpu"] else 0,
    log:
        "logs/evaluate/{model}/{variant}/{benchmark}/run{run}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval evaluate --model-file {input.model} --benchmark {wildcards.benchmark}"
        " --settings {params.settings:q} --test-data {input.test} --fewshot-data {input.fewshot}"
        " --run {wildcards.run} --seed {params.seed} --context {params.context}"
        " --threads {threads} --gpu-layers {params.gpu_layers} --labels {params.labels:q}"
        " --output {output} > {log} 2>&1"
