"""Seed-style entry point: ``from benchmarks.bench_sim import benchmark_sim``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_sim
from llmds.bench.harness import BenchContext


def benchmark_sim(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the serving-simulator experiments (see :mod:`llmds.bench.bench_sim`).

    1. ``max_wait_ms`` sweep of the micro-batching scheduler; 2. FCFS / EDF /
    default priority under mixed SLOs; 3. prefix caching off / KVCache /
    RadixCache on the multi-turn chat trace (memory per running request, hit
    rate, TTFT); 4. 2x overload with and without admission control; each on the
    guessed cost model and on GPU profiles (A100, H100). Returns the result record;
    headline figures are the ``ratios`` named ``exp1: ...`` to ``exp4: ...``.
    """
    return bench_sim.run(BenchContext(quick=quick, seed=seed))
