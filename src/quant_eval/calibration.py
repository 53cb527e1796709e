"""Calibration text for the importance matrix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from .errors import InvalidDataError
from .files import atomic_output, write_json
from .package_data import package_file

logger = logging.getLogger(__name__)

DATASET_BUILD_PREFIX = "dataset-build:"


def resolve_calibration_source(entry: str, config_key: str = "imatrix.calibration") -> Path:
    """Return the file of one calibration entry; `config_key` names its key in error messages."""
    if entry.startswith(DATASET_BUILD_PREFIX):
        relative = entry[len(DATASET_BUILD_PREFIX):]
        path = package_file("dataset-build", "0.1.11", "dataset_build/data") / relative
    else:
        path = Path(entry).expanduser()
    if not path.is_file():
        raise InvalidDataError(
            f"calibration text not found: {path} (config key {config_key!r}, entry {entry!r}); "
            "correct the path or remove the entry"
        )
    return path


def _read_source(entry: str, config_key: str = "imatrix.calibration") -> str:
    path = resolve_calibration_source(entry, config_key)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"calibration text {path} is not UTF-8 ({error}); convert it to UTF-8") from error


def build_calibration_text(entries: Sequence[str], output: Path) -> dict[str, int]:
    """Join the calibration files into one text file; return the characters per entry."""
    parts = []
    sizes = {}
    for entry in entries:
        text = _read_source(entry)
        parts.append(text.strip())
        sizes[entry] = len(text)
    with atomic_output(output) as temporary:
        temporary.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    logger.info("calibration text %s: %d characters from %d files", output, sum(sizes.values()), len(entries))
    return sizes


def normalize_mix(entries: Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `{source, weight}` for each entry of a calibration set (a plain string weighs 1)."""
    mix = []
    for entry in entries:
        if isinstance(entry, str):
            mix.append({"source": entry, "weight": 1.0})
        else:
            mix.append({"source": entry["source"], "weight": float(entry.get("weight", 1))})
    sources = [item["source"] for item in mix]
    if len(set(sources)) != len(sources):
        raise InvalidDataError(f"calibration set lists a source twice ({', '.join(sources)}); list each source once")
    return mix


def build_calibration_mix(entries: Sequence[str | dict[str, Any]], output: Path, manifest: Path,
                          set_name: str) -> dict[str, Any]:
    """Write a weighted mix of calibration sources and a manifest of which text came from where.

    A weight is the share of characters a source gets in the mix. Paragraphs (blocks
    separated by blank lines) of the sources are interleaved so that every prefix of the
    text keeps the shares too: llama-imatrix reads only the first chunks x context tokens.
    The mix ends when the source that is due next has no paragraph left, so it is as long
    as the scarcest source (relative to its weight) allows.
    """
    mix = normalize_mix(entries)
    total_weight = sum(item["weight"] for item in mix)
    config_key = f"imatrix.calibration_sets.{set_name}"
    paragraphs = []
    for item in mix:
        blocks = [block.strip() for block in _read_source(item["source"], config_key).split("\n\n")]
        paragraphs.append([block for block in blocks if block])
        if not paragraphs[-1]:
            raise InvalidDataError(f"calibration source {item['source']!r} ({config_key}) is empty; remove it")

    used = [0] * len(mix)  # paragraphs taken per source
    characters = [0] * len(mix)
    segments: list[tuple[int, int, int]] = []  # (source index, start, end) in the output text
    pieces = []
    position = 0
    while True:
        # The source furthest below its share goes next.
        due = min(range(len(mix)), key=lambda i: (characters[i] / mix[i]["weight"], i))
        if used[due] == len(paragraphs[due]):
            break
        block = paragraphs[due][used[due]]
        used[due] += 1
        characters[due] += len(block)
        segments.append((due, position, position + len(block)))
        pieces.append(block)
        position += len(block) + 2  # the blank line between paragraphs

    total_characters = sum(characters)
    record = {
        "set": set_name,
        "weights_mean": "share of characters",
        "n_characters": total_characters,
        "sources": [
            {
                "source": item["source"],
                "weight": item["weight"],
                "target_share": item["weight"] / total_weight,
                "n_characters": characters[i],
                "share": characters[i] / total_characters,
                "paragraphs_used": used[i],
                "paragraphs_available": len(paragraphs[i]),
            }
            for i, item in enumerate(mix)
        ],
        "segments": [list(segment) for segment in segments],
    }
    with atomic_output(output) as temporary:
        temporary.write_text("\n\n".join(pieces) + "\n", encoding="utf-8")
    write_json(record, manifest)
    logger.info("calibration set %s: %d characters, shares %s", set_name, total_characters,
                ", ".join(f"{s['source']} {s['share']:.3f}" for s in record["sources"]))
    return record
