"""Seed-style entry point over :mod:`llmds.bench.bench_token_lru`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_token_lru
from llmds.bench.harness import BenchContext


def benchmark_token_lru(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Run the TokenLRU vs cachetools.LRUCache(getsizeof) and a dict LRU benchmark.

    Returns its result record.

    The record holds one row per implementation (rates per CPU-second, latency
    percentiles where measured, peak RSS) and the ratios against the peers.
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed)
    return bench_token_lru.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_token_lru()["ratios"], indent=1))
