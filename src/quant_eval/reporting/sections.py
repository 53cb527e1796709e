"""Markdown helpers and the sections the report and the scorecard share."""

from __future__ import annotations

from typing import Any

from .formats import (
    BITS_PER_WEIGHT_DECIMALS,
    FAILED,
    MISSING,
    TEST_NAMES,
    ScoreFormat,
    format_effect_size,
    format_estimate,
    format_interval,
    format_level,
    format_mib,
    format_p_value,
    format_value,
    interval_method_name,
    unit_suffix,
)
from .results import ResultIndex



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


def is_failed(result: dict[str, Any]) -> bool:
    """Return whether a result has no numbers because every run of its evaluation failed."""
    return result.get("status") == "failed"


def score_text(result: dict[str, Any], score_format: ScoreFormat) -> str:
    """Return "mean [CI]" of a result, or the FAILED mark when its evaluation failed."""
    if is_failed(result):
        return FAILED
    return format_estimate(result["mean"], result["ci_low"], result["ci_high"], score_format)


def missing_results(index: ResultIndex, model: str) -> list[str]:
    """Return a list of the model's failed evaluations with their reasons, or nothing when none failed."""
    lines = [
        f"- {code(variant)} on {code(benchmark)}: {escape_markdown(result['reason'])}"
        for (result_model, variant, benchmark), result in index.results.items()
        if result_model == model and is_failed(result)
    ]
    if not lines:
        return []
    return [f"Missing results, marked {FAILED}: these evaluations failed, so their cells have no score.",
            "", *lines]


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
            row.append(score_text(result, index.score_format(benchmark)))
        rows.append(row)
    return markdown_table(header, rows, "l" + "r" * len(benchmarks))


def score_table_note(index: ResultIndex) -> str:
    """Return the sentence under the score table: items, runs and interval method of each benchmark."""
    parts = []
    for benchmark, info in index.benchmarks().items():
        runs = "1 run" if info["runs"] == 1 else f"{info['runs']} runs"
        methods = dict.fromkeys(
            interval_method_name(result["interval_method"])
            for (_, _, result_benchmark), result in index.results.items()
            if result_benchmark == benchmark and not is_failed(result)
        )
        parts.append(f"{code(benchmark)}: n = {info['n_items']} items, {runs}, {' or '.join(methods)} interval")
    return (
        f"Mean score with its {format_level(index.confidence_level)} confidence interval over items. "
        + "; ".join(parts) + "."
    )


def _flips_text(paired: dict[str, Any]) -> str:
    flips = paired["flips"]
    if flips is None:
        return MISSING
    return f"{flips['correct_to_wrong']} / {flips['wrong_to_correct']}"


def _test_columns(paired: dict[str, Any], score_format) -> list[str]:
    """Return the cells: primary test, raw p, Holm p, flips (to wrong / to correct) and MDD."""
    mdd = paired["minimum_detectable_difference"]["value"]
    return [
        TEST_NAMES.get(paired["primary_test"], paired["primary_test"]),
        format_p_value(paired["p_value"]),
        format_p_value(paired["p_value_holm"]),
        _flips_text(paired),
        format_value(mdd, score_format),
    ]


TEST_HEADER = ["Test", "p", "p (Holm)", "Flips (lost / gained)", "MDD"]
TEST_NOTE = (
    "Test is the primary paired test: McNemar's exact test on majority-vote correctness for 0/1 "
    "scores, the paired t-test for graded scores. p (Holm) is adjusted over all variant and benchmark "
    "comparisons. Flips (lost / gained) counts the items correct in the reference and wrong in the variant, then "
    "the reverse. MDD is the smallest difference the comparison detects with the configured power, "
    "in the difference's unit."
)


def difference_table(index: ResultIndex, model: str, with_tests: bool = True) -> list[str]:
    """Return a table of paired differences from the reference: CI and d_z, then tests, flips and MDD.

    Without `with_tests` the table stops at d_z, so that it fits a printed page, and
    reference_test_table gives the rest.
    """
    level = format_level(index.confidence_level)
    tests = TEST_HEADER if with_tests else []
    header = ["Variant", "Benchmark", "Items", f"Difference [{level} CI]", "Unit", "d_z", *tests]
    rows = []
    for variant in index.variants(model):
        if variant["variant"] == index.reference:
            continue
        for benchmark in index.benchmarks():
            paired = index.result(model, variant["variant"], benchmark)["paired"]
            score_format = index.score_format(benchmark)
            if paired is None:
                rows.append([code(variant["variant"]), code(benchmark), MISSING, MISSING, "", MISSING,
                             *[MISSING] * len(tests)])
                continue
            rows.append([
                code(variant["variant"]),
                code(benchmark),
                str(paired["n_items"]),
                format_estimate(paired["mean_difference"], paired["ci_low"], paired["ci_high"],
                                score_format, signed=True),
                score_format.difference_unit,
                format_effect_size(paired["cohens_dz"]),
                *(_test_columns(paired, score_format) if with_tests else []),
            ])
    return markdown_table(header, rows, "llrrlr" + "lrrrr"[: len(tests)])


def paired_test_table(names: list[tuple[str, str]], paired_results: list[dict[str, Any] | None],
               index: ResultIndex) -> list[str]:
    """Return a table of the tests, flips and MDD of paired comparisons, one row per (variant, benchmark)."""
    header = ["Variant", "Benchmark", *TEST_HEADER, "Unit"]
    rows = []
    for (variant, benchmark), paired in zip(names, paired_results):
        score_format = index.score_format(benchmark)
        cells = [MISSING] * len(TEST_HEADER) if paired is None else _test_columns(paired, score_format)
        rows.append([code(variant), code(benchmark), *cells, score_format.difference_unit])
    return markdown_table(header, rows, "ll" + "lrrrr" + "l")


def reference_test_table(index: ResultIndex, model: str) -> list[str]:
    """Return paired_test_table for each variant's comparison with the reference."""
    names, paired_results = [], []
    for variant in index.variants(model):
        if variant["variant"] == index.reference:
            continue
        for benchmark in index.benchmarks():
            names.append((variant["variant"], benchmark))
            paired_results.append(index.result(model, variant["variant"], benchmark)["paired"])
    return paired_test_table(names, paired_results, index)


def power_warnings(config: dict[str, Any], index: ResultIndex) -> list[str]:
    """Return one warning per benchmark with a configured `limit` too small to detect the target drop.

    The target is the statistics stage's `target_difference` (2 percentage points for 0/1
    scores); a comparison misses it when its minimum detectable difference is larger.
    """
    lines = []
    power = index.analysis.get("power", {}).get("power")
    for benchmark in index.benchmarks():
        limit = config.get("benchmarks", {}).get(benchmark, {}).get("limit")
        if limit is None:
            continue
        score_format = index.score_format(benchmark)
        unit = unit_suffix(score_format.difference_unit)
        values, target = [], None
        for (_, _, result_benchmark), result in index.results.items():
            paired = result["paired"]
            if result_benchmark != benchmark or paired is None:
                continue
            mdd = paired["minimum_detectable_difference"]
            if mdd["detects_target"] is False:
                values.append(mdd["value"])
                target = mdd["target_difference"]
        if values:
            power_text = f"{power * 100:g}% power" if power is not None else "the configured power"
            lines.append(
                f"- **Warning:** {code(benchmark)} uses `limit: {limit}`, and at {power_text} its comparisons "
                f"detect only differences of {format_value(min(values), score_format)} to "
                f"{format_value(max(values), score_format)}{unit}, more than a drop of "
                f"{format_value(target, score_format)}{unit}. Raise `limit` (or set it to null) to detect such a drop."
            )
    return lines


def difference_finding(index: ResultIndex, model: str, variant: str, benchmark: str) -> str:
    """Return one plain sentence on what the paired interval supports."""
    paired = index.result(model, variant, benchmark)["paired"]
    names = f"{code(variant)} on {code(benchmark)}"
    reference = code(index.reference)
    failed = [name for name in (variant, index.reference) if is_failed(index.result(model, name, benchmark))]
    if failed:
        return f"{names}: no comparison, because the evaluation of {code(failed[0])} failed (see the missing results)."
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


def imatrix_effect(index: ResultIndex, model: str, with_tests: bool = True) -> list[str]:
    """Return the imatrix-effect table (with minus without, paired, per benchmark) and its reading.

    Without `with_tests` the tests, flips and MDD follow in a second table, so that both
    fit a printed page.
    """
    entries = index.imatrix_effect(model)
    if not entries:
        return [f"No quantization type of {code(model)} was evaluated both with and without the imatrix."]

    level = format_level(index.confidence_level)
    tests = TEST_HEADER if with_tests else []
    header = ["Variant", "Benchmark", "With imatrix", "Without imatrix", f"Difference [{level} CI]", "Unit",
              *tests]
    rows = []
    kl_lines = []
    for entry in entries:
        benchmark = entry["benchmark"]
        score_format = index.score_format(benchmark)
        with_result = index.result(model, entry["with_imatrix"], benchmark)
        without_result = index.result(model, entry["without_imatrix"], benchmark)
        paired = entry["paired"]
        cells = [MISSING, score_format.difference_unit, *[MISSING] * len(tests)]
        if paired is not None:
            cells = [format_estimate(paired["mean_difference"], paired["ci_low"], paired["ci_high"],
                                     score_format, signed=True),
                     score_format.difference_unit,
                     *(_test_columns(paired, score_format) if with_tests else [])]
        rows.append([
            code(entry["with_imatrix"]),
            code(benchmark),
            score_text(with_result, score_format),
            score_text(without_result, score_format),
            *cells,
        ])
        change = entry.get("kl_divergence_change")
        line = (f"- {code(entry['with_imatrix'])}: mean KL divergence with minus without the imatrix "
                f"{change['value']:+.5f} nats per token, {level} CI [{change['ci_low']:+.5f}, "
                f"{change['ci_high']:+.5f}].") if change else None
        if line and line not in kl_lines:
            kl_lines.append(line)

    lines = markdown_table(header, rows, "llrrrl" + "lrrrr"[: len(tests)])
    if not with_tests:
        names = [(entry["with_imatrix"], entry["benchmark"]) for entry in entries]
        lines += ["", *paired_test_table(names, [entry["paired"] for entry in entries], index)]
    lines += [
        "",
        f"Difference is the score with the imatrix minus the score without it, paired over the items "
        f"both variants answered, with its {level} CI. p (Holm) is adjusted over all imatrix comparisons; "
        "flips count items correct without the imatrix and wrong with it, then the reverse.",
    ]
    if kl_lines:
        lines += ["", *kl_lines]
    return lines


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


# Columns of the answer-judgement table: the `decided_by` values of the comparison file.
DECIDED_BY_COLUMNS = (
    ("identical", "identical after normalization"),
    ("sympy", "compared by sympy"),
    ("string", "string fallback"),
    ("no_answer", "no final answer"),
)


def answer_judgement_table(index: ResultIndex, model: str, benchmark: str) -> list[str]:
    """Return a table of how the benchmark's answers were judged, per variant, over all runs.

    Empty when the comparison has no `decided_by` counts for the benchmark (only MATH has them).
    """
    counts = index.benchmarks()[benchmark].get("decided_by", {}).get(model)
    if not counts:
        return []
    header = ["Variant", "answers"] + [title for _, title in DECIDED_BY_COLUMNS]
    rows = []
    for variant in index.variants(model):
        variant_counts = counts.get(variant["variant"], {})
        rows.append([code(variant["variant"]), str(sum(variant_counts.values()))]
                    + [str(variant_counts.get(key, 0)) for key, _ in DECIDED_BY_COLUMNS])
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


ANSWER_JUDGEMENT_EXPLANATION = (
    "Answers counts one answer per item and run. An answer that sympy cannot parse (text, "
    "matrices, equations) and whose normalized string differs from the reference is scored 0 "
    "by the string fallback, so an equivalent answer written differently may be scored wrong there."
)


def answer_judgements(index: ResultIndex, model: str) -> list[str]:
    """Return one answer-judgement table per benchmark that records how its answers were judged."""
    lines: list[str] = []
    for benchmark in index.benchmarks():
        table = answer_judgement_table(index, model, benchmark)
        if table:
            lines += [f"Answers of {code(benchmark)}:", "", *table, ""]
    if lines:
        lines.append(ANSWER_JUDGEMENT_EXPLANATION)
    return lines
