"""Generating the answers to the ELYZA-tasks-100 items with the model's chat template."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import InvalidDataError
from ..evaluation.backend import request_seed
from ..evaluation.runner import run_seed
from ..files import write_json
from .chat import chat_completion, load_chat_model, template_sha256

logger = logging.getLogger(__name__)


def read_items(test_file: Path) -> list[dict[str, Any]]:
    items = []
    with Path(test_file).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise InvalidDataError(f"{test_file}, line {line_number}: invalid JSON ({error}); "
                                           "delete it and run the workflow again") from error
    return items


def generate_answers(
    model_path: Path,
    test_file: Path,
    settings: dict[str, Any],
    run: int,
    seed: int,
    context: int,
    threads: int,
    output: Path,
    labels: dict[str, str],
) -> dict[str, Any]:
    """Answer every item of `test_file` once and write the answers file `output`.

    Each item is sampled with its own seed, derived from the run's seed and the item's
    position, so an answer does not depend on the items before it.
    """
    items = read_items(test_file)
    this_seed = run_seed(seed, run)
    temperature = float(settings.get("temperature", 0.0))
    max_tokens = int(settings.get("max_tokens", 512))
    model = load_chat_model(model_path, context, threads, this_seed)

    answers = []
    for index, item in enumerate(items):
        completion = chat_completion(model, item["input"], max_tokens, temperature,
                                     request_seed(this_seed, index))
        choice = completion["choices"][0]
        answers.append({
            "id": item["id"],
            "input": item["input"],
            "reference": item["output"],
            "eval_aspect": item["eval_aspect"],
            "output": choice["message"]["content"],
            "finish_reason": choice["finish_reason"],
            "prompt_tokens": completion["usage"]["prompt_tokens"],
            "completion_tokens": completion["usage"]["completion_tokens"],
        })
        logger.info("answers: %d of %d", index + 1, len(items))

    record = {
        **labels,
        "benchmark": "elyza_tasks_100",
        "run": run,
        "seed": this_seed,
        "settings": settings,
        "chat_template_sha256": template_sha256(model),
        "n_items": len(answers),
        "items": answers,
    }
    write_json(record, output, indent=1)
    logger.info("elyza_tasks_100 run %d on %s: %d answers written to %s", run, model_path.name, len(answers), output)
    return record
