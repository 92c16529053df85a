"""Benchmark drivers, beside the results they write (`python -m benchmarks.NAME`).

Each driver prints the figures that BENCHMARKS.md records, with the command
that produced them; results that are committed live in the folders here
(`xnli-proxy/`, `probe-*/`, …).
"""
