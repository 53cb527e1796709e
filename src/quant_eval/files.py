"""Atomic file output: a file is either absent, its old version, or complete."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_output(output: Path) -> Iterator[Path]:
    """Yield a temporary path beside `output` and rename it to `output` if the block succeeds.

    The temporary file is removed when the block raises, so `output` is either the old
    file or the complete new one.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(content: Any, output: Path, indent: int = 2) -> None:
    """Write `content` as UTF-8 JSON to `output`, atomically."""
    with atomic_output(output) as temporary:
        temporary.write_text(json.dumps(content, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
