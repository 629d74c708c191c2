"""Seed-style entry point: ``from benchmarks.bench_indexed_heap import benchmark_indexed_heap``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_indexed_heap
from llmds.bench.harness import BenchContext


def benchmark_indexed_heap(quick: bool = False, repeat: int = 5, seed: int = 0) -> dict[str, Any]:
    """Run the IndexedHeap benchmark (vs pqdict, heapdict, heapq + lazy deletion).

    Returns the result record: ``rows`` (ops/s per CPU-second, latency percentiles
    in ms, peak RSS per implementation) and ``ratios`` (ours / peer).
    """
    return bench_indexed_heap.run(BenchContext(quick=quick, repeat=repeat, seed=seed))
