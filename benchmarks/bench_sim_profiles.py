"""Seed-style entry point: ``from benchmarks.bench_sim_profiles import benchmark_sim_profiles``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_sim_profiles
from llmds.bench.harness import BenchContext


def benchmark_sim_profiles(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the GPU-profile cost model's checks (see :mod:`llmds.bench.bench_sim_profiles`).

    Held-out error per operation, the profiles README's hand-worked figures, published
    end-to-end numbers (TensorRT-LLM, vLLM) vs predictions, KV capacity, the prefill
    rule on the chat trace and the cost per call. Returns the result record.
    """
    return bench_sim_profiles.run(BenchContext(quick=quick, seed=seed))
