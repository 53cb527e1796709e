"""The PDF scorecard: markdown through pandoc to LaTeX, then xelatex."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ..errors import QuantEvalError
from ..files import atomic_output
from .fidelity import fidelity_methodology, fidelity_note, fidelity_records, fidelity_table
from .formats import format_level
from .results import ResultIndex
from .sections import (
    FALLBACK_EXPLANATION,
    PANDOC_COLUMNS,
    TEST_NOTE,
    code,
    difference_table,
    findings,
    grid_limited_caveat,
    imatrix_effect,
    missing_results,
    power_warnings,
    reference_test_table,
    score_table,
    score_table_note,
    tensor_audit_table,
)
from .methodology import imatrix_settings, methodology_benchmarks, seed_statement, statistics_formulas
from .analysis import report_intro
from .notes import benchmark_notes

logger = logging.getLogger(__name__)


DEFAULT_PDF_ENGINE = "xelatex"
LATEX_TIMEOUT_S = 300
LATEX_MAX_PASSES = 3
LOG_TAIL_LINES = 25
# Log messages that ask for another LaTeX pass: cross-references and outlines ("Rerun to
# get ...") and longtable column widths ("Table widths have changed. Rerun LaTeX.").
RERUN_REQUEST = re.compile(r"Rerun to get|Rerun LaTeX")
PERFORMANCE_CHART = "quantization_performance.png"
EFFICIENCY_CHART = "quantization_efficiency.png"
PAIRED_DIFFERENCES_CHART = "paired_differences.png"
FLIPS_CHART = "flips.png"
CHARTS = (PERFORMANCE_CHART, EFFICIENCY_CHART, PAIRED_DIFFERENCES_CHART, FLIPS_CHART)

# Table captions as wide as the text (longtable's default is 4 in).
LATEX_HEADER = r"""
\AtBeginDocument{\ifdefined\LTcapwidth\setlength{\LTcapwidth}{\textwidth}\fi}
"""
# Japanese text is set in Noto Serif CJK JP (Debian's fonts-noto-cjk), everything else in
# Latin Modern. ucharclasses switches the font family at each change of script, because
# xeCJK needs ctex, which Debian only ships in the 130 MB texlive-lang-chinese. The switch
# back restores the family in use before (roman, or typewriter in code) rather than closing
# a group, because a group opened inside a title or table cell may be closed by a brace.
XELATEX_HEADER = r"""
\newfontfamily\cjkfont{Noto Serif CJK JP}
\usepackage[CJK]{ucharclasses}
\makeatletter
\setTransitionsForCJK{\edef\scorecardfamily{\f@family}\cjkfont}{\fontfamily{\scorecardfamily}\selectfont}
\makeatother
\XeTeXlinebreaklocale "ja"
\XeTeXlinebreakskip=0pt plus 1pt
"""
PANDOC_VARIABLES = {
    "documentclass": "article",
    "fontsize": "10pt",
    "papersize": "a4",
    "geometry": "margin=2.2cm",
    "colorlinks": "true",
}


class ScorecardError(QuantEvalError):
    """pandoc or the LaTeX engine is missing or failed to build the scorecard."""


def _abstract(index: ResultIndex) -> str:
    comparisons = detected = significant = 0
    detected_names = []
    for _, variant, benchmark, paired in index.comparisons():
        comparisons += 1
        holm = paired["p_value_holm"] if paired else None
        if holm is not None and holm < 1 - index.confidence_level:
            significant += 1
        if paired and paired["ci_low"] is not None and (paired["ci_low"] > 0 or paired["ci_high"] < 0):
            detected += 1
            detected_names.append(f"{code(variant)} on {code(benchmark)}")

    benchmarks = ", ".join(
        f"{code(name)} ({info['n_items']} items, {info['runs']} run{'s' if info['runs'] > 1 else ''})"
        for name, info in index.benchmarks().items()
    )
    n_variants = sum(len(index.variants(m)) for m in index.models())
    level = format_level(index.confidence_level)
    text = (
        f"We evaluated {n_variants} GGUF variants of {len(index.models())} model(s), the base model "
        f"included, on {benchmarks}, and compared each variant with {code(index.reference)} item by item. "
        f"Of {comparisons} variant and benchmark comparisons, {detected} show a difference whose "
        f"{level} confidence interval excludes 0"
    )
    text += f": {', '.join(detected_names)}." if detected_names else "."
    alpha = f"{(1 - index.confidence_level):.3g}"
    text += (f" After the Holm adjustment over all {comparisons} comparisons, {significant} have a p-value "
             f"below {alpha}.")
    grid_limited = [code(m) for m in index.models() if index.comparison["models"][m].get("grid_limited")]
    if grid_limited:
        text += (
            f" The base model of {', '.join(grid_limited)} was dequantized from a quantized GGUF, so the "
            "losses measured from it understate those of a genuinely trained model."
        )
    return text


def _fidelity_methodology_section(index: ResultIndex) -> list[str]:
    paragraph = fidelity_methodology(index.comparison)
    return ["## Fidelity to the base model", "", *paragraph, ""] if paragraph else []


def _figure(charts_relative: str, name: str, caption: str) -> list[str]:
    return [f"![{caption}]({charts_relative}/{name}){{width=100%}}", ""]


def scorecard_markdown(config: dict[str, Any], index: ResultIndex, charts_relative: str) -> str:
    """Return the scorecard as pandoc markdown; chart paths are relative to the .tex file."""
    level = format_level(index.confidence_level)
    title = "Quantization evaluation of " + ", ".join(index.models())
    metadata = {
        "title": title,
        "subtitle": "GGUF quantization types and the importance matrix, measured item by item",
        "abstract": _abstract(index),
    }
    lines = ["---", yaml.safe_dump(metadata, allow_unicode=True, sort_keys=False).strip(), "---", ""]
    lines += ["# Introduction", "", report_intro(index), ""]
    notes = benchmark_notes(index)
    if notes:
        lines += [*notes, ""]
    for model in index.models():
        caveat = grid_limited_caveat(index, model)
        if caveat:
            lines += [caveat, ""]

    lines += ["# Results", ""]
    for model in index.models():
        lines += [
            f"## Model {code(model)}", "",
            *score_table(index, model), "",
            f"Table: Scores of {code(model)}, mean [{level} CI]. {score_table_note(index)}", "",
            *missing_results(index, model), "",
            *difference_table(index, model, with_tests=False), "",
            f"Table: Paired differences of {code(model)} from {code(index.reference)}, "
            f"mean [{level} CI], and Cohen's d_z.", "",
            *reference_test_table(index, model), "",
            f"Table: Paired tests of {code(model)} against {code(index.reference)}.", "",
            TEST_NOTE, "",
            "Findings:", "", *findings(index, model), "",
        ]
        if fidelity_records(index.comparison, model):
            lines += [
                *fidelity_table(index.comparison, model, wrap=True), "",
                f"Table: Fidelity of {code(model)} to its base model. {fidelity_note(index.comparison, model)}", "",
            ]
    warnings = power_warnings(config, index)
    if warnings:
        lines += ["Power:", "", *warnings, ""]
    lines += [
        *_figure(charts_relative, PERFORMANCE_CHART,
                 f"Score per variant and benchmark; error bars are the {level} CIs."),
        *_figure(charts_relative, EFFICIENCY_CHART,
                 f"File size against score per variant; error bars are the {level} CIs."),
        *_figure(charts_relative, PAIRED_DIFFERENCES_CHART,
                 f"Paired difference from {code(index.reference)} per variant and benchmark, with its "
                 f"{level} CI; the dashed line marks no difference."),
        *_figure(charts_relative, FLIPS_CHART,
                 f"Items that flipped against {code(index.reference)}: correct to wrong below the axis, "
                 "wrong to correct above it (0/1 scores, majority vote over runs)."),
        "# Quantized files", "",
    ]
    for model in index.models():
        lines += [*tensor_audit_table(index, model, wrap=True), "", f"Table: Tensor audit of {code(model)}.", ""]
    lines += [FALLBACK_EXPLANATION, "", "# imatrix effect", ""]
    for model in index.models():
        lines += [*imatrix_effect(index, model, with_tests=False), ""]
    lines += [
        "# Methodology", "",
        "## Calibration text and imatrix", "", *imatrix_settings(config), "",
        "## Benchmarks", "", *methodology_benchmarks(config, index), "",
        "## Statistics", "", *statistics_formulas(index), "",
        *_fidelity_methodology_section(index),
        seed_statement(config), "",
    ]
    return "\n".join(lines)


def _require_tool(name: str, role: str, tex: Path) -> None:
    if shutil.which(name) is None:
        raise ScorecardError(
            f"{role} {name!r} not found on PATH, so {tex} cannot be built into a PDF; "
            "install it with scripts/install_system_packages.sh (as root)"
        )


def _run_pandoc(markdown: str, tex: Path, engine: str) -> None:
    """Convert the scorecard markdown into a standalone LaTeX file at `tex`."""
    with tempfile.TemporaryDirectory(prefix="scorecard-pandoc-") as folder:
        header = Path(folder) / "header.tex"
        header.write_text(LATEX_HEADER + (XELATEX_HEADER if engine == "xelatex" else ""), encoding="utf-8")
        command = ["pandoc", "--from=markdown", "--to=latex", "--standalone", "--number-sections",
                   f"--columns={PANDOC_COLUMNS}", f"--include-in-header={header}"]
        command += [f"--variable={key}:{value}" for key, value in PANDOC_VARIABLES.items()]
        with atomic_output(tex) as temporary:
            command.append(f"--output={temporary}")
            completed = subprocess.run(command, input=markdown, capture_output=True, text=True,
                                       timeout=LATEX_TIMEOUT_S, check=False)
            if completed.returncode != 0:
                raise ScorecardError(
                    f"pandoc failed (exit code {completed.returncode}) writing {tex}: {completed.stderr.strip()}"
                )


def _log_tail(log: Path) -> str:
    if not log.exists():
        return "(no LaTeX log was written)"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _run_latex(engine: str, tex: Path, build_dir: Path) -> Path:
    """Run the engine on `tex` until cross-references settle; return the PDF in `build_dir`.

    The engine runs in the .tex file's folder, so the relative chart paths resolve, and
    writes the PDF, log and auxiliary files into `build_dir`.
    """
    command = [engine, "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
               f"-output-directory={build_dir}", tex.name]
    log = build_dir / (tex.stem + ".log")
    for latex_pass in range(1, LATEX_MAX_PASSES + 1):
        logger.info("LaTeX pass %d: %s", latex_pass, " ".join(command))
        try:
            completed = subprocess.run(command, cwd=tex.parent, capture_output=True, text=True,
                                       errors="replace", timeout=LATEX_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ScorecardError(
                f"{engine} timed out after {LATEX_TIMEOUT_S} s on {tex}; last lines of its log:\n{_log_tail(log)}"
            ) from None
        if completed.returncode != 0:
            raise ScorecardError(
                f"{engine} failed (exit code {completed.returncode}) on {tex}; last lines of the LaTeX log "
                f"{log}:\n{_log_tail(log)}"
            )
        if not RERUN_REQUEST.search(log.read_text(encoding="utf-8", errors="replace")):
            break
    pdf = build_dir / (tex.stem + ".pdf")
    if not pdf.exists():
        raise ScorecardError(f"{engine} exited 0 on {tex} but wrote no PDF; last lines of its log:\n{_log_tail(log)}")
    return pdf


def write_scorecard(config: dict[str, Any], comparison: dict[str, Any], analysis: dict[str, Any],
                    charts_dir: Path, output_pdf: Path, *, engine: str = DEFAULT_PDF_ENGINE) -> None:
    """Write the PDF scorecard and, beside it, the LaTeX source it is built from.

    pandoc turns the scorecard markdown into `<output_pdf stem>.tex`; `engine` builds the
    PDF in a temporary folder, which is renamed to `output_pdf` only on success.
    Raises ScorecardError naming the engine, the .tex file and the end of the LaTeX log.
    """
    started = time.monotonic()
    index = ResultIndex.build(comparison, analysis)
    tex = output_pdf.with_suffix(".tex")
    _require_tool("pandoc", "converter", tex)
    _require_tool(engine, "LaTeX engine", tex)
    for chart in CHARTS:
        if not (charts_dir / chart).is_file():
            raise ScorecardError(f"chart {charts_dir / chart} not found; draw the charts before the scorecard")

    output_pdf.parent.mkdir(parents=True, exist_ok=True)
    charts_relative = Path(os.path.relpath(charts_dir.resolve(), output_pdf.parent.resolve())).as_posix()
    _run_pandoc(scorecard_markdown(config, index, charts_relative), tex, engine)
    logger.info("Wrote %s", tex)

    with tempfile.TemporaryDirectory(prefix=".latex-", dir=output_pdf.parent) as build_dir:
        pdf = _run_latex(engine, tex, Path(build_dir).resolve())
        os.replace(pdf, output_pdf)
    logger.info("Wrote %s in %.1f s", output_pdf, time.monotonic() - started)
