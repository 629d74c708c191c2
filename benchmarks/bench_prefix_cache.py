"""Seed-style entry point over :mod:`llmds.bench.bench_prefix_cache`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_prefix_cache
from llmds.bench.harness import BenchContext


def benchmark_prefix_cache(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Replay the multi-turn chat trace through RadixCache, SGLang's RadixCache and a naive model.

    Returns its result record: hit rate (matched prompt tokens / prompt tokens),
    match+insert pairs per CPU-second, replay requests per CPU-second and peak RSS
    at page sizes 1 and 16 and capacities unbounded / 200k / 50k tokens, the ideal
    hit rate, and the ratios against SGLang (skipped, with the reason, when sglang
    is not importable; always skipped with ``quick=True``).
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed)
    return bench_prefix_cache.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_prefix_cache()["ratios"], indent=1))
