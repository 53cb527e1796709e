"""The fidelity table and its methodology text, from the comparison's "fidelity" key."""

from __future__ import annotations

from typing import Any

from .formats import MISSING
from .sections import code, escape_markdown, markdown_table

# Decimals of the fidelity figures: perplexity, ln PPL ratio and KL divergence (nats per
# token), and the same-top rate in percent.
PERPLEXITY_DECIMALS = 3
LN_RATIO_DECIMALS = 5
KLD_DECIMALS = 5
SAME_TOP_DECIMALS = 2


def _plus_minus(value: dict[str, float] | None, decimals: int, scale: float = 1.0, signed: bool = False) -> str:
    if value is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{value['value'] * scale:{sign}.{decimals}f} ± {value['uncertainty'] * scale:.{decimals}f}"


def _number(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}"


def fidelity_records(comparison: dict[str, Any], model: str) -> dict[str, dict[str, Any]]:
    """Return {variant: fidelity record} of one model; empty when fidelity was not computed."""
    return comparison.get("fidelity", {}).get(model, {})


def fidelity_table(comparison: dict[str, Any], model: str, wrap: bool = False) -> list[str]:
    """Return the table of PPL, ln PPL ratio, KL divergence and same-top rate per variant.

    `wrap` lets pandoc wrap the cells, so that the eight columns fit the scorecard's page.
    """
    header = ["Variant", "PPL", "ln(PPL/PPL base)", "Mean KLD", "Median KLD", "p99 KLD", "Max KLD", "Same top %"]
    rows = []
    for variant, record in fidelity_records(comparison, model).items():
        kld = record["kl_divergence"] or {}
        rows.append([
            code(variant),
            _plus_minus(record["perplexity"], PERPLEXITY_DECIMALS),
            _plus_minus(record["ln_ppl_ratio"], LN_RATIO_DECIMALS, signed=True),
            _plus_minus({"value": kld["mean"], "uncertainty": kld["uncertainty"]} if kld else None, KLD_DECIMALS),
            _number(kld.get("median"), KLD_DECIMALS),
            _number(kld.get("p99"), KLD_DECIMALS),
            _number(kld.get("max"), KLD_DECIMALS),
            _plus_minus(record["same_top_p"], SAME_TOP_DECIMALS, scale=100.0),
        ])
    wrap_widths = [4, 3, 3, 3, 2, 2, 2, 3] if wrap else None
    lines = markdown_table(header, rows, "l" + "r" * (len(header) - 1), wrap_widths)
    failed = [
        f"- {code(variant)}: {escape_markdown(record['reason'])}"
        for variant, record in fidelity_records(comparison, model).items()
        if record.get("status") == "failed"
    ]
    if failed:
        lines += ["", f"Not measured, marked {MISSING}: the model file of these variants is not a valid GGUF.",
                  "", *failed]
    return lines


def fidelity_note(comparison: dict[str, Any], model: str) -> str:
    """Return the sentence under the fidelity table: text, tokens and what ± means."""
    # A variant that was not measured has no scored tokens; the base record always has them.
    record = max(fidelity_records(comparison, model).values(), key=lambda r: r["n_tokens"])
    return (
        f"Measured on {record['n_tokens']} tokens of {code(record['text'])} ({record['n_chunks']} chunks of "
        f"{record['context']} tokens, the second half of each scored), against the base model. "
        "KLD is the KL divergence of the base model's next-token distribution from the variant's, "
        "in nats per token. ± is one standard error, as llama-perplexity prints it."
    )


def fidelity_methodology(comparison: dict[str, Any]) -> list[str]:
    """Return the methodology paragraph on how the fidelity figures are computed."""
    models = [model for model in comparison.get("models", {}) if fidelity_records(comparison, model)]
    if not models:
        return []
    record = next(iter(fidelity_records(comparison, models[0]).values()))
    context = record["context"]
    return [
        f"Every variant and the base model read the text {code(record['text'])}, tokenized whole with "
        f"the model's tokenizer and cut into {record['n_chunks']} chunks of {context} tokens. Each chunk "
        "is evaluated on its own, with its first token replaced by BOS when the model adds one, and only "
        f"the tokens after its first half are scored ({context - 1 - context // 2} per chunk, "
        f"{record['n_tokens']} in all), so each scored token has at least {context // 2} tokens before it. "
        "This is llama-perplexity's chunking. The base model's log-probs are stored as llama-perplexity "
        "--kl-divergence-base stores them (16-bit steps over the 16 nats below the top token, within "
        "1.2e-4 nats). Per scored token, each variant's KL divergence is "
        "$\\sum_i p_i (\\ln p_i - \\ln q_i)$ over the tokens whose base log-prob $\\ln p_i$ is above "
        "-16, with $q$ the variant's distribution; same top means both put their highest probability "
        "on the same token. PPL is $\\exp$ of the mean negative log-likelihood, from the exact "
        "log-probs of both models (llama-perplexity reads the base model's from its clipped store, "
        "which lowers the base PPL a little). ± is one standard "
        "error: of the mean negative log-likelihood times PPL, of the mean paired difference of "
        "negative log-likelihoods for ln(PPL/PPL base), of the mean KL divergence, and "
        "$\\sqrt{p(1-p)/(n-1)}$ for the same-top rate. Median and percentiles interpolate linearly "
        "between the sorted per-token values.",
    ]
