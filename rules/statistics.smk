# Aggregation: every item of every run joined, then the statistics over items.


rule compare:
    input:
        runs=run_files,
        base_infos=expand("base_models/{model}.json", model=MODELS),
        audits=lambda wildcards: list(audit_files().values()),
        fidelity=lambda wildcards: list(fidelity_files().values()),
    output:
        "evaluation_results/quantization_comparison.json",
    params:
        config=CONFIG_JSON,
        base_infos=" ".join(f"{model}=base_models/{model}.json" for model in MODELS),
        audits=" ".join(f"{key}={path}" for key, path in audit_files().items()),
        not_run=json.dumps(NOT_RUN, sort_keys=True),
        fidelity=fidelity_option(),
    log:
        "logs/compare.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval compare --config {params.config:q} --base-infos {params.base_infos}"
        " --audits {params.audits} --runs {input.runs} --not-run {params.not_run:q}"
        " {params.fidelity} --output {output} > {log} 2>&1"


rule statistics:
    input:
        "evaluation_results/quantization_comparison.json",
    output:
        "evaluation_results/statistical_analysis.json",
    params:
        confidence_level=config["statistics"]["confidence_level"],
        power=config["statistics"]["power"],
        imatrix_pairs=" ".join(f"{first}={second}" for first, second in imatrix_pairs(config)),
    log:
        "logs/statistics.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval statistics --comparison {input} --confidence-level {params.confidence_level}"
        " --power {params.power} --imatrix-pairs {params.imatrix_pairs} --output {output} > {log} 2>&1"
