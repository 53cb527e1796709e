"""Notes on benchmarks that were not run, and on judged benchmarks: judge, unparsed verdicts, licence."""

from __future__ import annotations

from .results import ResultIndex
from .sections import code, escape_markdown

# Attribution required by the CC BY-SA 4.0 licence wherever ELYZA-tasks-100 results are shown.
ATTRIBUTIONS = {
    "elyza_tasks_100": "ELYZA-tasks-100 by ELYZA, Inc., licensed under CC BY-SA 4.0 "
                       "(Hugging Face dataset `elyza/ELYZA-tasks-100`).",
}


def _unparsed_counts(info: dict) -> str:
    parts = [
        f"{code(model)}/{code(variant)} {count}"
        for model, counts in sorted(info.get("unparsed", {}).items())
        for variant, count in sorted(counts.items())
    ]
    return ", ".join(parts) if parts else "none"


def benchmark_notes(index: ResultIndex) -> list[str]:
    """Return one bullet per skipped benchmark and per judged benchmark; empty when there are none."""
    lines = []
    for name, reason in sorted(index.comparison.get("not_run", {}).items()):
        lines.append(f"- {code(name)} was not run: {escape_markdown(reason)}.")
    for name, reason in sorted(index.comparison.get("not_scored", {}).items()):
        lines.append(f"- {code(name)} has no scores: {escape_markdown(reason)}.")
        if name in ATTRIBUTIONS:
            lines.append(f"- {code(name)}: {ATTRIBUTIONS[name]}")
    for name, info in index.benchmarks().items():
        judge = info.get("judge")
        if judge:
            lines.append(
                f"- {code(name)} is scored 1 to 5 by the judge {code(judge['name'])} ({judge['backend']}, "
                f"model {code(judge['model'])}, prompt {code(judge['prompt_version'])}, up to "
                f"{judge['attempts']} requests per answer). Verdicts without a parseable score are left out "
                f"of the means and the statistics; per model/variant over all runs: {_unparsed_counts(info)}."
            )
        if name in ATTRIBUTIONS and (judge or info.get("n_items")):
            lines.append(f"- {code(name)}: {ATTRIBUTIONS[name]}")
    return lines
