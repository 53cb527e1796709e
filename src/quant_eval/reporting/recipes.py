"""Report sections on recipes: the per-tensor overrides of each variant and the calibration sets."""

from __future__ import annotations

from typing import Any

from .results import ResultIndex
from .sections import code, escape_markdown, markdown_table


def recipe_summary(recipe: dict[str, Any] | None) -> str:
    """Return the overrides of a recipe in words, e.g. "protection high; output.weight Q8_0"."""
    if not recipe:
        return "-"
    parts = []
    if recipe.get("protection", "standard") != "standard":
        parts.append(f"protection {recipe['protection']}")
    if recipe.get("output_tensor_type"):
        parts.append(f"output {recipe['output_tensor_type']}")
    if recipe.get("token_embedding_type"):
        parts.append(f"token embedding {recipe['token_embedding_type']}")
    for pattern, tensor_type in (recipe.get("tensor_types") or {}).items():
        parts.append(f"{pattern} {tensor_type}")
    if recipe.get("leave_output_tensor"):
        parts.append("output left unquantized")
    if recipe.get("calibration"):
        parts.append(f"calibration set {recipe['calibration']}")
    return escape_markdown("; ".join(parts)) if parts else "-"


def override_check(variant: dict[str, Any]) -> str:
    """Return how many overrides the tensor audit found applied, e.g. "3 of 3"."""
    overrides = variant.get("overrides") or []
    if not overrides:
        return "-"
    applied = sum(1 for check in overrides if check["applied"])
    text = f"{applied} of {len(overrides)}"
    missing = [f"{check['flag']} {check['value']}".strip() for check in overrides if not check["applied"]]
    if missing:
        text += " (not applied: " + ", ".join(missing) + ")"
    return escape_markdown(text)


def variants_table(index: ResultIndex, model: str) -> list[str]:
    """Return the methodology's table of variants: type, imatrix, recipe overrides and their audit."""
    rows = [
        [code(v["variant"]), code(v["quantization_type"]), "yes" if v["imatrix"] else "no",
         recipe_summary(v.get("recipe")), override_check(v)]
        for v in index.variants(model)
    ]
    header = ["Variant", "Type", "imatrix", "Overrides", "Overrides applied (tensor audit)"]
    return markdown_table(header, rows, "lllll")


def calibration_sets(index: ResultIndex) -> list[str]:
    """Return the token counts per source of every calibration set a recipe used, per model."""
    lines: list[str] = []
    seen = set()
    for model in index.models():
        for variant in index.variants(model):
            record = variant.get("calibration")
            if not record or (model, record["set"]) in seen:
                continue
            seen.add((model, record["set"]))
            rows = [
                [code(source["source"]), f"{source['weight']:g}", f"{source['target_share'] * 100:.1f}%",
                 str(source["n_characters"]), str(source["n_tokens"]), str(source["n_tokens_read"]),
                 f"{source['token_share_read'] * 100:.1f}%"]
                for source in record["sources"]
            ]
            header = ["Source", "Weight", "Target share (characters)", "Characters", "Tokens",
                      "Tokens read by llama-imatrix", "Share of tokens read"]
            lines += [
                f"Calibration set {code(record['set'])} on {code(model)}: {record['tokens_total']} tokens, "
                f"of which llama-imatrix read the first {record['tokens_read']}.",
                "",
                *markdown_table(header, rows, "lrrrrrr"),
                "",
            ]
    if lines:
        lines = [
            "Recipes with their own calibration set use an imatrix computed from a weighted mix of "
            "sources. A weight is the share of characters a source gets; paragraphs of the sources are "
            "interleaved so that the part llama-imatrix reads keeps these shares. Tokens are counted "
            "with the model's tokenizer, one paragraph at a time.",
            "",
            *lines,
        ]
    return lines
