"""Benchmarks: `python -m tests.benchmarks [NAME ...] [--quick]` prints a Markdown table.

Not tests: nothing here is named test_*, so pytest never collects it, and importing any module
starts nothing (every process is started by a benchmark's `run`).
"""
