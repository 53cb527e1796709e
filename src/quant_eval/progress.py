"""Progress of a workflow run, read from Snakemake's main log.

Snakemake writes one log per run to `.snakemake/log/<date>.snakemake.log`; the name
without `.snakemake.log` is the pipeline id that the workflow prints at start. The log
shows each job as it starts ("rule evaluate:" with its jobid, wildcards and log file
after a "[Fri Dec  4 22:40:31 2026]" timestamp), each finished job ("Finished jobid: 5
(Rule: evaluate)"), the "N of M steps (P%) done" counter, errors ("Error in rule X:")
and, at the end, "Complete log(s): ...". `read_progress` turns it into a snapshot that
the terminal view and the PowerShell monitor both render.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import QuantEvalError

LOG_FOLDER = Path(".snakemake") / "log"
LOG_SUFFIX = ".snakemake.log"
PIPELINE_ID_PREFIX = "Pipeline id: "
PIPELINE_NAME_PREFIX = "Pipeline name: "

# The stages of the workflow in the order their jobs run; judging scores generated answers
# with a judge model.
PHASES = ("imatrix", "quantization", "evaluation", "judging", "statistics", "charts", "scorecard")
RULE_PHASES = {
    "base_model": "imatrix",
    "calibration_text": "imatrix",
    "imatrix": "imatrix",
    "quantize": "quantization",
    "benchmark_data": "evaluation",
    "evaluate": "evaluation",
    "compare": "statistics",
    "statistics": "statistics",
    "charts": "charts",
    "methodology": "scorecard",
    "analysis_report": "scorecard",
    "scorecard": "scorecard",
}
# Rules not listed above are placed by the first keyword their name contains.
PHASE_KEYWORDS = (
    ("judge", "judging"),
    ("imatrix", "imatrix"),
    ("calibration", "imatrix"),
    ("quantiz", "quantization"),
    ("evaluat", "evaluation"),
    ("benchmark", "evaluation"),
    ("fidelity", "evaluation"),
    ("perplexity", "evaluation"),
    ("generat", "evaluation"),
    ("compar", "statistics"),
    ("statistic", "statistics"),
    ("chart", "charts"),
    ("report", "scorecard"),
    ("methodology", "scorecard"),
    ("scorecard", "scorecard"),
)

TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\]$")
JOB_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
JOB_FIELD = re.compile(r"^\s+(jobid|wildcards|log): (.*)$")
JOB_FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")
JOB_ERROR = re.compile(r"^Error in rule (\S+):$")
JOB_RESTART = re.compile(r"^Trying to restart job (\d+)\.")
STEPS = re.compile(r"^(\d+) of (\d+) steps \((.*)\) done$")
JOB_STATS_ROW = re.compile(r"^(\S+)\s+(\d+)$")
HEADER_FIELD = re.compile(r"^\s+(Date|Workflow ID|Working directory|Config file\(s\)): (.*)$")
COMPLETE_LOG = "Complete log(s): "
NOTHING_TO_DO = "Nothing to be done"
RUN_FAILED = "Exiting because a job execution failed"


def rule_phase(rule: str) -> str:
    """Return the stage of the workflow a rule's jobs belong to ("other" when none fits)."""
    if rule in RULE_PHASES:
        return RULE_PHASES[rule]
    for keyword, phase in PHASE_KEYWORDS:
        if keyword in rule:
            return phase
    return "other"


def _phase_order(phase: str) -> int:
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


@dataclass
class Job:
    """One job as the log shows it; times are the machine's local time."""

    jobid: int
    rule: str
    started: datetime | None
    wildcards: str = ""
    log: str = ""
    finished: datetime | None = None
    failed: bool = False

    @property
    def phase(self) -> str:
        return rule_phase(self.rule)

    def label(self) -> str:
        return f"{self.rule} ({self.wildcards})" if self.wildcards else self.rule

    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


@dataclass
class LogRecord:
    """Everything read from one Snakemake log."""

    pipeline_id: str
    path: Path
    name: str | None = None
    workflow_id: str | None = None
    started: datetime | None = None
    last_timestamp: datetime | None = None
    working_directory: str | None = None
    planned: dict[str, int] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    done: int = 0
    total: int | None = None
    ended: bool = False
    nothing_to_do: bool = False
    exited_on_failure: bool = False


def _parse_timestamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def parse_log(lines: Iterable[str], pipeline_id: str, path: Path) -> LogRecord:
    """Read the jobs, their times and the step counter from the lines of a Snakemake log."""
    record = LogRecord(pipeline_id=pipeline_id, path=path)
    timestamp: datetime | None = None
    block: Job | None = None  # the job whose indented fields follow
    block_kind = ""  # "start" or "error"
    in_job_stats = False

    for raw in lines:
        line = raw.rstrip("\n")
        if in_job_stats:
            row = JOB_STATS_ROW.match(line.strip())
            if row and row.group(1) != "total":
                record.planned.setdefault(row.group(1), int(row.group(2)))
            if line.startswith("total"):
                in_job_stats = False
            continue
        if line.startswith("Job stats:") and not record.planned:
            in_job_stats = True
            continue

        match = TIMESTAMP.match(line)
        if match:
            timestamp = _parse_timestamp(match.group(1))
            record.last_timestamp = timestamp
            continue

        match = JOB_FIELD.match(line)
        if match and block is not None:
            key, value = match.groups()
            if key == "jobid":
                jobid = int(value)
                if block_kind == "start":
                    block.jobid = jobid
                    # A restarted job is logged again: its new start replaces the failed try.
                    record.jobs[jobid] = block
                else:
                    failed = record.jobs.setdefault(jobid, Job(jobid, block.rule, None))
                    failed.failed = True
                    failed.finished = None
            elif key == "wildcards" and block_kind == "start":
                block.wildcards = value
            elif key == "log" and block_kind == "start":
                block.log = value
            continue
        if not line.startswith((" ", "\t")):
            block = None

        match = JOB_START.match(line)
        if match:
            block, block_kind = Job(-1, match.group(1), timestamp), "start"
            continue
        match = JOB_ERROR.match(line)
        if match:
            block, block_kind = Job(-1, match.group(1), timestamp), "error"
            continue
        match = JOB_FINISHED.match(line)
        if match:
            job = record.jobs.get(int(match.group(1)))
            if job is not None:
                job.finished = timestamp
                job.failed = False
            continue
        match = JOB_RESTART.match(line)
        if match:
            job = record.jobs.get(int(match.group(1)))
            if job is not None:
                job.failed = False
            continue
        match = STEPS.match(line)
        if match:
            record.done, record.total = int(match.group(1)), int(match.group(2))
            continue
        match = HEADER_FIELD.match(line)
        if match:
            key, value = match.groups()
            if key == "Date" and record.started is None:
                record.started = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
            elif key == "Workflow ID":
                record.workflow_id = value.strip()
            elif key == "Working directory":
                record.working_directory = value.strip()
            continue

        if line.startswith(PIPELINE_NAME_PREFIX):
            record.name = line[len(PIPELINE_NAME_PREFIX):].strip()
        elif line.startswith(COMPLETE_LOG):
            record.ended = True
        elif line.startswith(NOTHING_TO_DO):
            record.nothing_to_do = record.ended = True
        elif line.startswith(RUN_FAILED):
            record.exited_on_failure = True

    if record.total is None and record.planned:
        record.total = sum(record.planned.values())
    if record.started is None:
        record.started = min((j.started for j in record.jobs.values() if j.started), default=None)
    return record


# ----------------------------------------------------------------------- finding logs

def log_folder(directory: Path) -> Path:
    return Path(directory) / LOG_FOLDER


def is_run_log(path: Path) -> bool:
    """Return whether a log is one of a workflow run, not of `--unlock` or another short command."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        head = handle.read(65536)
    return any(marker in head for marker in ("Workflow ID: ", "Building DAG of jobs", PIPELINE_ID_PREFIX))


def pipeline_ids(directory: Path) -> list[str]:
    """Return the pipeline ids of the workflow runs in a working directory, oldest first."""
    folder = log_folder(directory)
    if not folder.is_dir():
        return []
    # The names are ISO dates, so sorting them sorts the runs by start time.
    return sorted(path.name[: -len(LOG_SUFFIX)] for path in folder.glob(f"*{LOG_SUFFIX}") if is_run_log(path))


def find_log(directory: Path, pipeline_id: str) -> tuple[str, Path]:
    """Return the pipeline id and log file of a run; `latest` names the newest run."""
    ids = pipeline_ids(directory)
    if pipeline_id == "latest":
        if not ids:
            raise QuantEvalError(
                f"no Snakemake log in {log_folder(directory)}: no run has started in {directory}; "
                "start the workflow there, or pass --directory with the folder it runs in"
            )
        pipeline_id = ids[-1]
    path = log_folder(directory) / f"{pipeline_id}{LOG_SUFFIX}"
    if not path.is_file() or not is_run_log(path):
        known = ", ".join(ids[-5:]) or "none"
        raise QuantEvalError(
            f"no run with pipeline id {pipeline_id!r}: {path} not found (newest ids: {known}); "
            "use the id the workflow printed at start, or 'latest'"
        )
    return pipeline_id, path


def snakemake_running_in(directory: Path) -> bool:
    """Return whether a Snakemake process has its working directory in `directory`."""
    import psutil

    target = Path(directory).resolve()
    for process in psutil.process_iter(["cmdline", "cwd"]):
        info = process.info
        cmdline = info.get("cmdline") or []
        if not info.get("cwd") or not any("snakemake" in part for part in cmdline[:3]):
            continue
        try:
            if Path(info["cwd"]).resolve() == target:
                return True
        except OSError:
            continue
    return False


# ----------------------------------------------------------------------- the snapshot

@dataclass
class RuleTimes:
    """Durations of the finished jobs of one rule, and how many of its jobs remain."""

    planned: int
    finished: int
    mean_seconds: float | None
    remaining: int


@dataclass
class Snapshot:
    """The state of one run at one moment; `to_json` is what `quant-eval progress --json` prints."""

    pipeline_id: str
    name: str
    log: str
    state: str  # running, finished or failed
    message: str
    total_jobs: int
    done_jobs: int
    percent: float
    phase: str | None
    current_job: str | None
    running: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    elapsed_seconds: float | None
    eta_seconds: float | None
    eta_complete: bool
    rules: dict[str, RuleTimes]
    cpu_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _job_entry(job: Job, now: datetime) -> dict[str, Any]:
    return {
        "jobid": job.jobid,
        "rule": job.rule,
        "phase": job.phase,
        "wildcards": job.wildcards,
        "log": job.log,
        "elapsed_seconds": (now - job.started).total_seconds() if job.started else None,
    }


def estimate_remaining(record: LogRecord, now: datetime) -> tuple[float | None, bool, dict[str, RuleTimes]]:
    """Estimate the seconds left from the mean duration of each rule's finished jobs.

    The remaining jobs of a rule cost its mean finished duration each, less the time a
    running one has already taken. Rules with no finished job yet borrow the mean of the
    other rules' means, so that many long jobs of one rule do not inflate short ones (the
    estimate is then marked incomplete). The sum is divided by
    the mean number of jobs that ran at once so far: total job time / elapsed time.
    Returns (seconds or None before any job finished, complete, per-rule figures).
    """
    durations: dict[str, list[float]] = {}
    for job in record.jobs.values():
        seconds = job.duration()
        if seconds is not None:
            durations.setdefault(job.rule, []).append(seconds)
    rules = set(record.planned) | {job.rule for job in record.jobs.values()}

    times: dict[str, RuleTimes] = {}
    for rule in sorted(rules):
        finished = durations.get(rule, [])
        planned = record.planned.get(rule, 0)
        times[rule] = RuleTimes(planned, len(finished), sum(finished) / len(finished) if finished else None,
                                max(planned - len(finished), 0))

    all_durations = [s for values in durations.values() for s in values]
    if not all_durations:
        return None, False, times
    rule_means = [t.mean_seconds for t in times.values() if t.mean_seconds is not None]
    borrowed_mean = sum(rule_means) / len(rule_means)

    running = [j for j in record.jobs.values() if j.finished is None and not j.failed and j.started]
    complete = True
    work = 0.0
    for rule, rule_times in times.items():
        if rule_times.remaining == 0:
            continue
        mean = rule_times.mean_seconds
        if mean is None:
            mean, complete = borrowed_mean, False
        work += rule_times.remaining * mean
        for job in running:
            if job.rule == rule:
                work -= min((now - job.started).total_seconds(), mean)

    elapsed = (now - record.started).total_seconds() if record.started else 0.0
    parallelism = max(1.0, sum(all_durations) / elapsed) if elapsed > 0 else 1.0
    return max(work, 0.0) / parallelism, complete, times


def build_snapshot(record: LogRecord, running_process: bool | None, now: datetime) -> Snapshot:
    """Turn a parsed log into a snapshot; `running_process` says whether Snakemake still runs.

    A log without its closing lines belongs to a run in progress unless no Snakemake
    process works in its directory any more (it was killed or crashed); None skips that check.
    """
    failed_jobs = [j for j in record.jobs.values() if j.failed]
    running = [j for j in record.jobs.values() if j.finished is None and not j.failed]
    total = record.total or 0

    if record.ended:
        if failed_jobs or record.exited_on_failure or record.done < total:
            state = "failed"
            message = (f"{len(failed_jobs)} job(s) failed ({', '.join(j.label() for j in failed_jobs)}); "
                       f"{record.done} of {total} jobs done")
        else:
            state = "finished"
            message = "nothing to be done" if record.nothing_to_do else f"all {total} jobs done"
        running = []
    elif running_process is False:
        state = "failed"
        message = (f"Snakemake stopped before the end of its log (killed or crashed); "
                   f"{record.done} of {total} jobs done")
        running = []
    else:
        state = "running"
        message = f"{record.done} of {total} jobs done"

    running.sort(key=lambda j: j.started or now)
    if running:
        phase = min((j.phase for j in running), key=_phase_order)
        current = running[-1].label() + (f" (+{len(running) - 1} more)" if len(running) > 1 else "")
    else:
        started = [j for j in record.jobs.values() if j.started]
        phase = max(started, key=lambda j: j.started).phase if started else None
        current = None

    end = now if state == "running" else (record.last_timestamp or now)
    eta, eta_complete, rules = estimate_remaining(record, end)
    if state != "running":
        eta, eta_complete = (0.0, True) if state == "finished" else (None, False)
    elapsed = (end - record.started).total_seconds() if record.started else None
    percent = 100.0 * record.done / total if total else (100.0 if state == "finished" else 0.0)
    return Snapshot(
        pipeline_id=record.pipeline_id,
        name=record.name or f"Snakemake run {record.pipeline_id}",
        log=str(record.path),
        state=state,
        message=message,
        total_jobs=total,
        done_jobs=record.done,
        percent=round(percent, 1),
        phase=phase,
        current_job=current,
        running=[_job_entry(j, now) for j in running],
        failed=[_job_entry(j, now) for j in failed_jobs],
        elapsed_seconds=elapsed,
        eta_seconds=eta,
        eta_complete=eta_complete,
        rules=rules,
    )


def add_system_load(snapshot: Snapshot, sample_seconds: float | None = 0.2) -> Snapshot:
    """Fill in the machine's CPU use and memory in use (total less available).

    CPU use is measured over `sample_seconds`, or since the previous call when None.
    """
    import psutil

    snapshot.cpu_percent = psutil.cpu_percent(interval=sample_seconds)
    memory = psutil.virtual_memory()
    snapshot.memory_used_bytes = int(memory.total - memory.available)
    snapshot.memory_total_bytes = int(memory.total)
    return snapshot


def read_progress(
    directory: Path,
    pipeline_id: str = "latest",
    *,
    now: datetime | None = None,
    process_check: Callable[[Path], bool] | None = snakemake_running_in,
) -> Snapshot:
    """Read the log of one run in `directory` and return its snapshot (without system load)."""
    pipeline_id, path = find_log(Path(directory), pipeline_id)
    with path.open(encoding="utf-8", errors="replace") as handle:
        record = parse_log(handle, pipeline_id, path)

    running_process = None
    if not record.ended and process_check is not None:
        # Snakemake writes one log per run into the directory it locks, so a newer log
        # means this run has stopped; otherwise ask whether its process is still alive.
        newer = pipeline_ids(Path(directory))[-1] != pipeline_id
        running_process = False if newer else process_check(Path(record.working_directory or directory))
    return build_snapshot(record, running_process, now or datetime.now())


def pipeline_banner(log_files: list[str], models: list[str]) -> list[str]:
    """Return the lines the workflow logs at start: the pipeline id and name."""
    ids = [Path(f).name[: -len(LOG_SUFFIX)] for f in log_files if Path(f).name.endswith(LOG_SUFFIX)]
    lines = [PIPELINE_ID_PREFIX + (ids[0] if ids else "none (no log file)")]
    lines.append(PIPELINE_NAME_PREFIX + "quantization evaluation of " + ", ".join(models))
    return lines


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_status(snapshot: Snapshot) -> str:
    """Return a one-line summary: phase, job, CPU, memory and time left."""
    parts = [f"{snapshot.percent:.0f}% ({snapshot.done_jobs}/{snapshot.total_jobs} jobs)"]
    if snapshot.phase:
        parts.append(f"phase {snapshot.phase}")
    if snapshot.current_job:
        parts.append(snapshot.current_job)
    if snapshot.cpu_percent is not None:
        parts.append(f"CPU {snapshot.cpu_percent:.0f}%")
    if snapshot.memory_total_bytes:
        parts.append(f"memory {snapshot.memory_used_bytes / 2**30:.1f}/{snapshot.memory_total_bytes / 2**30:.1f} GiB")
    if snapshot.state == "running":
        estimate = format_duration(snapshot.eta_seconds)
        parts.append(f"ETA {estimate}{'' if snapshot.eta_complete or snapshot.eta_seconds is None else ' (rough)'}")
    return " | ".join(parts)
