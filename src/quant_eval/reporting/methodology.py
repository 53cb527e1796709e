"""The methodology document: what was run, with every setting, seed and formula."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .fidelity import fidelity_methodology
from .formats import INTERVAL_METHODS, MISSING, format_level
from .notes import benchmark_notes
from .results import ResultIndex, _write_text
from .recipes import calibration_sets, variants_table
from .sections import code, escape_markdown, grid_limited_caveat

logger = logging.getLogger(__name__)


# Plain descriptions of the per-item metrics, as lm-evaluation-harness computes them.
METRIC_DESCRIPTIONS = {
    "exact_match": "1 when the answer extracted from the generated text equals the reference answer, else 0",
    "acc": "1 when the answer choice with the highest log-likelihood is the correct one, else 0",
    "acc_norm": "1 when the answer choice with the highest log-likelihood per character is the correct one, else 0",
    "judge_score": "the judge model's score from 1 to 5 of the answer, given the reference answer and the grading notes",
}


def _benchmark_description(name: str) -> str:
    """Return the first line of the benchmark class's docstring, or "" for an unknown benchmark."""
    from ..benchmarks import BENCHMARKS

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
    if "subset" in settings:
        parts.append(f"item set {code(settings['subset'])}")
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
        description = info.get("description") or _benchmark_description(name)
        metric = info["metric"]
        metric_text = METRIC_DESCRIPTIONS.get(metric, f"{info['score_kind']} score per item")
        lines += [
            f"- {code(name)}: {escape_markdown(description)}",
            f"  Items: {_item_selection(info['n_items'], settings.get('limit'), config['seed'])}.",
            f"  Metric: {code(metric)} ({info['score_kind']}), {metric_text}.",
            f"  Settings: {_benchmark_settings(settings)}.",
            f"  Runs: {_run_variation(info['runs'], config['runs'], settings)}.",
        ]
        if "decided_by" in info:
            lines.append(f"  Answer comparison: {_answer_comparison(info['decided_by'])}.")
    return lines


def _answer_comparison(decided_by: dict[str, dict[str, dict[str, int]]]) -> str:
    """Summarize how the answers of all models, variants and runs were judged."""
    totals: dict[str, int] = {}
    for variants in decided_by.values():
        for counts in variants.values():
            for key, count in counts.items():
                totals[key] = totals.get(key, 0) + count
    n_answers = sum(totals.values())
    return (
        f"of {n_answers} answers (one per item, run, variant and model), {totals.get('identical', 0)} equalled the "
        f"reference after normalization, {totals.get('sympy', 0)} were compared by sympy, "
        f"{totals.get('string', 0)} fell back to string comparison because sympy could not parse them "
        f"(scored 0, possibly wrongly), and {totals.get('no_answer', 0)} had no final answer"
    )


def _interval_methods_used(index: ResultIndex) -> list[str]:
    """Return the interval methods of the results, in the order of INTERVAL_METHODS, unknown ones last."""
    used = {result["interval_method"] for result in index.results.values() if result.get("status") != "failed"}
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
        *paired_test_formulas(index),
    ]
    return lines


FIDELITY_INTERVALS = (
    "- Fidelity: perplexity, ln(PPL ratio), KL divergence and the same-top-token rate get the interval "
    "estimate $\\pm z_{{{z}}}$ times their standard error (computed as llama-perplexity computes it), "
    "clipped to the possible range. The imatrix's change in mean KL divergence has the uncertainty "
    "$\\sqrt{{u_{{with}}^2 + u_{{without}}^2}}$, which ignores their positive correlation and so is conservative."
)


def paired_test_formulas(index: ResultIndex) -> list[str]:
    """Return the formulas of the paired tests, flips, Holm's adjustment, the MDD and fidelity intervals."""
    power = index.analysis.get("power", {})
    power_level = power.get("power", 0.8)
    alpha = power.get("alpha", round(1 - index.confidence_level, 12))
    lines = [
        "- Correctness and flips (0/1 scores): an item is correct when more than half of its runs "
        "scored 1 (with one run, its score; a tie counts as wrong). A flip is an item correct in the "
        "reference and wrong in the variant ($b$, lost) or the reverse ($c$, gained); rates are $b/m$ and $c/m$.",
        "- McNemar's exact test (primary test for 0/1 scores): $p = \\min\\left(1, 2\\sum_{k=0}^{\\min(b,c)} "
        "\\binom{b+c}{k} 2^{-(b+c)}\\right)$, and $p = 1$ when $b + c = 0$.",
        "- Paired t-test (primary test for graded scores; reported for 0/1 scores too, on item means): "
        "$t = \\bar{d} / (s_d/\\sqrt{m})$ with $m-1$ degrees of freedom, two-sided. With $s_d = 0$, "
        "$p = 1$ if every $d_i = 0$ and $p = 0$ otherwise.",
        "- Wilcoxon signed-rank test (reported beside the t-test): zero $d_i$ are dropped, the others "
        "ranked by $|d_i|$ with average ranks for ties, and $W^+$ is the sum of the ranks of positive "
        "$d_i$. Up to 200 nonzero differences $p = 2\\min(P(W^+ \\le w), P(W^+ \\ge w))$ under the exact "
        "distribution of $W^+$ over all sign assignments of the observed ranks; above that, the normal "
        "approximation with tie correction and no continuity correction. Its p-value is not adjusted.",
        "- Holm's adjustment: the m primary p-values of a family, sorted $p_{(1)} \\le \\dots \\le p_{(m)}$, "
        "become $\\max_{j \\le i} \\min(1, (m-j+1)\\,p_{(j)})$. Families: all whole-benchmark comparisons "
        "with the reference; the subject or level groups of one model and benchmark; all imatrix comparisons.",
        f"- Minimum detectable difference at {power_level * 100:g}% power and $\\alpha = {alpha:g}$: "
        "$MDD = (z_{1-\\alpha/2} + z_{power})\\, s_d / \\sqrt{m}$ (normal approximation). When $s_d = 0$ "
        "it uses $\\sqrt{2}$ times the standard deviation of the reference's item means, and for 0/1 "
        "scores with no spread at all $\\sqrt{2 \\cdot 0.25}$; both over-state the spread, so the MDD is an "
        "upper bound there.",
        "- The statistics draw no random numbers (no bootstrap or permutation sampling), so they need no seed.",
    ]
    if index.comparison.get("fidelity"):
        lines.insert(-1, FIDELITY_INTERVALS.format(z=f"{(1 + index.confidence_level) / 2:g}"))
    return lines


def seed_statement(config: dict[str, Any]) -> str:
    """Return the paragraph that names the seed of every random choice and how each is derived."""
    seed = config["seed"]
    return (
        f"Seed {seed} drives every random choice. The item subset of a benchmark with `limit` is drawn "
        f"with Python's random.Random seeded with the string {code(f'<benchmark>:{seed}')}. Run k uses the "
        f"seed {seed} + k - 1 for its few-shot draw and as llama.cpp's sampling seed, and each sampled "
        "request is seeded with the CRC-32, masked to 31 bits, of "
        f"{code('<run seed>:<item index>:<repeat>')}. The statistics use no random numbers."
    )


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
        *calibration_sets(index),
        "## Variants",
        "",
    ]
    for model in index.models():
        lines += [f"Variants of {code(model)}:", "", *variants_table(index, model), ""]

    lines += [
        "## Benchmarks",
        "",
        *methodology_benchmarks(config, index),
        *benchmark_notes(index),
        "",
        f"Configured runs per evaluation: {config['runs']}. A benchmark whose runs would all give "
        "the same scores (no sampling and no few-shot draw) is run once.",
        "",
        "## Statistics",
        "",
        *statistics_formulas(index),
        "",
    ]
    fidelity = fidelity_methodology(index.comparison)
    if fidelity:
        lines += ["## Fidelity to the base model", "", *fidelity, ""]
    lines += [
        "## Seed",
        "",
        seed_statement(config),
        "",
    ]
    return "\n".join(lines)


def write_methodology(config: dict[str, Any], comparison: dict[str, Any], analysis: dict[str, Any],
                      output: Path) -> None:
    """Write the methodology document (markdown): models, imatrix, variants, benchmarks, statistics."""
    index = ResultIndex.build(comparison, analysis)
    _write_text(output, methodology_markdown(config, index))
