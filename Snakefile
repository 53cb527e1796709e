# Evaluate what GGUF quantization costs a model: imatrix, quantization, benchmarks,
# statistics, charts and a PDF scorecard.
#
#   snakemake --cores 8 scorecards/quantization_evaluation.pdf

from snakemake.utils import min_version

min_version("9.0")


# A --configfile given on the command line replaces the default configuration instead of
# being merged into it, so a user's file lists exactly the models and benchmarks to run.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "rules/common.smk"
include: "rules/base_model.smk"
include: "rules/imatrix.smk"
include: "rules/quantize.smk"
include: "rules/evaluate.smk"
include: "rules/judge.smk"
include: "rules/fidelity.smk"
include: "rules/statistics.smk"
include: "rules/report.smk"


rule all:
    input:
        "scorecards/quantization_evaluation.pdf",
        "reports/quantization_analysis_report.md",
        "methodology/quantization_methodology.md",
