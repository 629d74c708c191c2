"""Seed-style entry point: ``from benchmarks.bench_hybrid_cache import benchmark_hybrid_cache``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_hybrid_cache
from llmds.bench.harness import BenchContext


def benchmark_hybrid_cache(quick: bool = False, repeat: int = 5, seed: int = 0) -> dict[str, Any]:
    """Replay the multi-turn chat trace through RadixCache, SWARadixCache and MambaRadixCache.

    Returns the result record: hit rates, requests/s, SWA tokens and states evicted.
    """
    return bench_hybrid_cache.run(BenchContext(quick=quick, repeat=repeat, seed=seed))
