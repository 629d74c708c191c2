"""The shipped benchmark suite behind ``llmds bench`` and ``llmds report``.

Each entry of :data:`BENCHMARKS` names a module ``llmds.bench.bench_<module>`` that
defines ``NAME``, ``TITLE`` and ``run(ctx) -> dict`` (see :mod:`llmds.bench.harness`).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from llmds.bench.harness import BenchContext

__all__ = ["BENCHMARKS", "BenchContext", "load"]

# name on the command line -> module under llmds.bench, in the order `llmds bench` runs them.
BENCHMARKS: dict[str, str] = {
    "indexed_heap": "bench_indexed_heap",
    "token_lru": "bench_token_lru",
    "cmsketch": "bench_cmsketch",
    "admissions": "bench_admissions",
    "scheduler": "bench_scheduler",
    "kv_cache": "bench_kv_cache",
    "prefix_cache": "bench_prefix_cache",
    "engines": "bench_engines",
    "hybrid_cache": "bench_hybrid_cache",
    "bm25": "bench_bm25",
    "hnsw": "bench_hnsw",
    "retrieval": "bench_retrieval",
    "sharded": "bench_sharded",
    "sim": "bench_sim",
    "redis": "bench_redis",
    "remote_tier": "bench_remote_tier",
    "sim_profiles": "bench_sim_profiles",
    "sim_cluster": "bench_sim_cluster",
}


def load(name: str) -> ModuleType:
    """Import the benchmark module for ``name``; unknown names raise ``KeyError``."""
    try:
        module = BENCHMARKS[name]
    except KeyError:
        known = ", ".join(BENCHMARKS)
        raise KeyError(f"unknown benchmark {name!r}; known: {known}") from None
    return importlib.import_module(f"llmds.bench.{module}")


def available() -> list[str]:
    """Benchmark names whose module exists in this installation."""
    out = []
    for name, module in BENCHMARKS.items():
        if importlib.util.find_spec(f"llmds.bench.{module}") is not None:
            out.append(name)
    return out
