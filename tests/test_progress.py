"""Progress of a workflow run: Snakemake log reading, phases, time estimates and the PowerShell monitor.

The workflow tests at the end capture logs of real runs of this workflow: one that fails
and one still running. The completed run is tested in test_workflow.py, on the log of
its full run.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from conftest import write_tiny_llama
from quant_eval.cli import build_parser, main
from quant_eval.errors import QuantEvalError
from quant_eval.progress import (
    LOG_SUFFIX,
    PHASES,
    PIPELINE_ID_PREFIX,
    Snapshot,
    find_log,
    read_progress,
    rule_phase,
)
from quant_eval.progress_view import watch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "monitor_quantization_progress.ps1"
TEST_CONFIG = REPO / "config" / "test" / "config.yaml"


def log_time(moment: datetime) -> str:
    """A timestamp line as Snakemake writes it before each job event."""
    return moment.strftime("[%a %b %d %H:%M:%S %Y]").replace(" 0", "  ", 1)


def write_log(directory: Path, pipeline_id: str, lines: list[str]) -> Path:
    folder = directory / ".snakemake" / "log"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pipeline_id}{LOG_SUFFIX}"
    path.write_text("\n".join(lines) + "\n")
    return path


def job_start(moment: datetime, rule: str, jobid: int, wildcards: str = "") -> list[str]:
    lines = [log_time(moment), f"localrule {rule}:", f"    log: logs/{rule}/{jobid}.log", f"    jobid: {jobid}"]
    if wildcards:
        lines.append(f"    wildcards: {wildcards}")
    return lines


def job_end(moment: datetime, rule: str, jobid: int, done: int, total: int) -> list[str]:
    return [log_time(moment), f"Finished jobid: {jobid} (Rule: {rule})", f"{done} of {total} steps ({done * 100 // total}%) done"]


T0 = datetime(2026, 12, 4, 9, 5, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def header(total_by_rule: dict[str, int]) -> list[str]:
    lines = ["SNAKEMAKE", "=========", f"  Date: {T0:%Y-%m-%d %H:%M:%S}", "  Workflow ID: 1234",
             "Building DAG of jobs...", "Job stats:", "job        count", "-------  -------"]
    lines += [f"{rule}  {count}" for rule, count in total_by_rule.items()]
    lines += [f"total  {sum(total_by_rule.values())}", "", f"{PIPELINE_ID_PREFIX}run-1",
              "Pipeline name: quantization evaluation of tiny"]
    return lines


def test_eta_from_finished_job_durations(tmp_path):
    # One job at a time. Two evaluations took 10 s and 20 s (mean 15 s); the third has run
    # 5 s, and a fourth and the compare job wait. Compare has no finished job, so it borrows
    # the mean of the rules' means: (3 + 15) / 2 = 9 s.
    lines = header({"quantize": 1, "evaluate": 4, "compare": 1})
    lines += job_start(at(0), "quantize", 1, "model=tiny, variant=q8_0") + job_end(at(3), "quantize", 1, 1, 6)
    lines += job_start(at(3), "evaluate", 2, "run=1") + job_end(at(13), "evaluate", 2, 2, 6)
    lines += job_start(at(13), "evaluate", 3, "run=2") + job_end(at(33), "evaluate", 3, 3, 6)
    lines += job_start(at(33), "evaluate", 4, "run=3")
    write_log(tmp_path, "run-1", lines)

    snapshot = read_progress(tmp_path, "latest", now=at(38), process_check=lambda _: True)

    assert snapshot.state == "running"
    assert (snapshot.done_jobs, snapshot.total_jobs, snapshot.percent) == (3, 6, 50.0)
    assert snapshot.phase == "evaluation"
    assert snapshot.current_job == "evaluate (run=3)"
    assert snapshot.name == "quantization evaluation of tiny"
    assert snapshot.rules["evaluate"].mean_seconds == 15.0
    assert snapshot.rules["evaluate"].remaining == 2
    assert snapshot.rules["compare"].mean_seconds is None
    # Work left: 2 x 15 - 5 (evaluate) + 9 (compare) = 34 s, at 33 s of job time in 38 s
    # elapsed: parallelism max(1, 33/38) = 1.
    assert snapshot.eta_seconds == pytest.approx(34.0)
    assert snapshot.eta_complete is False
    assert snapshot.elapsed_seconds == 38.0
    assert snapshot.running[0]["elapsed_seconds"] == 5.0


def test_eta_divided_by_parallel_jobs(tmp_path):
    # Two jobs at once: 4 evaluations of 10 s each finished in 20 s, so 2 ran at a time.
    lines = header({"evaluate": 8})
    for k in range(4):
        start = 10 * (k // 2)
        lines += job_start(at(start), "evaluate", k + 1)
        lines += job_end(at(start + 10), "evaluate", k + 1, k + 1, 8)
    write_log(tmp_path, "run-1", lines)

    snapshot = read_progress(tmp_path, "run-1", now=at(20), process_check=lambda _: True)

    assert snapshot.eta_seconds == pytest.approx(4 * 10 / 2)
    assert snapshot.eta_complete is True
    assert snapshot.phase == "evaluation"  # the last job started, none running
    assert snapshot.current_job is None


def test_failed_retried_and_finished_jobs(tmp_path):
    lines = header({"quantize": 2, "evaluate": 1})
    lines += job_start(at(0), "quantize", 1, "variant=a")
    lines += [log_time(at(2)), "Error in rule quantize:", "    jobid: 1", "    log: logs/q.log (check log file(s) for error details)"]
    lines += ["Trying to restart job 1."]
    lines += job_start(at(2), "quantize", 1, "variant=a") + job_end(at(6), "quantize", 1, 1, 3)
    lines += job_start(at(6), "quantize", 2, "variant=b")
    lines += [log_time(at(7)), "Error in rule quantize:", "    jobid: 2", "    output: x.gguf"]
    lines += ["Exiting because a job execution failed. Look below for error messages",
              "Complete log(s): /somewhere/.snakemake/log/run-1.snakemake.log"]
    write_log(tmp_path, "run-1", lines)

    snapshot = read_progress(tmp_path, "run-1", process_check=lambda _: pytest.fail("not asked for an ended log"))

    assert snapshot.state == "failed"
    assert [job["wildcards"] for job in snapshot.failed] == ["variant=b"]
    assert snapshot.failed[0]["log"] == "logs/quantize/2.log"
    assert "1 job(s) failed (quantize (variant=b))" in snapshot.message
    # The retried job counts once, with the duration of its successful try.
    assert snapshot.rules["quantize"].finished == 1
    assert snapshot.rules["quantize"].mean_seconds == 4.0
    assert snapshot.running == []
    assert snapshot.eta_seconds is None


def test_latest_skips_unlock_logs(tmp_path):
    write_log(tmp_path, "2026-12-04T090000.000001", header({"evaluate": 1}))
    write_log(tmp_path, "2026-12-04T100000.000001", ["Unlocked working directory."])
    assert find_log(tmp_path, "latest")[0] == "2026-12-04T090000.000001"


def test_unknown_pipeline_id_names_the_fix(tmp_path):
    write_log(tmp_path, "2026-12-04T090000.000001", header({"evaluate": 1}))
    with pytest.raises(QuantEvalError, match=r"no run with pipeline id 'nope'.*2026-12-04T090000.000001.*'latest'"):
        find_log(tmp_path, "nope")
    with pytest.raises(QuantEvalError, match="no Snakemake log"):
        find_log(tmp_path / "empty", "latest")


def test_stopped_run_reported_failed(tmp_path):
    write_log(tmp_path, "run-1", header({"evaluate": 2}) + job_start(at(0), "evaluate", 1))
    snapshot = read_progress(tmp_path, "run-1", process_check=lambda _: False)
    assert snapshot.state == "failed"
    assert "killed or crashed" in snapshot.message
    assert snapshot.running == []


def test_watch_ends_when_run_finished(tmp_path):
    lines = header({"evaluate": 1}) + job_start(at(0), "evaluate", 1) + job_end(at(4), "evaluate", 1, 1, 1)
    write_log(tmp_path, "run-1", lines + ["Complete log(s): /somewhere/run-1.snakemake.log"])
    stream = io.StringIO()

    snapshot = watch(tmp_path, "latest", interval=0.01, stream=stream)

    assert snapshot.state == "finished"
    output = stream.getvalue()
    assert "quantization evaluation of tiny [evaluation] 100%" in output
    assert "1/1 jobs, waiting for a job | CPU " in output
    assert "Pipeline run-1 finished: all 1 jobs done" in output


def workflow_rules() -> list[str]:
    rules = []
    for path in sorted((REPO / "rules").glob("*.smk")):
        rules += re.findall(r"^rule (\w+):", path.read_text(), flags=re.MULTILINE)
    return rules


def test_every_rule_has_a_phase():
    rules = workflow_rules()
    assert "evaluate" in rules
    for rule in rules:
        assert rule_phase(rule) in PHASES, rule


@pytest.mark.parametrize("rule, phase", [
    ("imatrix", "imatrix"), ("quantize", "quantization"), ("evaluate", "evaluation"),
    ("judge_answers", "judging"), ("fidelity", "evaluation"), ("statistics", "statistics"),
    ("charts", "charts"), ("scorecard", "scorecard"), ("something_else", "other"),
])
def test_rule_phase(rule, phase):
    assert rule_phase(rule) == phase


# ----------------------------------------------------------------------- PowerShell monitor

# Cmdlets of Windows PowerShell 5.1 (also in PowerShell 7) the monitor may call, with the
# parameters each has in 5.1. Parameters added in 7 only, such as ConvertFrom-Json
# -AsHashtable, are not listed, so a script using them fails this test.
POWERSHELL_51_CMDLETS = {
    "ConvertFrom-Json": {"InputObject"},
    "Get-Location": {"PSProvider", "PSDrive", "Stack", "StackName"},
    "Start-Sleep": {"Seconds", "Milliseconds"},
    "Write-Error": {"Message", "Category", "ErrorId", "TargetObject", "RecommendedAction",
                    "CategoryActivity", "CategoryReason", "CategoryTargetName", "CategoryTargetType",
                    "Exception", "ErrorRecord"},
    "Write-Host": {"Object", "NoNewline", "Separator", "ForegroundColor", "BackgroundColor"},
    "Write-Progress": {"Activity", "Status", "Id", "PercentComplete", "SecondsRemaining",
                       "CurrentOperation", "ParentId", "Completed", "SourceId"},
}
# Syntax that PowerShell 7 added: ternary, null-coalescing and pipeline chain operators.
POWERSHELL_7_NODES = {"ternary_expression", "null_coalesce_expression", "pipeline_chain_tail"}


@pytest.fixture(scope="module")
def script_tree():
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_pwsh = pytest.importorskip("tree_sitter_pwsh")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_pwsh.language()))
    return parser.parse(SCRIPT.read_bytes())


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def test_monitor_script_parses(script_tree):
    bad = [(n.type, n.start_point) for n in walk(script_tree.root_node) if n.type == "ERROR" or n.is_missing]
    assert bad == []
    assert not script_tree.root_node.has_error


def test_monitor_script_uses_powershell_51_syntax(script_tree):
    newer = [(n.type, n.start_point) for n in walk(script_tree.root_node) if n.type in POWERSHELL_7_NODES]
    assert newer == []
    assert "??=" not in SCRIPT.read_text()


def command_parts(command) -> tuple[str, list[str]]:
    """Return a command node's name and the texts of its arguments and parameters."""
    name = command.child_by_field_name("command_name")
    if name is None:
        name = next(c for c in command.children if c.type == "command_name_expr")
    elements = command.child_by_field_name("command_elements")
    parts = [] if elements is None else [
        c.text.decode() for c in elements.children if c.type != "command_argument_sep"
    ]
    return name.text.decode(), parts


def test_monitor_script_calls_only_existing_commands(script_tree):
    nodes = list(walk(script_tree.root_node))
    functions = {
        n.child_by_field_name("function_name").text.decode() if n.child_by_field_name("function_name")
        else next(c for c in n.children if c.type == "function_name").text.decode()
        for n in nodes if n.type == "function_statement"
    }
    assert functions == {"Format-Duration", "Get-Snapshot"}
    subcommands = {name: parser for name, parser in _subparsers().items()}

    called = set()
    for command in (n for n in nodes if n.type == "command"):
        name, parts = command_parts(command)
        called.add(name)
        if name in POWERSHELL_51_CMDLETS:
            parameters = {p[1:].rstrip(":") for p in parts if p.startswith("-")}
            assert parameters <= POWERSHELL_51_CMDLETS[name], (name, parameters)
        elif name == "$QuantEval":
            # `& $QuantEval progress --json ...`: the subcommand and its options must exist.
            subcommand, options = parts[0], {p for p in parts[1:] if p.startswith("--")}
            assert subcommand in subcommands
            known = {o for action in subcommands[subcommand]._actions for o in action.option_strings}
            assert options <= known, options - known
        else:
            assert name in functions, name
    assert {"Write-Progress", "$QuantEval", "ConvertFrom-Json", "Start-Sleep"} <= called


def _subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


def test_monitor_script_reads_existing_fields():
    text = SCRIPT.read_text()
    snapshot_fields = set(Snapshot.__dataclass_fields__)
    used = set(re.findall(r"\$snapshot\.(\w+)", text))
    assert used and used <= snapshot_fields, used - snapshot_fields
    job_fields = {"jobid", "rule", "phase", "wildcards", "log", "elapsed_seconds"}
    assert set(re.findall(r"\$failed\.(\w+)", text)) <= job_fields


def test_monitor_script_parameters():
    text = SCRIPT.read_text()
    assert re.search(r"\[Parameter\(Mandatory = \$true\)\]\s*\[string\]\$PipelineId", text)
    assert re.search(r"\[int\]\$UpdateInterval = 2\b", text)


# ----------------------------------------------------------------------- real runs

def snakemake_command(workdir: Path, config: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config), "--cores", "2", *arguments]


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def small_config(folder: Path, source: str) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["models"] = {"tiny": {"source": source}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.workflow
def test_progress_of_failed_run(tmp_path, capsys):
    """A truncated base model: its job fails, the other jobs finish with --keep-going."""
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    with model.open("r+b") as handle:
        handle.truncate(model.stat().st_size // 2)
    workdir = tmp_path / "run"
    completed = subprocess.run(
        snakemake_command(workdir, small_config(tmp_path, str(model)), "--keep-going",
                          "base_models/tiny.gguf", "calibration/calibration.txt",
                          "benchmark_data/gsm8k.test.jsonl"),
        capture_output=True, text=True, env=environment(), check=False)
    assert completed.returncode != 0

    snapshot = read_progress(workdir, "latest")

    assert snapshot.state == "failed"
    assert (snapshot.done_jobs, snapshot.total_jobs) == (2, 3)
    assert [(job["rule"], job["wildcards"]) for job in snapshot.failed] == [("base_model", "model=tiny")]
    assert "truncated" in (workdir / snapshot.failed[0]["log"]).read_text()
    assert snapshot.rules["calibration_text"].finished == 1
    assert snapshot.rules["benchmark_data"].finished == 1
    assert snapshot.running == []
    assert f"{PIPELINE_ID_PREFIX}{snapshot.pipeline_id}" in completed.stderr

    # The terminal view and the JSON command report the same failure.
    stream = io.StringIO()
    with pytest.raises(QuantEvalError, match="failed: 1 job"):
        watch(workdir, "latest", interval=0.1, stream=stream)
    assert f"Pipeline {snapshot.pipeline_id} failed" in stream.getvalue()
    assert main(["progress", "--json", "--directory", str(workdir)]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["state"] == "failed"
    assert reported["memory_total_bytes"] > reported["memory_used_bytes"] > 0
    assert 0 <= reported["cpu_percent"] <= 100


@pytest.mark.workflow
def test_progress_of_running_then_killed_run(tmp_path):
    """The embedded model's intake job takes seconds: watch it run, then kill Snakemake."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    stderr = (tmp_path / "stderr.txt").open("w")
    config = small_config(tmp_path, "embedded:smollm2-135m-instruct")
    process = subprocess.Popen(snakemake_command(workdir, config, "base_models/tiny.gguf"),
                               stdout=subprocess.DEVNULL, stderr=stderr, env=environment(),
                               start_new_session=True)
    try:
        snapshot = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                snapshot = read_progress(workdir, "latest")
            except QuantEvalError:  # no log yet
                snapshot = None
            if snapshot is not None and snapshot.running:
                break
            time.sleep(0.2)
        assert snapshot is not None and snapshot.running, "the job never showed as running"
        assert snapshot.state == "running"
        assert snapshot.phase == "imatrix"
        assert snapshot.current_job == "base_model (model=tiny)"
        assert (snapshot.done_jobs, snapshot.total_jobs) == (0, 1)
        assert snapshot.running[0]["log"] == "logs/base_model/tiny.log"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        stderr.close()

    stopped = read_progress(workdir, snapshot.pipeline_id)
    assert stopped.state == "failed"
    assert "killed or crashed" in stopped.message
    assert f"{PIPELINE_ID_PREFIX}{snapshot.pipeline_id}" in (tmp_path / "stderr.txt").read_text()
