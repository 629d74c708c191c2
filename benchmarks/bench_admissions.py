"""Seed-style entry point over :mod:`llmds.bench.bench_admissions`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_admissions
from llmds.bench.harness import BenchContext


def benchmark_admissions(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Run the AdmissionController vs limits (moving/fixed window) and pyrate-limiter benchmark.

    Returns its result record.

    The record holds one row per implementation (rates per CPU-second, latency
    percentiles where measured, peak RSS) and the ratios against the peers.
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed)
    return bench_admissions.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_admissions()["ratios"], indent=1))
