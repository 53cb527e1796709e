# Charts, methodology, analysis report and the PDF scorecard.

REPORT_INPUTS = {
    "comparison": "evaluation_results/quantization_comparison.json",
    "analysis": "evaluation_results/statistical_analysis.json",
}


rule charts:
    input:
        **REPORT_INPUTS,
    output:
        performance="charts/quantization_performance.png",
        efficiency="charts/quantization_efficiency.png",
        paired_differences="charts/paired_differences.png",
        flips="charts/flips.png",
    params:
        config=CONFIG_JSON,
    log:
        "logs/charts.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval charts --config {params.config:q} --comparison {input.comparison}"
        " --analysis {input.analysis} --performance {output.performance}"
        " --efficiency {output.efficiency} --paired-differences {output.paired_differences}"
        " --flips {output.flips} > {log} 2>&1"


rule methodology:
    input:
        **REPORT_INPUTS,
    output:
        "methodology/quantization_methodology.md",
    params:
        config=CONFIG_JSON,
    log:
        "logs/methodology.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval methodology --config {params.config:q} --comparison {input.comparison}"
        " --analysis {input.analysis} --output {output} > {log} 2>&1"


rule analysis_report:
    input:
        **REPORT_INPUTS,
    output:
        "reports/quantization_analysis_report.md",
    params:
        config=CONFIG_JSON,
    log:
        "logs/analysis_report.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval report --config {params.config:q} --comparison {input.comparison}"
        " --analysis {input.analysis} --output {output} > {log} 2>&1"


rule scorecard:
    input:
        **REPORT_INPUTS,
        performance="charts/quantization_performance.png",
        efficiency="charts/quantization_efficiency.png",
        paired_differences="charts/paired_differences.png",
        flips="charts/flips.png",
        # Not read by the scorecard, but users ask for the PDF and expect every document.
        methodology="methodology/quantization_methodology.md",
        report="reports/quantization_analysis_report.md",
    output:
        pdf="scorecards/quantization_evaluation.pdf",
        tex="scorecards/quantization_evaluation.tex",
    params:
        config=CONFIG_JSON,
    log:
        "logs/scorecard.log",
    conda:
        "../envs/report.yaml"
    shell:
        "quant-eval scorecard --config {params.config:q} --comparison {input.comparison}"
        " --analysis {input.analysis} --charts-dir charts --output {output.pdf} > {log} 2>&1"
