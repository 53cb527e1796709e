"""Reading ELYZA-tasks-100 from a local JSONL or CSV copy, or from the Hugging Face hub."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import InvalidDataError

logger = logging.getLogger(__name__)

HUB_DATASET = "elyza/ELYZA-tasks-100"
ATTRIBUTION = "ELYZA-tasks-100 by ELYZA, Inc., CC BY-SA 4.0 (Hugging Face dataset elyza/ELYZA-tasks-100)"
DATA_KEY = "benchmarks.elyza_tasks_100.data"
N_TASKS = 100

# The hub's field names, then those of a copy with renamed fields: (task, reference answer, grading notes).
FIELD_NAMINGS = (("input", "output", "eval_aspect"), ("input_text", "output_text", "eval_aspect"))


def task_id(index: int) -> str:
    """Return the id of the task at 0-based position `index` of the test split."""
    return f"elyza-tasks-100-{index:03d}"


def _records_from_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InvalidDataError(f"{path}, line {line_number}: invalid JSON ({error})") from error
    return records


def _records_from_csv(path: Path) -> list[dict[str, Any]]:
    # utf-8-sig: spreadsheet programs often write a byte order mark before the header.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def normalize_tasks(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Return the tasks with ids and the fields `input`, `output`, `eval_aspect`, whichever naming the source uses."""
    if not records:
        raise InvalidDataError(f"{source} contains no tasks; give a copy of {HUB_DATASET} (key {DATA_KEY})")
    fields = set(records[0])
    naming = next((n for n in FIELD_NAMINGS if set(n) <= fields), None)
    if naming is None:
        expected = " or ".join("/".join(n) for n in FIELD_NAMINGS)
        raise InvalidDataError(
            f"{source} has the fields {', '.join(sorted(fields))}; expected {expected} (key {DATA_KEY})"
        )

    tasks = []
    for index, record in enumerate(records):
        values = [record.get(field) for field in naming]
        if not all(isinstance(value, str) for value in values) or not values[0].strip():
            raise InvalidDataError(f"{source}: task {index} lacks a text in one of the fields {', '.join(naming)}")
        tasks.append({"id": task_id(index), "input": values[0], "output": values[1], "eval_aspect": values[2]})
    if len(tasks) != N_TASKS:
        # NOTE: a copy with a different number of tasks is read anyway, but its ids no longer
        # match the ids of runs made from the full test split.
        logger.warning("%s contains %d tasks; the ELYZA-tasks-100 test split has %d", source, len(tasks), N_TASKS)
    return tasks


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """Read the tasks from a JSONL (optionally gzipped) or CSV file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidDataError(
            f"ELYZA-tasks-100 data file not found: {path} (config key {DATA_KEY}); give the path of a "
            f"JSONL or CSV copy of the Hugging Face dataset {HUB_DATASET}"
        )
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes[-1:] == [".csv"]:
        records = _records_from_csv(path)
    elif suffixes[-1:] in ([".jsonl"], [".json"]) or suffixes[-2:] == [".jsonl", ".gz"]:
        records = _records_from_jsonl(path)
    else:
        raise InvalidDataError(f"{path}: unknown file type (config key {DATA_KEY}); give a .jsonl, .jsonl.gz or .csv file")
    return normalize_tasks(records, str(path))


def download_tasks() -> list[dict[str, Any]]:
    """Load the test split from the Hugging Face hub (or the local datasets cache)."""
    from datasets import load_dataset

    logger.info("Loading %s from the Hugging Face hub", HUB_DATASET)
    try:
        dataset = load_dataset(HUB_DATASET, split="test")
    except Exception as error:  # the datasets library raises many kinds: offline, not found, HTTP
        raise InvalidDataError(
            f"cannot load {HUB_DATASET} from the Hugging Face hub ({type(error).__name__}: {error}); "
            f"download a copy and set {DATA_KEY} to its path"
        ) from error
    return normalize_tasks([dict(record) for record in dataset], HUB_DATASET)


def unavailable_reason(settings: dict[str, Any]) -> str | None:
    """Return why the data cannot be read under these settings, or None when it can (or may be downloaded)."""
    data = settings.get("data")
    if data:
        if Path(data).is_file():
            return None
        return f"data file {data} not found (config key {DATA_KEY})"
    if settings.get("download"):
        return None
    return (
        f"data not available: set {DATA_KEY} to a local JSONL or CSV copy of {HUB_DATASET}, "
        "or set benchmarks.elyza_tasks_100.download to true to load it from the Hugging Face hub"
    )
