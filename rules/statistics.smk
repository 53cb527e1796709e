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
        fidelity=fidelity_option(),
    log:
        "logs/compare.log",
    shell:
        "quant-eval compare --config {params.config:q} --base-infos {params.base_infos}"
        " --audits {params.audits} --runs {input.runs} {params.fidelity} --output {output} > {log} 2>&1"


rule statistics:
    input:
        "evaluation_results/quantization_comparison.json",
    output:
        "evaluation_results/statistical_analysis.json",
    params:
        confidence_level=config["statistics"]["confidence_level"],
    log:
        "logs/statistics.log",
    shell:
        "quant-eval statistics --comparison {input} --confidence-level {params.confidence_level}"
        " --output {output} > {log} 2>&1"
