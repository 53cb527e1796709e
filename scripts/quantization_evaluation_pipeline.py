#!/usr/bin/env python3
"""Run the quantization evaluation workflow for one model without writing a config file.

Example:
    scripts/quantization_evaluation_pipeline.py --model models/my-model-f16.gguf \\
        --quantizations bf16,q8_0,q4_k_m --benchmarks gsm8k,arc_challenge --runs 3

The settings are merged into config/config.yaml and written to a config file under
config/generated/, which is passed to Snakemake with --configfile; the workflow then
runs as `snakemake --cores N scorecards/quantization_evaluation.pdf` would, in this
checkout, so its outputs are written beside the Snakefile.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET = "scorecards/quantization_evaluation.pdf"
MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # as config/schema/config.schema.yaml allows


def comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. q8_0,q4_k_m")
    return items


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- go to Snakemake unchanged.")
    parser.add_argument("--model", required=True,
                        help="GGUF base model (F16, BF16 or F32), or embedded:smollm2-135m-instruct")
    parser.add_argument("--model-name", help="name of the model in output paths (default: the file name)")
    parser.add_argument("--dequantize", action="store_true", help="accept a quantized GGUF and dequantize it to F16")
    parser.add_argument("--quantizations", type=comma_list, required=True, help="quantization types, e.g. bf16,q8_0,q4_k_m")
    parser.add_argument("--without-imatrix", type=comma_list, help="types also quantized without the imatrix")
    parser.add_argument("--benchmarks", type=comma_list, help="benchmarks to run (default: those of config/config.yaml)")
    parser.add_argument("--runs", type=int, help="repetitions of each evaluation")
    parser.add_argument("--cores", type=int, default=os.cpu_count(),
                        help="CPU cores Snakemake may use (default: all cores of this machine)")
    parser.add_argument("--dry-run", action="store_true", help="show the jobs without running them")
    arguments = list(argv if argv is not None else sys.argv[1:])
    extra: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, extra = arguments[:split], arguments[split + 1:]
    return parser.parse_args(arguments), extra


def build_config(args: argparse.Namespace) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    name = args.model_name or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(args.model.split(":")[-1]).stem)
    if not re.fullmatch(MODEL_NAME, name):
        sys.exit(f"error: invalid --model-name {name!r}: use letters, digits, '_', '.' and '-', "
                 "starting with a letter or digit")
    source = args.model if args.model.startswith("embedded:") else str(Path(args.model).expanduser().resolve())
    config["models"] = {name: {"source": source, "dequantize": args.dequantize}}
    config["quantizations"] = args.quantizations
    if args.without_imatrix is not None:
        config["without_imatrix"] = args.without_imatrix
    else:
        chosen = {t.lower() for t in args.quantizations}
        config["without_imatrix"] = [t for t in config.get("without_imatrix", []) if t.lower() in chosen]
    if args.benchmarks is not None:
        unknown = [b for b in args.benchmarks if b not in config["benchmarks"]]
        if unknown:
            sys.exit(f"error: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(config['benchmarks'])}")
        config["benchmarks"] = {b: config["benchmarks"][b] for b in args.benchmarks}
    if args.runs is not None:
        config["runs"] = args.runs
    return config


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_arguments(argv)
    config = build_config(args)
    folder = REPO / "config" / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{next(iter(config['models']))}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--configfile", str(config_path), "--cores", str(args.cores), *extra, TARGET]
    if args.dry_run:
        command.insert(-1, "--dry-run")
    print("config written to", config_path, flush=True)
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
