"""Seed-style entry point: ``from benchmarks.bench_engines import benchmark_engines``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_engines
from llmds.bench.harness import BenchContext


def benchmark_engines(quick: bool = False, repeat: int = 5, seed: int = 0) -> dict[str, Any]:
    """Replay the chat trace through the SGLang and vLLM facades, with the engines as peers.

    Returns the result record: requests/s and hit rates of each facade and peer.
    """
    return bench_engines.run(BenchContext(quick=quick, repeat=repeat, seed=seed))
