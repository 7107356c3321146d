"""Benchmarks: commands that print throughput figures (tests never assert wall-clock time)."""
