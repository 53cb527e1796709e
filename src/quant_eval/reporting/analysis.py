"""The analysis report: tables, findings, imatrix effect and tensor audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .formats import format_level
from .results import ResultIndex, _write_text
from .sections import (
    FALLBACK_EXPLANATION,
    answer_judgements,
    code,
    difference_table,
    findings,
    grid_limited_caveat,
    imatrix_effect,
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


def analysis_markdown(index: ResultIndex) -> str:
    """Return the analysis report as markdown."""
    lines = ["# Quantization analysis report", "", report_intro(index), ""]
    for model in index.models():
        caveat = grid_limited_caveat(index, model)
        lines += [f"## Model {code(model)}", ""]
        if caveat:
            lines += [caveat, ""]
        lines += [
            "### Scores", "", *score_table(index, model), "", score_table_note(index), "",
            f"### Paired differences from {code(index.reference)}", "", *difference_table(index, model), "",
            "Difference is variant minus reference over the items both answered; d_z is Cohen's d_z.", "",
            "### Findings", "", *findings(index, model), "",
        ]
        judgements = answer_judgements(index, model)
        if judgements:
            lines += ["### Answer comparison", "", *judgements, ""]
        lines += [
            "### imatrix effect", "", *imatrix_effect(index, model), "",
            "### Tensor audit", "", *tensor_audit_table(index, model), "", FALLBACK_EXPLANATION, "",
        ]
    return "\n".join(lines)


def write_analysis_report(config: dict[str, Any], comparison: dict[str, Any], analysis: dict[str, Any],
                          output: Path) -> None:
    """Write the analysis report (markdown): scores, paired differences, imatrix effect, tensor audit."""
    del config  # the report uses the result files only; the signature matches the other writers
    index = ResultIndex.build(comparison, analysis)
    _write_text(output, analysis_markdown(index))
