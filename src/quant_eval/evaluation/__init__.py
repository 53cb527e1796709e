"""Benchmark evaluation through lm-evaluation-harness with a llama-cpp-python backend."""
