# Judged benchmarks (ELYZA-tasks-100): answers generated with the chat template, then
# scored by a judge model in a stage of their own, so that a change of the judge
# configuration re-runs only the judging.


rule generate_answers:
    input:
        model=model_file,
        test=f"benchmark_data/{JUDGED}.test.jsonl",
    output:
        f"evaluation_results/answers/{{model}}/{{variant}}/{JUDGED}/run{{run}}.json",
    params:
        settings=lambda wildcards: json.dumps(generation_settings(), sort_keys=True),
        labels=lambda wildcards: json.dumps({"model": wildcards.model, "variant": wildcards.variant}),
        seed=config["seed"],
        context=config["evaluation"]["context"],
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=evaluation_memory_mb,
        runtime=lambda wildcards, input: sizing.evaluation_runtime_minutes(
            sizing.file_size(input.model),
            items=sizing.count_lines(input.test),
            prompt_tokens=config["evaluation"]["context"],
            generated_tokens=generation_settings().get("max_tokens", 0),
            gpu=False,
        ),
    log:
        f"logs/generate_answers/{{model}}/{{variant}}/{JUDGED}/run{{run}}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval generate-answers --model-file {input.model} --settings {params.settings:q}"
        " --test-data {input.test} --run {wildcards.run} --seed {params.seed}"
        " --context {params.context} --threads {threads} --labels {params.labels:q}"
        " --output {output} > {log} 2>&1"


rule judge_answers:
    input:
        answers=f"evaluation_results/answers/{{model}}/{{variant}}/{JUDGED}/run{{run}}.json",
        judge_model=judge_model_input,
    output:
        f"evaluation_results/runs/{{model}}/{{variant}}/{JUDGED}/run{{run}}.json",
    params:
        # The judge's settings hold the name of the API key's environment variable, never the key.
        judge=lambda wildcards: json.dumps(judge_settings(), sort_keys=True),
    threads: config["evaluation"]["threads"]
    resources:
        mem_mb=lambda wildcards: 1500 + sum(model_size_mb(path) for path in judge_model_input(wildcards)),
    log:
        f"logs/judge_answers/{{model}}/{{variant}}/{JUDGED}/run{{run}}.log",
    conda:
        "../envs/quant-eval.yaml"
    shell:
        "quant-eval judge-answers --answers {input.answers} --judge {params.judge:q}"
        " --threads {threads} --output {output} > {log} 2>&1"
