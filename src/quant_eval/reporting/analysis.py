"""The analysis report: tables, findings, imatrix effect and tensor audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fidelity import fidelity_note, fidelity_records, fidelity_table
from .formats import format_level
from .notes import benchmark_notes
from .results import ResultIndex, _write_text
from .sections import (
    FALLBACK_EXPLANATION,
    TEST_NOTE,
    answer_judgements,
    code,
    difference_table,
    findings,
    grid_limited_caveat,
    imatrix_effect,
    missing_results,
    power_warnings,
    score_table,
    score_table_note,
    tensor_audit_table,
)



def report_intro(index: ResultIndex) -> str:
    """Return the paragraph that states the reference, the interval and the number formats."""
    return (
        f"Every variant is compared with the reference variant {code(index.reference)}. Intervals are "
        f"{format_level(index.confidence_level)} confidence intervals over items, written "
        "\"mean [low, high]\". Binary scores are the percentage of items scored correct and their "
        "differences are in percentage points (pp)."
    )


def analysis_markdown(index: ResultIndex, config: dict[str, Any] | None = None) -> str:
    """Return the analysis report as markdown; `config` supplies the benchmark limits for power warnings."""
    lines = ["# Quantization analysis report", "", report_intro(index), ""]
    notes = benchmark_notes(index)
    if notes:
        lines += [*notes, ""]
    warnings = power_warnings(config or {}, index)
    if warnings:
        lines += ["## Power", "", *warnings, ""]
    for model in index.models():
        caveat = grid_limited_caveat(index, model)
        lines += [f"## Model {code(model)}", ""]
        if caveat:
            lines += [caveat, ""]
        lines += [
            "### Scores", "", *score_table(index, model), "", score_table_note(index), "",
            *missing_results(index, model), "",
            f"### Paired differences from {code(index.reference)}", "", *difference_table(index, model), "",
            "Difference is variant minus reference over the items both answered; d_z is Cohen's d_z. "
            + TEST_NOTE, "",
            "### Findings", "", *findings(index, model), "",
        ]
        judgements = answer_judgements(index, model)
        if judgements:
            lines += ["### Answer comparison", "", *judgements, ""]
        if fidelity_records(index.comparison, model):
            lines += [
                "### Fidelity to the base model", "", *fidelity_table(index.comparison, model), "",
                fidelity_note(index.comparison, model), "",
            ]
        lines += [
            "### imatrix effect", "", *imatrix_effect(index, model), "",
            "### Tensor audit", "", *tensor_audit_table(index, model), "", FALLBACK_EXPLANATION, "",
        ]
    return "\n".join(lines)


def write_analysis_report(config: dict[str, Any], comparison: dict[str, Any], analysis: dict[str, Any],
                          output: Path) -> None:
    """Write the analysis report (markdown): scores, paired differences, imatrix effect, tensor audit."""
    index = ResultIndex.build(comparison, analysis)
    _write_text(output, analysis_markdown(index, config))
