"""Run one benchmark on one model file through lm-evaluation-harness and keep every item."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from ..benchmarks import _read_jsonl, get_benchmark
from ..errors import InvalidModelError
from ..files import write_json
from ..gguf_files import open_gguf
from .backend import LlamaCppLM

logger = logging.getLogger(__name__)


def run_seed(seed: int, run: int) -> int:
    """Seed of run `run` (1-based): sampling and few-shot draws differ between runs."""
    return seed + run - 1


def _load_task(benchmark_name: str, settings: dict[str, Any], data_files: dict[str, str]) -> Any:
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    benchmark = get_benchmark(benchmark_name, settings)
    task_config: dict[str, Any] = {}
    yaml_path = benchmark.task_yaml()
    if yaml_path is not None:
        # Reading the one definition directly skips indexing the harness's ~15,000 task
        # files, which takes longer than a small evaluation.
        task_config = load_yaml(yaml_path, resolve_func=True)
    task_config.update(benchmark.task_overrides(settings, data_files))
    task_config["task"] = benchmark.task
    return TaskManager(include_defaults=False).load([task_config])


def _item_record(benchmark: Any, sample: dict[str, Any]) -> dict[str, Any]:
    doc = sample["doc"]
    arguments = sample["arguments"]
    record: dict[str, Any] = {
        "id": doc["id"],
        "prompt": arguments[0][0],
        "gold": sample["target"],
        "score": float(sample[benchmark.metric]),
    }
    # A generation request's arguments are (prompt, generation settings).
    if isinstance(arguments[0][1], dict):
        record["output"] = sample["resps"][0][0]
        record["extracted_answer"] = sample["filtered_resps"][0]
    else:
        # Multiple choice: one (log-likelihood, is-greedy) pair per choice. The harness
        # picks the highest log-likelihood for acc and the highest per character for acc_norm.
        choices = [argument[1] for argument in arguments]
        loglikelihoods = [float(resp[0][0]) for resp in sample["resps"]]
        per_character = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices)]
        record["choices"] = choices
        record["loglikelihoods"] = loglikelihoods
        record["prediction_acc"] = max(range(len(choices)), key=loglikelihoods.__getitem__)
        record["prediction_acc_norm"] = max(range(len(choices)), key=per_character.__getitem__)
        # A metric other than acc and acc_norm shows the choice acc would pick.
        predicted = record.get(f"prediction_{benchmark.metric}", record["prediction_acc"])
        record["output"] = choices[predicted]
        record["extracted_answer"] = predicted
    for metric in ("acc", "acc_norm", "exact_match"):
        if metric in sample:
            record[metric] = float(sample[metric])
    record.update(benchmark.item_fields(sample))
    return record


def run_task(model: LM, benchmark_name: str, settings: dict[str, Any], data_files: dict[str, str],
             seed: int) -> list[dict[str, Any]]:
    """Run a benchmark's harness task with `model`; return one record per item, in item order.

    `seed` draws the few-shot examples; `data_files` maps "test" and "fewshot" to JSONL files.
    """
    # Data come from local files only; never let the datasets library reach for the hub.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval.evaluator import evaluate as harness_evaluate

    benchmark = get_benchmark(benchmark_name, settings)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_DATASETS_CACHE"] = cache  # a private cache: parallel jobs never share one
        task_dict = _load_task(benchmark_name, settings, data_files)
        task_dict["tasks"][benchmark.task].set_fewshot_seed(seed)
        results = harness_evaluate(model, task_dict, log_samples=True, bootstrap_iters=0)

    samples = results["samples"][benchmark.task]
    if benchmark.filter is not None:
        samples = [s for s in samples if s["filter"] == benchmark.filter]
    return [_item_record(benchmark, sample) for sample in sorted(samples, key=lambda s: s["doc_id"])]


def evaluate(
    model_path: Path,
    benchmark_name: str,
    settings: dict[str, Any],
    test_file: Path,
    fewshot_file: Path,
    run: int,
    seed: int,
    context: int,
    threads: int,
    output: Path,
    labels: dict[str, str],
    gpu_layers: int = 0,
) -> dict[str, Any]:
    """Evaluate one run and write every item's prompt, output, answer and score to `output`.

    A model file that is not a valid GGUF (truncated, corrupt) gives a run file with
    status "failed" and the reason instead of an error. The other variants then still
    reach the reports, which mark the missing results. Any other error fails the job,
    which Snakemake's `retries` may then run again.
    """
    benchmark = get_benchmark(benchmark_name, settings)
    this_seed = run_seed(seed, run)
    record = {
        **labels,
        "benchmark": benchmark_name,
        "task": benchmark.task,
        "metric": benchmark.metric,
        "filter": benchmark.filter,
        "run": run,
        "seed": this_seed,
        "settings": settings,
    }
    try:
        open_gguf(model_path)
    except InvalidModelError as error:
        record.update({"status": "failed", "reason": str(error), "n_items": 0, "mean_score": None, "items": []})
        write_json(record, output, indent=1)
        logger.error("%s run %d not evaluated: %s", benchmark_name, run, error)
        return record

    model = LlamaCppLM(model_path, context=context, threads=threads, seed=this_seed, gpu_layers=gpu_layers)
    if hasattr(benchmark, "run_items"):
        # A benchmark scored by the user's Python module: no harness task.
        items = benchmark.run_items(model, list(_read_jsonl(test_file)))
    else:
        items = run_task(model, benchmark_name, settings, {"test": str(test_file), "fewshot": str(fewshot_file)},
                         this_seed)
    mean = sum(item["score"] for item in items) / len(items) if items else float("nan")
    record.update({"status": "complete", "reason": None, "n_items": len(items), "mean_score": mean, "items": items})
    write_json(record, output, indent=1)
    logger.info("%s run %d on %s: %s = %.4f over %d items", benchmark_name, run, model_path.name,
                benchmark.metric, mean, len(items))
    return record
