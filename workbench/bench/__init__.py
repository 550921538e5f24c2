"""Benchmarks: ``python -m workbench.bench NAME``; each prints a table (targets live here, not in tests)."""
