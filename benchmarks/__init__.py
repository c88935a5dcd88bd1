"""Benchmarks run on loopback by ``make bench``; results go to docs/benchmarks.md."""
