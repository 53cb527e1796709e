"""Methodology, analysis report and PDF scorecard, written from the two result files.

Every number comes from quantization_comparison.json and statistical_analysis.json (see
docs/results-format.md) and is written with the formats in SCORE_FORMATS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import NO_IMATRIX_SUFFIX
from .errors import InvalidDataError, QuantEvalError

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------ number formats


@dataclass(frozen=True)
class ScoreFormat:
    """Number format of the scores of one `score_kind`."""

    scale: float  # factor from the value in the JSON files to the written number
    decimals: int
    unit: str  # unit of a score, for table headers
    difference_unit: str  # unit of a paired difference


# Number formats of every score in the charts, the report and the scorecard. Binary
# metrics (share of items scored 1) are percentages with 1 decimal, and their differences
# are percentage points (pp). Graded metrics keep their own unit with 3 decimals.
# A score with its interval is written "mean [ci_low, ci_high]", e.g. "31.0 [13.0, 50.0]".
# A difference has a sign, e.g. "-4.0 [-13.0, +5.0]", unless it rounds to zero ("0.0").
# A value that is null in the JSON is written MISSING.
SCORE_FORMATS: dict[str, ScoreFormat] = {
    "binary": ScoreFormat(scale=100.0, decimals=1, unit="%", difference_unit="pp"),
    "graded": ScoreFormat(scale=1.0, decimals=3, unit="", difference_unit=""),
}
EFFECT_SIZE_DECIMALS = 2  # Cohen's d_z
FILE_SIZE_DECIMALS = 1  # MiB
BITS_PER_WEIGHT_DECIMALS = 2
MISSING = "n/a"
MIB = 2**20


def format_value(value: float | None, score_format: ScoreFormat, signed: bool = False) -> str:
    """Format one score or difference; `signed` adds the sign of a nonzero difference."""
    if value is None:
        return MISSING
    scaled = round(value * score_format.scale, score_format.decimals)
    if scaled == 0:
        scaled = 0.0  # no "-0.0", and no sign on a zero difference
        signed = False
    sign = "+" if signed else ""
    return f"{scaled:{sign}.{score_format.decimals}f}"


def format_interval(low: float | None, high: float | None, score_format: ScoreFormat,
                    signed: bool = False) -> str:
    """Format a confidence interval as "[low, high]"."""
    if low is None or high is None:
        return f"[{MISSING}]"
    return f"[{format_value(low, score_format, signed)}, {format_value(high, score_format, signed)}]"


def format_estimate(mean: float | None, low: float | None, high: float | None,
                    score_format: ScoreFormat, signed: bool = False) -> str:
    """Format a mean with its interval: "31.0 [13.0, 50.0]"."""
    return f"{format_value(mean, score_format, signed)} {format_interval(low, high, score_format, signed)}"


def format_effect_size(value: float | None) -> str:
    """Format Cohen's d_z with its sign."""
    if value is None:
        return MISSING
    return format_value(value, ScoreFormat(1.0, EFFECT_SIZE_DECIMALS, "", ""), signed=True)


def format_mib(size_bytes: int) -> str:
    """Format a file size in MiB."""
    return f"{size_bytes / MIB:.{FILE_SIZE_DECIMALS}f}"


def format_level(confidence_level: float) -> str:
    """Format a confidence level as a percentage: 0.95 -> "95%"."""
    return f"{confidence_level * 100:g}%"


def unit_suffix(unit: str) -> str:
    """Return " pp" or "%" to append to a number, or "" for a unitless one."""
    if not unit:
        return ""
    return unit if unit == "%" else f" {unit}"


# --------------------------------------------------------------------- result lookup


@dataclass(frozen=True)
class ResultIndex:
    """The two result files, with the analysis results indexed by model, variant and benchmark."""

    comparison: dict[str, Any]
    analysis: dict[str, Any]
    results: dict[tuple[str, str, str], dict[str, Any]]

    @classmethod
    def build(cls, comparison: dict[str, Any], analysis: dict[str, Any]) -> ResultIndex:
        """Index the results; raise InvalidDataError when the two files do not match."""
        if comparison["reference"] != analysis["reference"]:
            raise InvalidDataError(
                f"the comparison's reference variant {comparison['reference']!r} differs from the "
                f"analysis's {analysis['reference']!r}; rerun the statistics stage"
            )
        results: dict[tuple[str, str, str], dict[str, Any]] = {}
        for result in analysis["results"]:
            key = (result["model"], result["variant"], result["benchmark"])
            if key in results:
                raise InvalidDataError(f"statistical_analysis.json has two results for {key}")
            results[key] = result
        return cls(comparison, analysis, results)

    @property
    def reference(self) -> str:
        return self.comparison["reference"]

    @property
    def confidence_level(self) -> float:
        return float(self.analysis["confidence_level"])

    def models(self) -> list[str]:
        return list(self.comparison["models"])

    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.comparison["benchmarks"]

    def variants(self, model: str) -> list[dict[str, Any]]:
        """Return the model's variants: the reference first, then in the comparison's order."""
        variants = [v for v in self.comparison["variants"] if v["model"] == model]
        return sorted(variants, key=lambda v: v["variant"] != self.reference)

    def variant(self, model: str, name: str) -> dict[str, Any] | None:
        for variant in self.variants(model):
            if variant["variant"] == name:
                return variant
        return None

    def score_format(self, benchmark: str) -> ScoreFormat:
        kind = self.benchmarks()[benchmark]["score_kind"]
        if kind not in SCORE_FORMATS:
            raise InvalidDataError(
                f"benchmark {benchmark!r} has score_kind {kind!r}; expected one of {sorted(SCORE_FORMATS)}"
            )
        return SCORE_FORMATS[kind]

    def result(self, model: str, variant: str, benchmark: str) -> dict[str, Any]:
        try:
            return self.results[(model, variant, benchmark)]
        except KeyError:
            raise InvalidDataError(
                f"statistical_analysis.json has no result for model {model!r}, variant {variant!r}, "
                f"benchmark {benchmark!r}; rerun the statistics stage"
            ) from None


# ---------------------------------------------------------------------- file output


@contextlib.contextmanager
def atomic_output(output: Path) -> Iterator[Path]:
    """Yield a temporary path beside `output` and rename it to `output` if the block succeeds.

    The temporary file is removed when the block raises, so `output` is either the old
    file or the complete new one.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_text(output: Path, text: str) -> None:
    with atomic_output(output) as temporary:
        temporary.write_text(text, encoding="utf-8")
    logger.info("Wrote %s", output)


# ------------------------------------------------------------------- markdown helpers

# Characters that start markup in pandoc's markdown or in CommonMark: emphasis, links,
# raw TeX and HTML, math, citations, sub- and superscripts, tables.
_MARKDOWN_SPECIALS = set("\\`*_[]<>$@~^|#")


def escape_markdown(text: str) -> str:
    """Backslash-escape the characters of `text` that would start markdown markup."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in str(text))


def code(text: str) -> str:
    """Return `text` as an inline code span, for names such as variants and benchmarks."""
    text = str(text)
    fence = "`"
    while fence in text:
        fence += "`"
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}".replace("|", "\\|")


# pandoc's line width (--columns) for the scorecard. pandoc gives a pipe table natural
# column widths unless one of its lines is longer than this. Such a table spans the text
# width and its cells wrap, with column widths set by the dashes of the separator line.
PANDOC_COLUMNS = 1000


def markdown_table(header: list[str], rows: list[list[str]], align: str,
                   wrap_widths: list[int] | None = None) -> list[str]:
    """Return the lines of a pipe table; `align` has one letter per column, "l" or "r".

    `wrap_widths` gives relative column widths and makes pandoc wrap the cells of this
    table, through a separator line longer than PANDOC_COLUMNS.
    """
    widths = [1] * len(align) if wrap_widths is None else wrap_widths
    dashes_per_unit = 1 if wrap_widths is None else PANDOC_COLUMNS // sum(widths) + 1
    rules = []
    for letter, width in zip(align, widths):
        dashes = "-" * (3 * width * dashes_per_unit)
        rules.append(":" + dashes if letter == "l" else dashes + ":")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rules) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ------------------------------------------------------------- sections of both documents


def grid_limited_caveat(index: ResultIndex, model: str) -> str | None:
    """Return the caveat sentence for a base model dequantized from a quantized GGUF."""
    info = index.comparison["models"][model]
    if not info.get("grid_limited"):
        return None
    return (
        f"**Caveat:** the {info['base_type']} base model of {code(model)} was dequantized from a "
        "quantized GGUF, so its weights hold only values of that quantization grid. "
        "The quality loss measured from this base model understates what quantizing a "
        f"genuinely trained {info['base_type']} model loses. "
        f"Base model note: {escape_markdown(info['note'])}."
    )


def benchmark_header(index: ResultIndex, benchmark: str) -> str:
    """Return a column header such as "`gsm8k` (`exact_match`, %)"."""
    info = index.benchmarks()[benchmark]
    unit = index.score_format(benchmark).unit
    return f"{code(benchmark)} ({code(info['metric'])}{', ' + unit if unit else ''})"


def score_table(index: ResultIndex, model: str) -> list[str]:
    """Return a table of variants × benchmarks, each cell "mean [CI]"."""
    benchmarks = list(index.benchmarks())
    header = ["Variant"] + [benchmark_header(index, b) for b in benchmarks]
    rows = []
    for variant in index.variants(model):
        row = [code(variant["variant"])]
        for benchmark in benchmarks:
            result = index.result(model, variant["variant"], benchmark)
            row.append(format_estimate(result["mean"], result["ci_low"], result["ci_high"],
                                       index.score_format(benchmark)))
        rows.append(row)
    return markdown_table(header, rows, "l" + "r" * len(benchmarks))


def score_table_note(index: ResultIndex) -> str:
    """Return the sentence under the score table: items, runs and interval method of each benchmark."""
    parts = []
    for benchmark, info in index.benchmarks().items():
        runs = "1 run" if info["runs"] == 1 else f"{info['runs']} runs"
        methods = dict.fromkeys(
            interval_method_name(result["interval_method"])
            for (_, _, result_benchmark), result in index.results.items() if result_benchmark == benchmark
        )
        parts.append(f"{code(benchmark)}: n = {info['n_items']} items, {runs}, {' or '.join(methods)} interval")
    return (
        f"Mean score with its {format_level(index.confidence_level)} confidence interval over items. "
        + "; ".join(parts) + "."
    )


def difference_table(index: ResultIndex, model: str) -> list[str]:
    """Return a table of paired differences from the reference, with CI and Cohen's d_z."""
    level = format_level(index.confidence_level)
    header = ["Variant", "Benchmark", "Items", f"Difference [{level} CI]", "Unit", "d_z"]
    rows = []
    for variant in index.variants(model):
        if variant["variant"] == index.reference:
            continue
        for benchmark in index.benchmarks():
            paired = index.result(model, variant["variant"], benchmark)["paired"]
            score_format = index.score_format(benchmark)
            if paired is None:
                rows.append([code(variant["variant"]), code(benchmark), MISSING, MISSING, "", MISSING])
                continue
            rows.append([
                code(variant["variant"]),
                code(benchmark),
                str(paired["n_items"]),
                format_estimate(paired["mean_difference"], paired["ci_low"], paired["ci_high"],
                                score_format, signed=True),
                score_format.difference_unit,
                format_effect_size(paired["cohens_dz"]),
            ])
    return markdown_table(header, rows, "llrrlr")


def difference_finding(index: ResultIndex, model: str, variant: str, benchmark: str) -> str:
    """Return one plain sentence on what the paired interval supports."""
    paired = index.result(model, variant, benchmark)["paired"]
    names = f"{code(variant)} on {code(benchmark)}"
    reference = code(index.reference)
    if paired is None:
        return f"{names}: no item is shared with {reference}, so there is no paired comparison."

    score_format = index.score_format(benchmark)
    unit = unit_suffix(score_format.difference_unit)
    n = paired["n_items"]
    mean = format_value(paired["mean_difference"], score_format, signed=True) + unit
    low, high = paired["ci_low"], paired["ci_high"]
    interval = format_interval(low, high, score_format, signed=True) + unit
    level = format_level(index.confidence_level)

    if low is None or high is None:
        return f"{names}: mean difference {mean} over {n} item(s); too few items for an interval, so no conclusion."
    if low == high:  # the statistics stage gives a zero-width interval when every d_i is equal
        if paired["mean_difference"] == 0:
            return f"{names}: the same score as {reference} on each of the {n} items."
        return f"{names}: differs from {reference} by {mean} on each of the {n} items."
    if low <= 0 <= high:
        return (
            f"{names}: the {level} CI of the difference from {reference}, {interval}, includes 0: "
            f"no detectable change at n = {n}. The data are compatible with any change in that range."
        )
    direction = "lower" if high < 0 else "higher"
    return (
        f"{names}: scores {direction} than {reference}, difference {mean} ({level} CI {interval}, "
        f"n = {n}, d_z = {format_effect_size(paired['cohens_dz'])}); the CI excludes 0."
    )


def findings(index: ResultIndex, model: str) -> list[str]:
    """Return one markdown bullet per variant and benchmark."""
    lines = []
    for variant in index.variants(model):
        if variant["variant"] != index.reference:
            for benchmark in index.benchmarks():
                lines.append("- " + difference_finding(index, model, variant["variant"], benchmark))
    return lines


@dataclass(frozen=True)
class ImatrixPair:
    """A quantization type evaluated with and without the imatrix."""

    with_imatrix: str
    without_imatrix: str


def imatrix_pairs(index: ResultIndex, model: str) -> list[ImatrixPair]:
    """Return each `<type>` variant that has a `<type>-no-imatrix` counterpart."""
    names = [v["variant"] for v in index.variants(model)]
    pairs = []
    for name in names:
        if name.endswith(NO_IMATRIX_SUFFIX) and name[: -len(NO_IMATRIX_SUFFIX)] in names:
            pairs.append(ImatrixPair(name[: -len(NO_IMATRIX_SUFFIX)], name))
    return pairs


def _intervals_overlap(first: dict[str, Any], second: dict[str, Any]) -> bool | None:
    bounds = (first["ci_low"], first["ci_high"], second["ci_low"], second["ci_high"])
    if any(b is None for b in bounds):
        return None
    return first["ci_low"] <= second["ci_high"] and second["ci_low"] <= first["ci_high"]


def imatrix_effect(index: ResultIndex, model: str) -> list[str]:
    """Return the imatrix-effect table (with minus without, per benchmark) and its reading."""
    pairs = imatrix_pairs(index, model)
    if not pairs:
        return [f"No quantization type of {code(model)} was evaluated both with and without the imatrix."]

    header = ["Variant", "Benchmark", "With imatrix", "Without imatrix", "Difference", "Unit", "CIs overlap"]
    rows = []
    for pair in pairs:
        for benchmark in index.benchmarks():
            score_format = index.score_format(benchmark)
            with_result = index.result(model, pair.with_imatrix, benchmark)
            without_result = index.result(model, pair.without_imatrix, benchmark)
            overlap = _intervals_overlap(with_result, without_result)
            overlap_text = {None: MISSING, True: "yes", False: "no"}[overlap]
            rows.append([
                code(pair.with_imatrix),
                code(benchmark),
                format_estimate(with_result["mean"], with_result["ci_low"], with_result["ci_high"], score_format),
                format_estimate(without_result["mean"], without_result["ci_low"], without_result["ci_high"],
                                score_format),
                format_value(with_result["mean"] - without_result["mean"], score_format, signed=True),
                score_format.difference_unit,
                overlap_text,
            ])
    level = format_level(index.confidence_level)
    return markdown_table(header, rows, "llrrrll") + [
        "",
        f"Difference is the mean with the imatrix minus the mean without it. The statistics stage "
        f"computes no paired interval for this contrast, so only the two {level} CIs can be compared. "
        "Where they overlap, these results cannot tell whether the imatrix changed the score. "
        "Where they do not overlap, the scores differ: the standard error of a paired difference is at "
        "most the sum of the two standard errors, so a paired interval would exclude 0 too (exactly for "
        "t intervals, approximately for Wilson intervals).",
    ]


FALLBACK_EXPLANATION = (
    "llama-quantize falls back to another type for each tensor whose row size is not a multiple "
    "of the target type's block size (256 values for the K-quants, 32 for Q4_0, Q5_0 and Q8_0). "
    "It does so without failing and only prints a warning, so such a file holds more types than "
    "its name says; the fallback column counts these tensors."
)


def _tensor_mix(variant: dict[str, Any]) -> str:
    types = variant["tensor_types"]
    total = sum(t["n_parameters"] for t in types.values()) or 1
    ordered = sorted(types.items(), key=lambda item: -item[1]["n_parameters"])
    return ", ".join(
        f"{code(name)} {t['n_tensors']} ({t['n_parameters'] / total * 100:.1f}%)" for name, t in ordered
    )


def tensor_audit_table(index: ResultIndex, model: str, wrap: bool = False) -> list[str]:
    """Return a table of file size, bits per weight, tensor type mix and fallback tensors.

    `wrap` makes pandoc wrap the cells, so the table fits a printed page.
    """
    header = ["Variant", "Type", "imatrix", "Size (MiB)", "Bits/weight",
              "Tensor types: tensors (share of weights)", "Fallback tensors"]
    rows = []
    for variant in index.variants(model):
        rows.append([
            code(variant["variant"]),
            code(variant["quantization_type"]),
            "yes" if variant["imatrix"] else "no",
            format_mib(variant["file_size_bytes"]),
            f"{variant['bits_per_weight']:.{BITS_PER_WEIGHT_DECIMALS}f}",
            _tensor_mix(variant),
            str(variant["fallback_tensors"]),
        ])
    wrap_widths = [9, 5, 3, 3, 3, 14, 4] if wrap else None
    return markdown_table(header, rows, "lllrrlr", wrap_widths)


# --------------------------------------------------------------------- methodology

# Plain descriptions of the per-item metrics, as lm-evaluation-harness computes them.
METRIC_DESCRIPTIONS = {
    "exact_match": "1 when the answer extracted from the generated text equals the reference answer, else 0",
    "acc": "1 when the answer choice with the highest log-likelihood is the correct one, else 0",
    "acc_norm": "1 when the answer choice with the highest log-likelihood per character is the correct one, else 0",
}


def _benchmark_description(name: str) -> str:
    """Return the first line of the benchmark class's docstring, or "" for an unknown benchmark."""
    from .benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(name)
    if benchmark is None or not benchmark.__doc__:
        return ""
    return benchmark.__doc__.strip().splitlines()[0]


def _item_selection(n_items: int, limit: int | None, seed: int) -> str:
    if limit is None:
        return f"all {n_items} items of the test set (`limit: null`)"
    if n_items < limit:
        return f"all {n_items} items: the test set is smaller than `limit: {limit}`"
    return f"{n_items} items, a random subset drawn with seed {seed} (`limit: {limit}`)"


def _run_variation(runs: int, configured_runs: int, settings: dict[str, Any]) -> str:
    temperature = float(settings.get("temperature", 0) or 0)
    num_fewshot = int(settings.get("num_fewshot", 0) or 0)
    sources = []
    if temperature > 0:
        sources.append(f"the sampling seed (temperature {temperature:g})")
    if num_fewshot > 0:
        sources.append(f"the draw of the {num_fewshot} few-shot examples")

    if runs == 1:
        if configured_runs == 1:
            return "1 run (`runs: 1`)"
        return (
            f"1 run instead of {configured_runs}: without sampling and without a few-shot draw, "
            "every run would give the same scores"
        )
    if not sources:
        logger.warning("%d runs recorded although the settings %s make runs identical", runs, settings)
        return f"{runs} runs"
    return f"{runs} runs, which differ by " + " and by ".join(sources)


def _benchmark_settings(settings: dict[str, Any]) -> str:
    parts = []
    if "temperature" in settings:
        decoding = "greedy decoding" if settings["temperature"] == 0 else "sampling"
        parts.append(f"{decoding}, temperature {settings['temperature']:g}")
    if "max_tokens" in settings:
        parts.append(f"at most {settings['max_tokens']} generated tokens")
    if settings.get("num_fewshot"):
        parts.append(f"{settings['num_fewshot']} few-shot examples drawn per run")
    elif "num_fewshot" in settings:
        parts.append("0-shot")
    return "; ".join(parts) if parts else "harness defaults"


def methodology_benchmarks(config: dict[str, Any], index: ResultIndex) -> list[str]:
    """Return one paragraph per benchmark: items, subset, metric, settings and runs."""
    lines = []
    for name, info in index.benchmarks().items():
        settings = config["benchmarks"].get(name, {})
        description = _benchmark_description(name)
        metric = info["metric"]
        metric_text = METRIC_DESCRIPTIONS.get(metric, f"{info['score_kind']} score per item")
        lines += [
            f"- {code(name)}: {escape_markdown(description)}",
            f"  Items: {_item_selection(info['n_items'], settings.get('limit'), config['seed'])}.",
            f"  Metric: {code(metric)} ({info['score_kind']}), {metric_text}.",
            f"  Settings: {_benchmark_settings(settings)}.",
            f"  Runs: {_run_variation(info['runs'], config['runs'], settings)}.",
        ]
    return lines


# Interval methods of the statistics stage, by their `interval_method` value: a short name
# for tables, and the formula for the methodology. QUANTILE stands for the normal or t
# quantile of the confidence level, e.g. 0.975 for 95%.
INTERVAL_METHODS = {
    "wilson": (
        "Wilson",
        "Wilson's interval for the proportion $p$ of items scored 1, "
        "$\\frac{p + z^2/2n}{1 + z^2/n} \\pm \\frac{z}{1 + z^2/n}"
        "\\sqrt{\\frac{p(1-p)}{n} + \\frac{z^2}{4n^2}}$, with $z$ the QUANTILE quantile of the "
        "standard normal distribution",
    ),
    "wilson, effective n": (
        "Wilson at effective n",
        "Wilson's interval with n replaced by Kish's effective sample size "
        "$n_{eff} = p(1-p)/se^2$, kept between n and n times the runs, so that repeated runs "
        "of an item count less than new items: $\\frac{p + z^2/2n_{eff}}{1 + z^2/n_{eff}} \\pm "
        "\\frac{z}{1 + z^2/n_{eff}}\\sqrt{\\frac{p(1-p)}{n_{eff}} + \\frac{z^2}{4n_{eff}^2}}$, "
        "with $z$ the QUANTILE quantile of the standard normal distribution",
    ),
    "t over item means": (
        "t",
        "the t interval over item means, $\\bar{x} \\pm t_{QUANTILE,\\,n-1} \\cdot se$",
    ),
    "none (one item)": ("none", "no interval, because one item has no spread"),
}


def interval_method_name(method: str) -> str:
    """Return the short name of an `interval_method` value, or the value itself when unknown."""
    return INTERVAL_METHODS.get(method, (method, ""))[0]


def _interval_methods_used(index: ResultIndex) -> list[str]:
    """Return the interval methods of the results, in the order of INTERVAL_METHODS, unknown ones last."""
    used = {result["interval_method"] for result in index.results.values()}
    known = [method for method in INTERVAL_METHODS if method in used]
    return known + sorted(used - set(INTERVAL_METHODS))


def statistics_formulas(index: ResultIndex) -> list[str]:
    """Return the statistics section: observations, the interval methods used, paired differences."""
    level = format_level(index.confidence_level)
    quantile = f"{(1 + index.confidence_level) / 2:g}"
    lines = [
        "Items are the unit of analysis: n always counts items, never items times runs.",
        "",
        "- Observation: item i's score $x_i$ is its mean over the runs (with one run, its single score), "
        "so repeated runs never count as extra items.",
        "- Mean $\\bar{x} = \\frac{1}{n}\\sum_i x_i$, standard deviation "
        "$s = \\sqrt{\\frac{1}{n-1}\\sum_i (x_i - \\bar{x})^2}$ and standard error $se = s/\\sqrt{n}$, "
        "all over the item means.",
    ]
    for method in _interval_methods_used(index):
        name, formula = INTERVAL_METHODS.get(method, (method, ""))
        if not formula:
            logger.warning("unknown interval_method %r in statistical_analysis.json", method)
            formula = "as computed by the statistics stage; this report has no formula for it"
        lines.append(f"- {level} interval \"{escape_markdown(name)}\": {formula.replace('QUANTILE', quantile)}.")
    lines += [
        "- Paired difference from the reference: $d_i$ is the variant's item mean minus the "
        "reference's on item i, over the m items both variants answered. Its mean $\\bar{d}$ gets "
        f"the t interval $\\bar{{d}} \\pm t_{{{quantile},\\,m-1}} \\cdot s_d/\\sqrt{{m}}$, with $s_d$ the "
        "standard deviation of the $d_i$.",
        "- Effect size: Cohen's $d_z = \\bar{d} / s_d$. It is not given when $s_d = 0$.",
        "- Run-to-run spread: the within-item variance is the mean over items of the variance of "
        "an item's runs, and the between-item variance is $s^2$ minus the within-item variance "
        "divided by the number of runs.",
    ]
    return lines


def imatrix_settings(config: dict[str, Any]) -> list[str]:
    """Return the calibration files and the llama-imatrix settings as markdown lines."""
    imatrix = config["imatrix"]
    return [
        "The calibration text is these files joined in this order:",
        "",
        *[f"- {code(source)}" for source in imatrix["calibration"]],
        "",
        f"llama-imatrix read {imatrix['chunks']} chunks of {imatrix['context']} tokens "
        f"(`-c {imatrix['context']}`, `--chunks {imatrix['chunks']}`, batch size `-b {imatrix['batch_size']}`), "
        f"that is {imatrix['chunks'] * imatrix['context']} tokens of calibration text, on each base model.",
    ]


def methodology_markdown(config: dict[str, Any], index: ResultIndex) -> str:
    """Return the methodology document as markdown."""
    configured_level = config.get("statistics", {}).get("confidence_level")
    if configured_level is not None and configured_level != index.confidence_level:
        logger.warning("statistical_analysis.json uses confidence level %s, the configuration %s; "
                       "the methodology states the analysis's", index.confidence_level, configured_level)
    evaluation = config.get("evaluation", {})
    lines = [
        "# Methodology of the quantization evaluation",
        "",
        "Each base model was quantized with llama-quantize to the GGUF types below, with and without "
        "an importance matrix (imatrix) computed by llama-imatrix on the base model. Every variant, "
        "the unquantized base model included, answered the same benchmark items with llama.cpp "
        f"(context {evaluation.get('context', MISSING)} tokens, {evaluation.get('threads', MISSING)} "
        f"threads per job), and each variant is compared with the reference variant "
        f"{code(index.reference)} item by item.",
        "",
        "## Models",
        "",
    ]
    for model in index.models():
        info = index.comparison["models"][model]
        line = f"- {code(model)}: source {code(info['source'])}, base model type {code(info['base_type'])}."
        if "dequantize" in config["models"].get(model, {}):
            line += f" Configured `dequantize: {str(config['models'][model]['dequantize']).lower()}`."
        caveat = grid_limited_caveat(index, model)
        if caveat:
            lines += [line, "", caveat, ""]
        else:
            lines += [line + f" Base model note: {escape_markdown(info['note'])}."]

    lines += [
        "",
        "## Calibration text and imatrix",
        "",
        *imatrix_settings(config),
        "",
        "## Variants",
        "",
    ]
    for model in index.models():
        rows = [
            [code(v["variant"]), code(v["quantization_type"]), "yes" if v["imatrix"] else "no"]
            for v in index.variants(model)
        ]
        lines += [f"Variants of {code(model)}:", "", *markdown_table(["Variant", "Type", "imatrix"], rows, "lll"), ""]

    lines += [
        "## Benchmarks",
        "",
        *methodology_benchmarks(config, index),
        "",
        f"Configured runs per evaluation: {config['runs']}. A benchmark whose runs would all give "
        "the same scores (no sampling and no few-shot draw) is run once.",
        "",
        "## Statistics",
        "",
        *statistics_formulas(index),
        "",
        "## Seed",
        "",
        f"Seed {config['seed']} drives every random choice: the item subsets, the few-shot draws "
        "and the sampling seeds of the runs.",
        "",
    ]
    return "\n".join(lines)


def write_methodology(config: dict[str, Any], comparison: dict[str, Any], analysis: dict[str, Any],
                      output: Path) -> None:
    """Write the methodology document (markdown): models, imatrix, variants, benchmarks, statistics."""
    index = ResultIndex.build(comparison, analysis)
    _write_text(output, methodology_markdown(config, index))


# ------------------------------------------------------------------- analysis report


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


# ------------------------------------------------------------------------- scorecard

DEFAULT_PDF_ENGINE = "xelatex"
LATEX_TIMEOUT_S = 300
LATEX_MAX_PASSES = 3
LOG_TAIL_LINES = 25
# Log messages that ask for another LaTeX pass: cross-references and outlines ("Rerun to
# get ...") and longtable column widths ("Table widths have changed. Rerun LaTeX.").
RERUN_REQUEST = re.compile(r"Rerun to get|Rerun LaTeX")
PERFORMANCE_CHART = "quantization_performance.png"
EFFICIENCY_CHART = "quantization_efficiency.png"

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
    comparisons = detected = 0
    detected_names = []
    for model in index.models():
        for variant in index.variants(model):
            if variant["variant"] == index.reference:
                continue
            for benchmark in index.benchmarks():
                paired = index.result(model, variant["variant"], benchmark)["paired"]
                comparisons += 1
                if paired and paired["ci_low"] is not None and (paired["ci_low"] > 0 or paired["ci_high"] < 0):
                    detected += 1
                    detected_names.append(f"{code(variant['variant'])} on {code(benchmark)}")

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
    grid_limited = [code(m) for m in index.models() if index.comparison["models"][m].get("grid_limited")]
    if grid_limited:
        text += (
            f" The base model of {', '.join(grid_limited)} was dequantized from a quantized GGUF, so the "
            "losses measured from it understate those of a genuinely trained model."
        )
    return text


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
            *difference_table(index, model), "",
            f"Table: Paired differences of {code(model)} from {code(index.reference)}, "
            f"mean [{level} CI], and Cohen's d_z.", "",
            "Findings:", "", *findings(index, model), "",
        ]
    lines += [
        *_figure(charts_relative, PERFORMANCE_CHART,
                 f"Score per variant and benchmark; error bars are the {level} CIs."),
        *_figure(charts_relative, EFFICIENCY_CHART,
                 f"File size against score per variant; error bars are the {level} CIs."),
        "# Quantized files", "",
    ]
    for model in index.models():
        lines += [*tensor_audit_table(index, model, wrap=True), "", f"Table: Tensor audit of {code(model)}.", ""]
    lines += [FALLBACK_EXPLANATION, "", "# imatrix effect", ""]
    for model in index.models():
        lines += [*imatrix_effect(index, model), ""]
    lines += [
        "# Methodology", "",
        "## Calibration text and imatrix", "", *imatrix_settings(config), "",
        "## Benchmarks", "", *methodology_benchmarks(config, index), "",
        "## Statistics", "", *statistics_formulas(index), "",
        f"Seed {config['seed']} drives the item subsets, the few-shot draws and the sampling seeds.", "",
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
    for chart in (PERFORMANCE_CHART, EFFICIENCY_CHART):
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
