"""The two result files indexed for lookup, and the writer of the markdown documents."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidDataError
from ..files import atomic_output
from .formats import SCORE_FORMATS, ScoreFormat

logger = logging.getLogger(__name__)


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
            if result.get("group_by") is not None:
                continue  # subject or level entries; the tables show whole benchmarks
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

    def imatrix_effect(self, model: str) -> list[dict[str, Any]]:
        """Return the model's paired comparisons of each type with and without the imatrix."""
        return [entry for entry in self.analysis.get("imatrix_effect", []) if entry["model"] == model]

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

    def comparisons(self) -> Iterator[tuple[str, str, str, dict[str, Any] | None]]:
        """Yield (model, variant, benchmark, paired) for every variant other than the reference.

        `paired` is the result's paired comparison, None where the variant's evaluation failed.
        """
        for model in self.models():
            for variant in self.variants(model):
                if variant["variant"] == self.reference:
                    continue
                name = variant["variant"]
                for benchmark in self.benchmarks():
                    yield model, name, benchmark, self.result(model, name, benchmark)["paired"]


def _write_text(output: Path, text: str) -> None:
    with atomic_output(output) as temporary:
        temporary.write_text(text, encoding="utf-8")
    logger.info("Wrote %s", output)
