"""Joining per-run results, tensor audits and base-model records into one comparison file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .benchmarks import get_benchmark
from .config import BASE_VARIANT, list_variants
from .errors import InvalidDataError


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidDataError(f"cannot read {path}: {error}; delete it and run the workflow again") from error


def _collect_groups(groups: dict[str, dict[str, str]], item: dict[str, Any], path: Path) -> None:
    """Add an item's groups (e.g. subject and level) to `groups`, grouping -> item id -> value."""
    for group_by, value in item.get("groups", {}).items():
        known = groups.setdefault(group_by, {}).setdefault(item["id"], value)
        if known != value:
            raise InvalidDataError(
                f"{path}: item {item['id']} has {group_by} {value!r} here and {known!r} in another run file; "
                "delete the run files of this benchmark and run the workflow again"
            )


def build_comparison(
    config: dict[str, Any],
    base_infos: dict[str, Path],
    audits: dict[tuple[str, str], Path],
    run_files: Sequence[Path],
) -> dict[str, Any]:
    """Return quantization_comparison.json's content (format: docs/results-format.md).

    `base_infos` maps model -> its base-model record, `audits` maps (model, variant) -> its
    tensor audit (the base model's included).
    """
    models = {}
    for model, path in base_infos.items():
        info = _read_json(path)
        models[model] = {key: info[key] for key in ("source", "base_type", "grid_limited", "note")}

    variants = []
    for model in config["models"]:
        for variant in list_variants(config):
            audit = _read_json(audits[(model, variant.name)])
            variants.append({
                "model": model,
                "variant": variant.name,
                "quantization_type": variant.quantization_type or models[model]["base_type"],
                "imatrix": variant.imatrix,
                "file_size_bytes": audit["file_size_bytes"],
                "n_parameters": audit["n_parameters"],
                "bits_per_weight": audit["bits_per_weight"],
                "tensor_types": audit["tensor_types"],
                "fallback_tensors": len(audit["fallback_tensors"]),
            })

    scores: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    runs_seen: dict[str, set[int]] = {}
    n_items: dict[str, int] = {}
    item_groups: dict[str, dict[str, dict[str, str]]] = {}
    decided_by: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for path in sorted(run_files):
        run = _read_json(path)
        benchmark = run["benchmark"]
        items = scores.setdefault(run["model"], {}).setdefault(run["variant"], {}).setdefault(benchmark, {})
        for item in run["items"]:
            items.setdefault(item["id"], []).append((run["run"], item["score"]))
            _collect_groups(item_groups.setdefault(benchmark, {}), item, path)
            if "decided_by" in item:
                counts = decided_by.setdefault(benchmark, {}).setdefault(run["model"], {}).setdefault(run["variant"], {})
                counts[item["decided_by"]] = counts.get(item["decided_by"], 0) + 1
        runs_seen.setdefault(benchmark, set()).add(run["run"])
        n_items[benchmark] = run["n_items"]

    # Order each item's scores by run number.
    for variants_scores in scores.values():
        for benchmarks in variants_scores.values():
            for items in benchmarks.values():
                for item_id, pairs in items.items():
                    items[item_id] = [score for _, score in sorted(pairs)]

    benchmarks = {}
    for name in config["benchmarks"]:
        benchmark = get_benchmark(name)
        benchmarks[name] = {
            "metric": benchmark.metric,
            "n_items": n_items.get(name, 0),
            "runs": len(runs_seen.get(name, ())),
            "score_kind": benchmark.score_kind,
            "item_groups": item_groups.get(name, {}),
        }
        if name in decided_by:
            benchmarks[name]["decided_by"] = decided_by[name]
    return {
        "reference": config.get("reference", BASE_VARIANT),
        "models": models,
        "variants": variants,
        "benchmarks": benchmarks,
        "scores": scores,
    }
