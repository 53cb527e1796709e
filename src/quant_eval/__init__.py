"""GGUF quantization evaluation: imatrix, quantization, benchmarks, statistics, reports."""

__version__ = "0.1.0"
