"""A live progress bar in the terminal for a workflow run (`quant-eval progress --watch`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from .errors import QuantEvalError
from .progress import Snapshot, add_system_load, find_log, format_duration, read_progress

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n}/{total} jobs{postfix}"  # tqdm puts ", " before the postfix


def _postfix(snapshot: Snapshot) -> str:
    parts = [snapshot.current_job or "waiting for a job"]
    if snapshot.cpu_percent is not None:
        parts.append(f"CPU {snapshot.cpu_percent:.0f}%")
    if snapshot.memory_total_bytes:
        parts.append(f"mem {snapshot.memory_used_bytes / 2**30:.1f}/{snapshot.memory_total_bytes / 2**30:.1f} GiB")
    estimate = format_duration(snapshot.eta_seconds)
    if snapshot.eta_seconds is not None and not snapshot.eta_complete:
        estimate += " (rough)"
    parts.append(f"ETA {estimate}")
    return " | ".join(parts)


def watch(directory: Path, pipeline_id: str = "latest", interval: float = 2.0,
          stream: TextIO | None = None) -> Snapshot:
    """Redraw a progress bar every `interval` seconds until the run finishes or fails.

    Prints the run's closing message and returns its last snapshot; raises QuantEvalError
    when the run failed, so the command exits with status 1.
    """
    from tqdm import tqdm

    stream = stream or sys.stderr
    # Resolve 'latest' once, so a run started later does not replace the one on screen.
    pipeline_id, _ = find_log(Path(directory), pipeline_id)
    snapshot = add_system_load(read_progress(directory, pipeline_id))
    bar = tqdm(total=max(snapshot.total_jobs, 1), bar_format=BAR_FORMAT, file=stream, dynamic_ncols=True)
    try:
        while True:
            bar.total = max(snapshot.total_jobs, 1)
            bar.n = snapshot.done_jobs
            bar.set_description_str(f"{snapshot.name} [{snapshot.phase or 'starting'}]", refresh=False)
            bar.set_postfix_str(_postfix(snapshot), refresh=False)
            bar.refresh()
            if snapshot.state != "running":
                break
            time.sleep(interval)
            # CPU use since the previous refresh: psutil compares with its last call.
            snapshot = add_system_load(read_progress(directory, pipeline_id), sample_seconds=None)
    finally:
        bar.close()

    print(f"Pipeline {snapshot.pipeline_id} {snapshot.state}: {snapshot.message}", file=stream)
    if snapshot.state == "failed":
        raise QuantEvalError(f"pipeline {snapshot.pipeline_id} failed: {snapshot.message}; see {snapshot.log}")
    return snapshot
