#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment: install the quant-eval package
# without touching its dependencies. The checkout is $QUANT_EVAL_CHECKOUT, or the working
# directory of Snakemake (which --directory changes).
set -euo pipefail
checkout=${QUANT_EVAL_CHECKOUT:-$PWD}
if ! grep -qs '^name = "quant-eval"' "$checkout/pyproject.toml"; then
    echo "error: $checkout is not a quant-eval checkout; set QUANT_EVAL_CHECKOUT to the" \
        "checkout's path before snakemake --use-conda" >&2
    exit 1
fi
python -m pip install --no-deps "$checkout"
