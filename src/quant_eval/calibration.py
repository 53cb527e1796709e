"""Calibration text for the importance matrix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .errors import InvalidDataError
from .files import atomic_output
from .package_data import package_file

logger = logging.getLogger(__name__)

DATASET_BUILD_PREFIX = "dataset-build:"


def resolve_calibration_source(entry: str) -> Path:
    """Return the file of one `imatrix.calibration` entry."""
    if entry.startswith(DATASET_BUILD_PREFIX):
        relative = entry[len(DATASET_BUILD_PREFIX):]
        path = package_file("dataset-build", "0.1.11", "dataset_build/data") / relative
    else:
        path = Path(entry).expanduser()
    if not path.is_file():
        raise InvalidDataError(
            f"calibration text not found: {path} (config key 'imatrix.calibration', entry {entry!r}); "
            "correct the path or remove the entry"
        )
    return path


def build_calibration_text(entries: Sequence[str], output: Path) -> dict[str, int]:
    """Join the calibration files into one text file; return the characters per entry."""
    parts = []
    sizes = {}
    for entry in entries:
        path = resolve_calibration_source(entry)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise InvalidDataError(f"calibration text {path} is not UTF-8 ({error}); convert it to UTF-8") from error
        parts.append(text.strip())
        sizes[entry] = len(text)
    with atomic_output(output) as temporary:
        temporary.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    logger.info("calibration text %s: %d characters from %d files", output, sum(sizes.values()), len(entries))
    return sizes
