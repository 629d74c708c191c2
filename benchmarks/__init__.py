"""Seed-compatible benchmark entry points (``from benchmarks.bench_kv_cache import ...``).

Thin modules over :mod:`llmds.bench`; run the whole suite with ``llmds bench``.
"""
