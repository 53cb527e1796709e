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


# ----------------------------------------------------------------------- stages

@command("base-model", "write the unquantized base model GGUF of one model", lambda p: (
    p.add_argument("--source", required=True, help="GGUF path or embedded:NAME"),
    p.add_argument("--dequantize", action="store_true", help="accept a quantized GGUF and dequantize it to F16"),
    p.add_argument("--output", type=Path, required=True, help="base model GGUF to write"),
    p.add_argument("--info", type=Path, required=True, help="JSON record of the source to write"),
    p.add_argument("--audit", type=Path, required=True, help="JSON tensor audit to write"),
))
def _base_model(args: argparse.Namespace) -> None:
    from .base_model import prepare_base_model
    from .gguf_files import audit_tensors
    from .files import write_json

    prepare_base_model(args.source, args.dequantize, args.output, args.info)
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
    p.add_argument("--log", type=Path, help="file the tool's output is appended to"),
))
def _imatrix(args: argparse.Namespace) -> None:
    from .imatrix import compute_imatrix

    compute_imatrix(args.model, args.calibration, args.output, args.context, args.chunks,
                    args.batch_size, args.threads, args.log)


@command("quantize", "quantize a base model with llama-quantize and audit the result", lambda p: (
    p.add_argument("--model", type=Path, required=True, help="base model GGUF"),
    p.add_argument("--type", required=True, help="quantization type, e.g. Q4_K_M"),
    p.add_argument("--imatrix", type=Path, help="imatrix file; omit to quantize without one"),
    p.add_argument("--output", type=Path, required=True),
    p.add_argument("--audit", type=Path, required=True, help="JSON tensor audit to write"),
    p.add_argument("--threads", type=int, default=1),
    p.add_argument("--log", type=Path, help="file the tool's output is appended to"),
))
def _quantize(args: argparse.Namespace) -> None:
    from .quantize import quantize_model

    quantize_model(args.model, args.type, args.output, args.audit, args.imatrix, args.threads, args.log)


@command("benchmark-data", "write a benchmark's seeded item subset and few-shot pool", lambda p: (
    p.add_argument("--benchmark", required=True),
    p.add_argument("--limit", type=_positive_int, help="number of items; omit for all"),
    p.add_argument("--seed", type=int, required=True),
    p.add_argument("--test-output", type=Path, required=True),
    p.add_argument("--fewshot-output", type=Path, required=True),
    p.add_argument("--settings", type=_json_argument, default={},
                   help="benchmark settings as JSON (e.g. MATH's subset)"),
))
def _benchmark_data(args: argparse.Namespace) -> None:
    from .benchmarks import get_benchmark

    get_benchmark(args.benchmark).prepare(args.limit, args.seed, args.test_output, args.fewshot_output,
                                          args.settings)


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
    p.add_argument("--output", type=Path, required=True),
))
def _evaluate(args: argparse.Namespace) -> None:
    from .evaluation.runner import evaluate

    evaluate(args.model_file, args.benchmark, args.settings, args.test_data, args.fewshot_data,
             args.run, args.seed, args.context, args.threads, args.output, args.labels)


@command("compare", "join all results into quantization_comparison.json", lambda p: (
    p.add_argument("--config", type=_json_argument, required=True, help="workflow configuration as JSON"),
    p.add_argument("--base-infos", nargs="+", type=_keyed_path, required=True, metavar="MODEL=PATH",
                   help="base-model records"),
    p.add_argument("--audits", nargs="+", type=_keyed_path, required=True, metavar="MODEL/VARIANT=PATH",
                   help="tensor audits of every variant, the base included"),
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="per-run result files"),
    p.add_argument("--output", type=Path, required=True),
))
def _compare(args: argparse.Namespace) -> None:
    from .comparison import build_comparison
    from .files import write_json

    base_infos = dict(args.base_infos)
    audits = {tuple(key.split("/", 1)): path for key, path in args.audits}
    write_json(build_comparison(args.config, base_infos, audits, args.runs), args.output)


@command("statistics", "compute statistical_analysis.json from the comparison", lambda p: (
    p.add_argument("--comparison", type=Path, required=True),
    p.add_argument("--confidence-level", type=float, default=0.95),
    p.add_argument("--output", type=Path, required=True),
))
def _statistics(args: argparse.Namespace) -> None:
    from .files import write_json
    from .statistics import analyze

    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    write_json(analyze(comparison, args.confidence_level), args.output)


def _report_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_json_argument, required=True, help="workflow configuration as JSON")
    p.add_argument("--comparison", type=Path, required=True)
    p.add_argument("--analysis", type=Path, required=True)


def _load_report_inputs(args: argparse.Namespace) -> tuple[dict, dict]:
    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    analysis = json.loads(args.analysis.read_text(encoding="utf-8"))
    return comparison, analysis


@command("charts", "draw the performance and efficiency charts", lambda p: (
    _report_inputs(p),
    p.add_argument("--performance", type=Path, required=True),
    p.add_argument("--efficiency", type=Path, required=True),
))
def _charts(args: argparse.Namespace) -> None:
    from .charts import draw_efficiency, draw_performance

    comparison, analysis = _load_report_inputs(args)
    draw_performance(comparison, analysis, args.performance)
    draw_efficiency(comparison, analysis, args.efficiency)


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
OUTPUT_ARGUMENTS = ("output", "info", "audit", "test_output", "fewshot_output", "performance", "efficiency", "log")


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
