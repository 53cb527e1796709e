"""Joining per-run results, tensor audits and base-model records into one comparison file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from .benchmarks import get_benchmark
from .config import BASE_VARIANT, list_variants
from .errors import InvalidDataError

logger = logging.getLogger(__name__)


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
    not_run: dict[str, str] | None = None,
    fidelity: dict[tuple[str, str], Path] | None = None,
) -> dict[str, Any]:
    """Return quantization_comparison.json's content (format: docs/results-format.md).

    `base_infos` maps model -> its base-model record, `audits` maps (model, variant) -> its
    tensor audit (the base model's included). `not_run` maps each optional benchmark that
    was skipped to the reason. Items a judge left unscored (score null) are left out of
    `scores` and counted in the benchmark's `unparsed`; a judged benchmark with a variant
    that has no scored item at all moves to `not_scored`, with the reason. `fidelity` maps
    (model, variant) -> its fidelity file; None leaves the "fidelity" key out.
    """
    not_run = not_run or {}
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
                "recipe": None if variant.is_base else variant.recipe(),
                # Per override: the tensors it matched and whether they got the requested type.
                "overrides": audit.get("overrides", []),
                "calibration": audit.get("calibration"),
            })

    scores: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    runs_seen: dict[str, set[int]] = {}
    n_items: dict[str, int] = {}
    unparsed: dict[str, dict[str, dict[str, int]]] = {}
    judges: dict[str, dict[str, Any]] = {}
    failures = []
    item_groups: dict[str, dict[str, dict[str, str]]] = {}
    decided_by: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for path in sorted(run_files):
        run = _read_json(path)
        benchmark = run["benchmark"]
        if run.get("status") == "failed":
            failures.append({key: run[key] for key in ("model", "variant", "benchmark", "run", "reason")})
            continue
        items = scores.setdefault(run["model"], {}).setdefault(run["variant"], {}).setdefault(benchmark, {})
        for item in run["items"]:
            if item["score"] is None:
                counts = unparsed.setdefault(benchmark, {}).setdefault(run["model"], {})
                counts[run["variant"]] = counts.get(run["variant"], 0) + 1
                continue
            items.setdefault(item["id"], []).append((run["run"], item["score"]))
            _collect_groups(item_groups.setdefault(benchmark, {}), item, path)
            if "decided_by" in item:
                counts = decided_by.setdefault(benchmark, {}).setdefault(run["model"], {}).setdefault(run["variant"], {})
                counts[item["decided_by"]] = counts.get(item["decided_by"], 0) + 1
        if "judge" in run:
            _check_same_judge(judges, benchmark, run["judge"], path)
        runs_seen.setdefault(benchmark, set()).add(run["run"])
        n_items[benchmark] = run["n_items"]

    # Order each item's scores by run number.
    for variants_scores in scores.values():
        for benchmarks in variants_scores.values():
            for items in benchmarks.values():
                for item_id, pairs in items.items():
                    items[item_id] = [score for _, score in sorted(pairs)]

    not_scored = {}
    for benchmark, counts in unparsed.items():
        reason = _drop_incomplete_items(scores, benchmark, counts, judges.get(benchmark, {}))
        if reason is not None:
            logger.warning("benchmark %s has no scores: %s", benchmark, reason)
            not_scored[benchmark] = reason
            for variants_scores in scores.values():
                for benchmarks in variants_scores.values():
                    benchmarks.pop(benchmark, None)

    benchmarks = {}
    for name, settings in config["benchmarks"].items():
        if name in not_run or name in not_scored:
            continue
        benchmark = get_benchmark(name, settings)
        benchmarks[name] = {
            "metric": benchmark.metric,
            "n_items": n_items.get(name, 0),
            "runs": len(runs_seen.get(name, ())),
            "score_kind": benchmark.score_kind,
            "description": benchmark.description,
            "item_groups": item_groups.get(name, {}),
        }
        if name in decided_by:
            benchmarks[name]["decided_by"] = decided_by[name]
        if benchmark.judged:
            benchmarks[name]["judge"] = judges.get(name)
            benchmarks[name]["unparsed"] = unparsed.get(name, {})
    comparison = {
        "reference": config.get("reference", BASE_VARIANT),
        "models": models,
        "variants": variants,
        "benchmarks": benchmarks,
        "not_run": dict(not_run),
        "not_scored": not_scored,
        "scores": scores,
        "failures": failures,
    }
    if fidelity is not None:
        comparison["fidelity"] = _collect_fidelity(config, fidelity)
    return comparison


def _check_same_judge(judges: dict[str, dict[str, Any]], benchmark: str, judge: dict[str, Any], path: Path) -> None:
    """Record the benchmark's judge; raise when run files of one benchmark were judged differently."""
    known = judges.setdefault(benchmark, judge)
    if known != judge:
        raise InvalidDataError(
            f"{path} was judged by {judge.get('name')!r} ({judge.get('model')}, prompt {judge.get('prompt_version')}) "
            f"but other {benchmark} run files by {known.get('name')!r} ({known.get('model')}, prompt "
            f"{known.get('prompt_version')}); delete the stale run files and run the workflow again"
        )


def _drop_incomplete_items(scores: dict[str, Any], benchmark: str, unparsed: dict[str, dict[str, int]],
                           judge: dict[str, Any]) -> str | None:
    """Keep only the items scored in every run of their variant, as the statistics need.

    An item whose verdict was unparsed in one run is left out of its variant's scores for
    all runs. Return why the benchmark has no result when a variant keeps no item at all.
    """
    for model, counts in unparsed.items():
        for variant in counts:
            items = scores[model][variant][benchmark]
            n_runs = max((len(runs) for runs in items.values()), default=0)
            for item_id in [i for i, runs in items.items() if len(runs) < n_runs]:
                del items[item_id]
            if not items:
                return (
                    f"the judge {judge.get('name')!r} gave no parseable score to any answer of {model}/{variant} "
                    f"({counts[variant]} unparsed verdicts; their texts are in the run files); configure a "
                    f"judge that follows the prompt in benchmarks.{benchmark}.judge"
                )
    return None


def _collect_fidelity(config: dict[str, Any], files: dict[tuple[str, str], Path]) -> dict[str, dict[str, Any]]:
    """Read every variant's fidelity file into {model: {variant: record}}."""
    fidelity: dict[str, dict[str, Any]] = {}
    for model in config["models"]:
        for variant in list_variants(config):
            key = (model, variant.name)
            if key not in files:
                raise InvalidDataError(
                    f"no fidelity file given for {model}/{variant.name}; pass one per variant, the base included"
                )
            fidelity.setdefault(model, {})[variant.name] = _read_json(files[key])
    return fidelity
